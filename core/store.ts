/**
 * The object store shard of one peer: the bytes of objects this peer holds,
 * complete or partial, as one contiguous buffer per object so a complete
 * object is read back without copying. Memory limits and spilling build on it.
 */
import { logger } from '@libp2p/logger'
import { chunkCount, chunkRange } from './chunks.ts'
import type { Manifest } from './protocol/messages.ts'

const log = logger('refmesh:store')

export interface StoredObject {
  readonly key: string
  readonly id: Uint8Array
  readonly owner: string
  readonly manifest: Manifest
  readonly data: Uint8Array
  /** one flag per chunk: held and verified */
  readonly have: Uint8Array
  haveCount: number
  /** the copy its maker put here (as opposed to a copy fetched from elsewhere) */
  readonly primary: boolean
  lastUsed: number
}

export interface StoreStats {
  objects: number
  bytes: number
  capacity: number
}

export class ObjectStore {
  private readonly objects = new Map<string, StoredObject>()
  private used = 0
  readonly capacity: number

  private readonly shared: boolean

  /** `shared`: keep received objects in SharedArrayBuffers, so workers read them without a copy. */
  constructor (init: { capacity: number, shared?: boolean }) {
    this.capacity = init.capacity
    this.shared = init.shared === true && typeof SharedArrayBuffer === 'function'
  }

  get (key: string): StoredObject | undefined {
    const obj = this.objects.get(key)
    if (obj !== undefined) obj.lastUsed = Date.now()
    return obj
  }

  has (key: string): boolean {
    return this.objects.has(key)
  }

  isComplete (obj: StoredObject): boolean {
    return obj.haveCount === obj.have.length
  }

  /** Stores a whole value this peer made. `data` is kept as it is, not copied. */
  putComplete (key: string, id: Uint8Array, owner: string, manifest: Manifest, data: Uint8Array, primary: boolean): StoredObject {
    this.delete(key)
    const count = chunkCount(manifest.size, manifest.chunkSize)
    const obj: StoredObject = { key, id, owner, manifest, data, have: new Uint8Array(count).fill(1), haveCount: count, primary, lastUsed: Date.now() }
    this.objects.set(key, obj)
    this.used += data.byteLength
    log('put %s %d bytes (%s)', key, data.byteLength, primary ? 'primary' : 'copy')
    return obj
  }

  /** Makes room for an object that will arrive chunk by chunk. */
  allocate (key: string, id: Uint8Array, owner: string, manifest: Manifest): StoredObject {
    const existing = this.objects.get(key)
    if (existing !== undefined) return existing
    const count = chunkCount(manifest.size, manifest.chunkSize)
    const data = this.shared ? new Uint8Array(new SharedArrayBuffer(manifest.size)) : new Uint8Array(manifest.size)
    const obj: StoredObject = { key, id, owner, manifest, data, have: new Uint8Array(count), haveCount: 0, primary: false, lastUsed: Date.now() }
    this.objects.set(key, obj)
    this.used += manifest.size
    return obj
  }

  /** Marks chunk `index` as held; its bytes are already in `obj.data`. */
  markChunk (obj: StoredObject, index: number): void {
    if (obj.have[index] === 1) return
    obj.have[index] = 1
    obj.haveCount++
  }

  readChunk (key: string, index: number): Uint8Array | undefined {
    const obj = this.objects.get(key)
    if (obj === undefined || obj.have[index] !== 1) return undefined
    const [start, end] = chunkRange(obj.manifest, index)
    return obj.data.subarray(start, end)
  }

  delete (key: string): boolean {
    const obj = this.objects.get(key)
    if (obj === undefined) return false
    this.objects.delete(key)
    this.used -= obj.data.byteLength
    log('free %s %d bytes', key, obj.data.byteLength)
    return true
  }

  keys (): IterableIterator<string> {
    return this.objects.keys()
  }

  stats (): StoreStats {
    return { objects: this.objects.size, bytes: this.used, capacity: this.capacity }
  }

  /** Keys of up to `limit` objects held, for diagnostics. */
  sampleKeys (limit: number): string[] {
    const out: string[] = []
    for (const key of this.objects.keys()) {
      if (out.length >= limit) break
      out.push(key)
    }
    return out
  }
}
