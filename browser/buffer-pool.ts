/**
 * A few plain ArrayBuffers of one size, lent out and given back, for bytes
 * that cross to a worker and return (transferred both ways, so never copied in
 * transit). Reusing them is the point: a fresh buffer's pages are faulted in on
 * first touch, which costs more than the copy itself (an OPFS read of 1 MiB
 * took 6 ms through fresh buffers and 0.4 ms through reused ones).
 */
export class BufferPool {
  readonly bufferBytes: number
  readonly maxBuffers: number
  private created = 0
  private readonly free: ArrayBuffer[] = []
  private readonly waiting: Array<(buffer: ArrayBuffer) => void> = []

  constructor (bufferBytes: number, maxBuffers: number) {
    if (!Number.isInteger(bufferBytes) || bufferBytes < 1) throw new RangeError(`a pooled buffer needs a whole number of bytes from 1, not ${String(bufferBytes)}`)
    if (!Number.isInteger(maxBuffers) || maxBuffers < 1) throw new RangeError(`a buffer pool needs a whole number of buffers from 1, not ${String(maxBuffers)}`)
    this.bufferBytes = bufferBytes
    this.maxBuffers = maxBuffers
  }

  /** A buffer of `bufferBytes`: a free one, a new one while fewer than `maxBuffers` exist, or the next one given back. */
  async take (): Promise<ArrayBuffer> {
    const buffer = this.free.pop()
    if (buffer !== undefined) return buffer
    if (this.created < this.maxBuffers) {
      this.created++
      return new ArrayBuffer(this.bufferBytes)
    }
    return await new Promise<ArrayBuffer>(resolve => { this.waiting.push(resolve) })
  }

  /** Gives a buffer back (one that came back detached or resized is replaced by a new one later). */
  give (buffer: ArrayBuffer): void {
    if (buffer.detached || buffer.byteLength !== this.bufferBytes) {
      this.lost()
      return
    }
    const next = this.waiting.shift()
    if (next !== undefined) next(buffer)
    else this.free.push(buffer)
  }

  /** A lent buffer will not come back (its worker failed): another may be made in its place. */
  lost (): void {
    this.created--
    const next = this.waiting.shift()
    if (next !== undefined) {
      this.created++
      next(new ArrayBuffer(this.bufferBytes))
    }
  }
}
