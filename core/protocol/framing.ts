/**
 * Length-prefixed frames: an unsigned varint byte length, then that many bytes.
 * A decoder refuses a length over its limit before buffering the body, so a
 * peer cannot make us hold more than one frame's worth of its bytes.
 */
import { Uint8ArrayList } from 'uint8arraylist'
import { FrameTooLargeError, MalformedFrameError } from '../errors.ts'

export function encodeVarint (n: number): Uint8Array {
  let bytes = 1
  for (let rest = n; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes++
  const out = new Uint8Array(bytes)
  for (let i = 0; i < bytes - 1; i++) {
    out[i] = (n % 0x80) | 0x80
    n = Math.floor(n / 0x80)
  }
  out[bytes - 1] = n
  return out
}

/** Reads a varint at `offset`; returns [value, bytesRead] or undefined if the buffer ends first. */
export function decodeVarint (list: Uint8ArrayList | Uint8Array, offset = 0): [number, number] | undefined {
  let value = 0
  let scale = 1
  for (let i = 0; i < 8; i++) {
    if (offset + i >= list.length) return undefined
    const byte = list instanceof Uint8Array ? list[offset + i] : list.get(offset + i)
    value += (byte & 0x7f) * scale
    if (byte < 0x80) return [value, i + 1]
    scale *= 0x80
  }
  throw new MalformedFrameError('varint longer than 8 bytes')
}

/** A frame to send: the length prefix and the body, without copying the body. */
export function frame (...parts: Uint8Array[]): Uint8ArrayList {
  let length = 0
  for (const p of parts) length += p.byteLength
  return new Uint8ArrayList(encodeVarint(length), ...parts)
}

export class FrameDecoder {
  private readonly buffer = new Uint8ArrayList()
  private readonly maxFrameLength: number

  constructor (maxFrameLength: number) {
    this.maxFrameLength = maxFrameLength
  }

  /** Adds received bytes and returns every frame now complete, each as a list of the original buffers. */
  push (data: Uint8Array | Uint8ArrayList): Uint8ArrayList[] {
    this.buffer.append(data)
    const frames: Uint8ArrayList[] = []
    for (;;) {
      const header = decodeVarint(this.buffer)
      if (header === undefined) break
      const [length, prefix] = header
      if (length > this.maxFrameLength) {
        throw new FrameTooLargeError(`frame of ${length} bytes is over the limit of ${this.maxFrameLength}`)
      }
      if (this.buffer.length < prefix + length) break
      frames.push(this.buffer.sublist(prefix, prefix + length))
      this.buffer.consume(prefix + length)
    }
    return frames
  }

  get buffered (): number {
    return this.buffer.length
  }
}
