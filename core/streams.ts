/**
 * Streams: objects larger than memory, in and out chunk by chunk. putStream()
 * stores bytes arriving in pieces without holding them whole (straight to the
 * spill disk when they do not fit in memory); getStream() pulls an object here
 * and yields it one chunk at a time. For sharing files.
 *
 * Answers no message: it stores through the store and reads through objects.ts.
 */
import { chunkCount } from './chunks.ts'
import { Encoding } from './codec.ts'
import type { PeerContext } from './context.ts'
import { ObjectLostError, OutOfMemoryError, errorToInfo } from './errors.ts'
import type { FetchedValue } from './objects.ts'
import { ObjectStatus } from './protocol/messages.ts'
import type { Manifest, ObjectInfo, RefDesc } from './protocol/messages.ts'
import { Ref, newObjectId, objectKey } from './ref.ts'
import { raceSignal, withTimeout } from './signals.ts'
import type { StoredObject } from './store.ts'
import type { GetOptions, PutOptions } from './types.ts'

export interface StreamsInit {
  ctx: PeerContext
  /** the object parts streams use (objects.ts) */
  objects: {
    put: <T>(value: T, options?: PutOptions) => Ref<T>
    locate: (desc: RefDesc, signal: AbortSignal | undefined) => Promise<ObjectInfo>
    locateRemote: (desc: RefDesc, signal: AbortSignal | undefined) => Promise<ObjectInfo>
    fetchDescribed: (desc: RefDesc, info: ObjectInfo, signal: AbortSignal | undefined) => Promise<FetchedValue>
  }
}

export class Streams {
  private readonly ctx: PeerContext
  private readonly objects: StreamsInit['objects']

  constructor (init: StreamsInit) {
    this.ctx = init.ctx
    this.objects = init.objects
  }

  /**
   * Stores `size` bytes arriving in pieces as one Uint8Array object, never
   * holding them whole in memory when they do not fit there (then they go
   * straight to the spill disk, chunk by chunk). For sharing files.
   */
  async putStream (pieces: AsyncIterable<Uint8Array>, size: number, options: PutOptions = {}): Promise<Ref<Uint8Array>> {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`putStream size must be a whole number of bytes, not ${size}`)
    const signal = withTimeout(this.ctx.combine(options.signal), options.timeoutMs, 'putStream')
    if (size <= this.ctx.inlineThreshold) {
      const whole = new Uint8Array(size)
      let at = 0
      for await (const piece of pieces) {
        if (at + piece.byteLength > size) throw new RangeError(`putStream got more than the ${size} bytes it was told`)
        whole.set(piece, at)
        at += piece.byteLength
      }
      if (at !== size) throw new RangeError(`putStream got ${at} bytes, not ${size}`)
      return this.objects.put(whole, options)
    }
    const id = newObjectId()
    const key = objectKey(id)
    const count = chunkCount(size, this.ctx.chunkSize)
    const manifest: Manifest = { size, chunkSize: this.ctx.chunkSize, hashes: new Array<Uint8Array>(count), encoding: Encoding.BYTES }
    const ref = this.ctx.table.createOwned(id, { state: 'pending' })
    try {
      let obj: StoredObject
      if (this.ctx.store.fitsInMemory(size)) {
        await this.ctx.store.reserve(size, `putStream of ${key}`, signal)
        obj = this.ctx.store.allocate(key, id, this.ctx.peerId, manifest)
      } else if (this.ctx.store.diskHasRoom(size)) {
        obj = this.ctx.store.allocate(key, id, this.ctx.peerId, manifest, true)
      } else {
        throw new OutOfMemoryError(`putStream of ${size} bytes: more than the store's capacity (${this.ctx.store.capacity}) and its free spill space`)
      }
      obj.primary = true
      let index = 0
      let chunk = obj.data !== undefined ? obj.data.subarray(0, Math.min(this.ctx.chunkSize, size)) : new Uint8Array(Math.min(this.ctx.chunkSize, size))
      let filled = 0
      let total = 0
      const seal = async (): Promise<void> => {
        manifest.hashes[index] = await this.ctx.sha256(chunk)
        if (obj.data === undefined) await this.ctx.store.writeChunk(obj, index, chunk)
        this.ctx.store.markChunk(obj, index)
        index++
        const start = index * this.ctx.chunkSize
        const length = Math.max(0, Math.min(this.ctx.chunkSize, size - start))
        chunk = obj.data !== undefined ? obj.data.subarray(start, start + length) : new Uint8Array(length)
        filled = 0
      }
      for await (const piece of pieces) {
        signal?.throwIfAborted()
        if (total + piece.byteLength > size) throw new RangeError(`putStream got more than the ${size} bytes it was told`)
        total += piece.byteLength
        for (let at = 0; at < piece.byteLength && filled < chunk.byteLength;) {
          const n = Math.min(chunk.byteLength - filled, piece.byteLength - at)
          chunk.set(piece.subarray(at, at + n), filled)
          filled += n
          at += n
          if (filled === chunk.byteLength) await seal()
        }
      }
      if (total !== size) throw new RangeError(`putStream got ${total} bytes, not ${size}`)
      this.ctx.table.settle(key, { state: 'ready', inline: false, encoding: Encoding.BYTES, size, manifest, locations: [this.ctx.peerId], contained: [] })
      return ref as Ref<Uint8Array>
    } catch (err) {
      this.ctx.store.delete(key)
      this.ctx.table.settle(key, { state: 'failed', error: errorToInfo(err, this.ctx.peerId), locations: [], contained: [] })
      ref.release()
      throw err
    }
  }

  /**
   * The bytes of a Uint8Array object in order, chunk by chunk: pulled here first
   * (from every holder at once), then read from memory or disk one chunk at a
   * time, so an object larger than memory streams out without being whole anywhere.
   */
  async * getStream (ref: Ref<Uint8Array>, options: GetOptions & { onProgress?: (bytes: number, total: number) => void } = {}): AsyncGenerator<Uint8Array> {
    if (!(ref instanceof Ref)) throw new TypeError('getStream() takes a Ref')
    ref.trackerOrThrow()
    const signal = withTimeout(this.ctx.combine(options.signal), options.timeoutMs, 'getStream')
    const key = ref.key
    const registered = this.ctx.table.get(key)?.registered
    if (registered !== undefined) await raceSignal(registered, signal, 'getStream')
    let held = this.ctx.store.get(key)
    if (held === undefined || !this.ctx.store.isComplete(held)) {
      const info = await this.objects.locate({ id: ref.id, owner: ref.owner }, signal)
      if (info.status === ObjectStatus.INLINE) {
        options.onProgress?.(info.inline.byteLength, info.inline.byteLength)
        yield info.inline
        return
      }
      if (info.status !== ObjectStatus.STORED || info.manifest === undefined) {
        await this.objects.fetchDescribed({ id: ref.id, owner: ref.owner }, info, signal)
        return
      }
      const manifest = info.manifest
      held = await this.ctx.transfer.pull({
        key,
        id: ref.id,
        owner: ref.owner,
        manifest,
        sources: info.locations.filter(p => p !== this.ctx.peerId),
        signal,
        relocate: async () => (ref.owner === this.ctx.peerId ? info : await this.objects.locateRemote({ id: ref.id, owner: ref.owner }, signal)).locations.filter(p => p !== this.ctx.peerId),
        onProgress: (have, complete) => {
          let n = 0
          for (const b of have) n += b
          options.onProgress?.(complete ? manifest.size : Math.min(manifest.size, n * manifest.chunkSize), manifest.size)
          if (ref.owner !== this.ctx.peerId) this.ctx.channels.send(ref.owner, { progress: { id: ref.id, have: have.slice(), complete } }).catch(() => {})
        }
      })
    }
    const count = chunkCount(held.manifest.size, held.manifest.chunkSize)
    for (let i = 0; i < count; i++) {
      signal?.throwIfAborted()
      const chunk = await this.ctx.store.readChunk(key, i)
      if (chunk === undefined) throw new ObjectLostError(`chunk ${i} of ${key} was dropped from this store while it was being read`)
      yield chunk
    }
    options.onProgress?.(held.manifest.size, held.manifest.size)
  }
}
