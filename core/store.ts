/**
 * The object store shard of one peer: the bytes of objects this peer holds,
 * complete or partial, as one contiguous buffer per object so a complete
 * object is read back without copying; and the memory rules of DESIGN.md
 * section 5, so a peer stays inside the memory it was given:
 *
 * - Memory in use (objects in memory plus reservations for bytes on their way)
 *   never exceeds the capacity: bytes come in only through `reserve()`, which
 *   waits for room (backpressure) and fails with OutOfMemoryError only when
 *   waiting cannot help, or has not helped for `memoryWaitMs`.
 * - Above `spillFraction` of capacity, least recently used secondary copies
 *   (fetched from elsewhere; their holders still have them) are dropped, then
 *   least recently used primary copies are written to the spill backend and
 *   dropped from memory. Objects in use (pinned) stay. A spilled object comes
 *   back on demand; chunks are served straight from disk.
 * - An object larger than the whole capacity never enters memory here: it is
 *   written to disk as it arrives, chunk by chunk.
 */
import { logger } from '@libp2p/logger'
import { chunkCount, chunkRange } from './chunks.ts'
import { OutOfMemoryError } from './errors.ts'
import type { Manifest } from './protocol/messages.ts'
import { raceSignal } from './signals.ts'

const log = logger('refmesh:store')
/** after a spill fails for want of disk room, how long the store leaves the disk alone */
const DISK_FULL_BACKOFF_MS = 5_000

/** Where spilled objects go (Node: files; browser: OPFS). Keys are hex. */
export interface SpillBackend {
  /** writes an object's bytes, replacing any */
  write: (key: string, data: Uint8Array) => Promise<void>
  /** writes part of an object (objects that arrive straight to disk) */
  writeAt: (key: string, offset: number, data: Uint8Array) => Promise<void>
  /** reads `target.byteLength` bytes at `offset` into `target` */
  read: (key: string, offset: number, target: Uint8Array) => Promise<void>
  delete: (key: string) => Promise<void>
}

export interface StoredObject {
  readonly key: string
  readonly id: Uint8Array
  readonly owner: string
  readonly manifest: Manifest
  /** the bytes while in memory; undefined while only on disk */
  data: Uint8Array | undefined
  /** one flag per chunk: held and verified */
  readonly have: Uint8Array
  haveCount: number
  /** the copy its owner depends on (its maker's, or a durable owner's): spilled under pressure; other copies are dropped */
  primary: boolean
  lastUsed: number
  /** the disk holds the object's bytes (all that `have` marks): a spilled, restored or disk-received object */
  onDisk: boolean
  /** readers using `data` now: a pinned object stays in memory */
  pins: number
  /** a spill write in progress */
  spilling: boolean
}

export interface StoreStats {
  objects: number
  /** bytes in memory, reservations included */
  bytes: number
  capacity: number
  /** the most bytes ever in memory */
  peakBytes: number
  spilledObjects: number
  spilledBytes: number
  spillCapacity: number
  /** objects written to disk, read back, and secondary copies dropped, since start */
  spills: number
  restores: number
  drops: number
}

export interface StoreInit {
  capacity: number
  /** keep objects in SharedArrayBuffers, so workers read them without a copy */
  shared?: boolean
  spill?: SpillBackend
  /** bytes the spill backend may hold */
  spillCapacity?: number
  /** the share of capacity above which copies are dropped and spilled */
  spillFraction?: number
  /** how long a reservation waits for room before OutOfMemoryError */
  memoryWaitMs?: number
  /**
   * Asks the runtime to collect garbage now. A dropped buffer is only returned
   * to the system when the garbage collector finds it, and a collector paced by
   * its own heap lets several capacities' worth pile up under a spilling
   * workload; like Java's direct buffers (Bits.reserveMemory calls System.gc()),
   * the store asks for a collection each time it has dropped a quarter of its
   * capacity.
   */
  reclaim?: () => void
  /** called whenever memory in use falls */
  onRelief?: () => void
  /** a buffer for bytes about to be read in whole (default: a zeroed Uint8Array) */
  allocate?: (size: number) => Uint8Array
}

interface Waiter {
  bytes: number
  what: string
  grant: () => void
}

export class ObjectStore {
  private readonly objects = new Map<string, StoredObject>()
  readonly capacity: number
  readonly spillCapacity: number
  private diskFullAt = -Infinity
  private readonly spillAt: number
  private readonly memoryWaitMs: number
  private readonly backend: SpillBackend | undefined
  private readonly shared: boolean
  /** bytes of objects in memory */
  private resident = 0
  /** bytes promised to callers of reserve() not yet stored */
  private reserved = 0
  /** bytes of spill writes in flight (still resident) */
  private spillingBytes = 0
  private diskBytes = 0
  private diskObjects = 0
  private peak = 0
  /** bytes dropped from memory since the last reclaim() */
  private dropped = 0
  private reclaimScheduled = false
  private readonly reclaim: (() => void) | undefined
  private readonly onRelief: (() => void) | undefined
  private readonly allocateBuffer: (size: number) => Uint8Array
  private readonly counters = { spills: 0, restores: 0, drops: 0 }
  private readonly waiters: Waiter[] = []

  constructor (init: StoreInit) {
    this.capacity = init.capacity
    this.shared = init.shared === true && typeof SharedArrayBuffer === 'function'
    this.backend = init.spill
    this.spillCapacity = init.spill === undefined ? 0 : (init.spillCapacity ?? Infinity)
    this.spillAt = Math.floor(init.capacity * (init.spillFraction ?? 0.6))
    this.memoryWaitMs = init.memoryWaitMs ?? 60_000
    this.reclaim = init.reclaim
    this.onRelief = init.onRelief
    this.allocateBuffer = init.allocate ?? (size => new Uint8Array(size))
  }

  /** Whether spill writes are in flight: memory is being freed. */
  get freeing (): boolean {
    return this.spillingBytes > 0
  }

  /** Bytes in memory now, reservations included. */
  get used (): number {
    return this.resident + this.reserved
  }

  get (key: string): StoredObject | undefined {
    const obj = this.objects.get(key)
    if (obj !== undefined) obj.lastUsed = performance.now()
    return obj
  }

  has (key: string): boolean {
    return this.objects.has(key)
  }

  isComplete (obj: StoredObject): boolean {
    return obj.haveCount === obj.have.length
  }

  /** Whether an object of `bytes` could ever be held in memory here. */
  fitsInMemory (bytes: number): boolean {
    return bytes <= this.capacity
  }

  /** reserve() when the room is there now (nobody waits before us): true and taken, else false and nothing taken. */
  tryReserve (bytes: number): boolean {
    if (this.waiters.length > 0 || this.used + bytes > this.capacity) return false
    this.take(bytes)
    return true
  }

  /**
   * Waits until `bytes` more fit in memory and sets them aside; pass them on to
   * putComplete/allocate, or give them back with unreserve(). Waiters are
   * served in order. OutOfMemoryError when `bytes` exceeds the capacity, or
   * after `memoryWaitMs` without room; the signal's reason when it aborts.
   */
  async reserve (bytes: number, what: string, signal?: AbortSignal): Promise<void> {
    if (bytes > this.capacity) throw new OutOfMemoryError(`${what} needs ${bytes} bytes of memory; the store's capacity is ${this.capacity}`)
    if (this.tryReserve(bytes)) return
    let grant!: () => void
    const granted = new Promise<void>(resolve => { grant = resolve })
    const waiter: Waiter = { bytes, what, grant }
    this.waiters.push(waiter)
    this.relieve()
    const deadline = AbortSignal.timeout(this.memoryWaitMs)
    const giveUp = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
    try {
      await raceSignal(granted, giveUp, what)
    } catch (err) {
      const i = this.waiters.indexOf(waiter)
      if (i >= 0) {
        this.waiters.splice(i, 1)
        this.grantWaiters()
      } else {
        // Granted as the signal fired: hand the room back.
        this.unreserve(bytes)
      }
      if (signal?.aborted === true) throw err
      throw new OutOfMemoryError(`${what} waited ${this.memoryWaitMs} ms for ${bytes} bytes of memory: ${this.describe()}`)
    }
  }

  unreserve (bytes: number): void {
    this.reserved -= bytes
    this.grantWaiters()
  }

  /** Stores a whole value this peer made, with `bytes` reserved for it. `data` is kept as it is, not copied. */
  putComplete (key: string, id: Uint8Array, owner: string, manifest: Manifest, data: Uint8Array, primary: boolean): StoredObject {
    this.delete(key)
    const count = chunkCount(manifest.size, manifest.chunkSize)
    const obj = this.newObject(key, id, owner, manifest, data, primary)
    obj.have.fill(1)
    obj.haveCount = count
    this.objects.set(key, obj)
    this.reserved -= data.byteLength
    this.resident += data.byteLength
    log('put %s %d bytes (%s)', key, data.byteLength, primary ? 'primary' : 'copy')
    this.relieve()
    return obj
  }

  /**
   * Stores a whole value this peer made straight to disk, for values larger
   * than memory. False when the disk has no room either.
   */
  async putOnDisk (key: string, id: Uint8Array, owner: string, manifest: Manifest, data: Uint8Array): Promise<boolean> {
    const backend = this.backend
    if (backend === undefined || !this.diskHasRoom(data.byteLength)) return false
    this.diskBytes += data.byteLength
    try {
      await backend.write(key, data)
    } catch (err) {
      this.diskBytes -= data.byteLength
      throw err
    }
    this.delete(key)
    const obj = this.newObject(key, id, owner, manifest, undefined, true)
    obj.have.fill(1)
    obj.haveCount = obj.have.length
    obj.onDisk = true
    this.objects.set(key, obj)
    this.diskObjects++
    this.counters.spills++
    return true
  }

  /**
   * Makes room for an object that will arrive chunk by chunk: in memory, with
   * its size reserved by the caller; or, for one larger than memory, on disk.
   */
  allocate (key: string, id: Uint8Array, owner: string, manifest: Manifest, onDisk = false): StoredObject {
    const existing = this.objects.get(key)
    if (existing !== undefined) {
      if (!onDisk) this.unreserve(manifest.size)
      return existing
    }
    const data = onDisk ? undefined : this.shared ? new Uint8Array(new SharedArrayBuffer(manifest.size)) : new Uint8Array(manifest.size)
    const obj = this.newObject(key, id, owner, manifest, data, false)
    obj.onDisk = onDisk
    this.objects.set(key, obj)
    if (onDisk) {
      this.diskBytes += manifest.size
      this.diskObjects++
    } else {
      this.reserved -= manifest.size
      this.resident += manifest.size
    }
    return obj
  }

  /** Whether the disk can take an object of `bytes` arriving straight to it. */
  diskHasRoom (bytes: number): boolean {
    return this.backend !== undefined && this.diskBytes + bytes <= this.spillCapacity && !this.diskFull()
  }

  /** Writes a verified chunk of an object arriving straight to disk. */
  async writeChunk (obj: StoredObject, index: number, chunk: Uint8Array): Promise<void> {
    if (this.backend === undefined) throw new OutOfMemoryError('no spill backend for an object larger than memory')
    const [start] = chunkRange(obj.manifest, index)
    await this.backend.writeAt(obj.key, start, chunk)
  }

  /** Marks chunk `index` as held; its bytes are already in `obj.data` (or on disk). */
  markChunk (obj: StoredObject, index: number): void {
    if (obj.have[index] === 1) return
    obj.have[index] = 1
    obj.haveCount++
  }

  /** A chunk to serve: from memory, or read from disk. */
  async readChunk (key: string, index: number): Promise<Uint8Array | undefined> {
    const obj = this.objects.get(key)
    if (obj === undefined || obj.have[index] !== 1) return undefined
    const [start, end] = chunkRange(obj.manifest, index)
    if (obj.data !== undefined) return obj.data.subarray(start, end)
    if (!obj.onDisk || this.backend === undefined) return undefined
    const chunk = new Uint8Array(end - start)
    try {
      await this.backend.read(key, start, chunk)
    } catch (err) {
      // Freed while we read.
      if (!this.objects.has(key)) return undefined
      throw err
    }
    return chunk
  }

  /** read() of an object complete in memory, without a wait; undefined otherwise (read() then says more). */
  readInMemory (key: string): { bytes: Uint8Array, release: () => void } | undefined {
    const obj = this.get(key)
    return obj?.data !== undefined && this.isComplete(obj) ? { bytes: obj.data, release: this.pin(obj) } : undefined
  }

  /**
   * The bytes of a complete object, in memory and pinned until `release()`:
   * restored from disk when spilled (waiting for room like any reservation).
   * An object larger than memory is read into a buffer of the caller's own,
   * outside the store. Undefined when the object is not (or no longer) here.
   */
  async read (key: string, what: string, signal?: AbortSignal): Promise<{ bytes: Uint8Array, release: () => void } | undefined> {
    for (;;) {
      const obj = this.get(key)
      if (obj === undefined || !this.isComplete(obj)) return undefined
      if (obj.data !== undefined) return { bytes: obj.data, release: this.pin(obj) }
      if (!obj.onDisk || this.backend === undefined) return undefined
      const size = obj.manifest.size
      if (!this.fitsInMemory(size)) {
        const bytes = new Uint8Array(size)
        await this.backend.read(key, 0, bytes)
        return { bytes, release: () => {} }
      }
      await this.reserve(size, what, signal)
      let bytes: Uint8Array
      try {
        bytes = this.shared ? new Uint8Array(new SharedArrayBuffer(size)) : this.allocateBuffer(size)
        await this.backend.read(key, 0, bytes)
      } catch (err) {
        this.unreserve(size)
        if (!this.objects.has(key)) return undefined
        throw err
      }
      // Another reader may have restored it meanwhile, or it was freed: look again.
      if (this.objects.get(key) !== obj || obj.data !== undefined) {
        this.unreserve(size)
        continue
      }
      obj.data = bytes
      this.reserved -= size
      this.resident += size
      this.counters.restores++
      log('restored %s %d bytes', key, size)
      return { bytes, release: this.pin(obj) }
    }
  }

  /** Keeps an object in memory until the returned function is called. */
  pin (obj: StoredObject): () => void {
    obj.pins++
    obj.lastUsed = performance.now()
    let done = false
    return () => {
      if (done) return
      done = true
      obj.pins--
      if (obj.pins === 0) this.relieve()
    }
  }

  /** Keys of the objects held here that `owner` owns. */
  ownedBy (owner: string): string[] {
    const keys: string[] = []
    for (const obj of this.objects.values()) if (obj.owner === owner) keys.push(obj.key)
    return keys
  }

  delete (key: string): boolean {
    const obj = this.objects.get(key)
    if (obj === undefined) return false
    this.objects.delete(key)
    if (obj.data !== undefined) this.droppedBytes(obj.data.byteLength)
    if (obj.onDisk) this.forgetOnDisk(obj)
    log('free %s %d bytes', key, obj.manifest.size)
    this.grantWaiters()
    return true
  }

  private forgetOnDisk (obj: StoredObject): void {
    obj.onDisk = false
    this.diskBytes -= obj.manifest.size
    this.diskObjects--
    this.backend?.delete(obj.key).catch((err: Error) => { log.error('could not delete the spill file of %s: %s', obj.key, err.message) })
  }

  keys (): IterableIterator<string> {
    return this.objects.keys()
  }

  stats (): StoreStats {
    return {
      objects: this.objects.size,
      bytes: this.used,
      capacity: this.capacity,
      peakBytes: this.peak,
      spilledObjects: this.diskObjects,
      spilledBytes: this.diskBytes,
      spillCapacity: this.spillCapacity,
      ...this.counters
    }
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

  /** `bytes` left memory: once a quarter of capacity has, ask for a collection. */
  private droppedBytes (bytes: number): void {
    this.resident -= bytes
    this.dropped += bytes
    if (this.reclaim === undefined || this.reclaimScheduled || this.dropped < this.capacity / 4) return
    this.reclaimScheduled = true
    setTimeout(() => {
      this.reclaimScheduled = false
      this.dropped = 0
      this.reclaim?.()
    }, 0)
  }

  private newObject (key: string, id: Uint8Array, owner: string, manifest: Manifest, data: Uint8Array | undefined, primary: boolean): StoredObject {
    const count = chunkCount(manifest.size, manifest.chunkSize)
    return { key, id, owner, manifest, data, have: new Uint8Array(count), haveCount: 0, primary, lastUsed: performance.now(), onDisk: false, pins: 0, spilling: false }
  }

  private take (bytes: number): void {
    this.reserved += bytes
    if (this.used > this.peak) this.peak = this.used
    this.relieve()
  }

  private grantWaiters (): void {
    this.onRelief?.()
    while (this.waiters.length > 0 && this.used + this.waiters[0].bytes <= this.capacity) {
      const w = this.waiters.shift() as Waiter
      this.take(w.bytes)
      w.grant()
    }
  }

  /**
   * Brings memory in use toward the spill mark (and below what waiting
   * reservations need): drops least recently used secondary copies, then
   * spills least recently used primary ones.
   */
  private relieve (): void {
    const waiting = this.waiters.reduce((n, w) => n + w.bytes, 0)
    const target = Math.min(this.spillAt, this.capacity - waiting)
    let excess = this.used - this.spillingBytes - target
    if (excess <= 0) return
    const movable = [...this.objects.values()]
      .filter(o => o.data !== undefined && o.pins === 0 && !o.spilling && this.isComplete(o))
      .sort((a, b) => a.lastUsed - b.lastUsed)
    for (const obj of movable) {
      if (excess <= 0) break
      if (obj.primary) continue
      if (obj.onDisk) this.forgetOnDisk(obj)
      this.objects.delete(obj.key)
      this.droppedBytes(obj.manifest.size)
      this.counters.drops++
      excess -= obj.manifest.size
      log('dropped the copy of %s (%d bytes)', obj.key, obj.manifest.size)
    }
    for (const obj of movable) {
      if (excess <= 0) break
      if (!obj.primary) continue
      if (obj.onDisk) {
        // Restored and unchanged: the disk still has it.
        obj.data = undefined
        this.droppedBytes(obj.manifest.size)
        excess -= obj.manifest.size
        continue
      }
      if (this.backend === undefined || !this.diskHasRoom(obj.manifest.size)) continue
      excess -= obj.manifest.size
      this.spill(obj, this.backend)
    }
    this.grantWaiters()
  }

  private spill (obj: StoredObject, backend: SpillBackend): void {
    const size = obj.manifest.size
    obj.spilling = true
    this.spillingBytes += size
    this.diskBytes += size
    this.diskObjects++
    backend.write(obj.key, obj.data as Uint8Array).then(() => {
      obj.spilling = false
      this.spillingBytes -= size
      if (this.objects.get(obj.key) !== obj) {
        // Freed while it was written.
        this.diskBytes -= size
        this.diskObjects--
        backend.delete(obj.key).catch(() => {})
        return
      }
      obj.onDisk = true
      this.counters.spills++
      if (obj.pins === 0 && obj.data !== undefined) {
        obj.data = undefined
        this.droppedBytes(size)
        log('spilled %s (%d bytes)', obj.key, size)
      }
      this.grantWaiters()
      this.relieve()
    }, (err: Error) => {
      obj.spilling = false
      this.spillingBytes -= size
      this.diskBytes -= size
      this.diskObjects--
      log.error('spilling %s failed: %s', obj.key, err.message)
      // A full disk (the backend says so with OutOfMemoryError): stop trying for a while.
      if (err instanceof OutOfMemoryError) this.diskFullAt = performance.now()
    })
  }

  /** Whether a spill failed for want of room recently; the disk is left alone until then. */
  private diskFull (): boolean {
    return performance.now() - this.diskFullAt < DISK_FULL_BACKOFF_MS
  }

  private describe (): string {
    const pinned = [...this.objects.values()].filter(o => o.data !== undefined && o.pins > 0).reduce((n, o) => n + o.manifest.size, 0)
    return `${this.used} of ${this.capacity} bytes in use (${pinned} pinned by running calls and readers, ${this.reserved} reserved), ` +
      `${this.diskBytes} of ${this.spillCapacity === Infinity ? 'unlimited' : this.spillCapacity} spill bytes used`
  }
}
