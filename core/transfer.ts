/**
 * Bulk transfer: objects move as raw chunks on their own protocol, pulled by
 * the receiver from every holder it knows at once and verified against the
 * owner's manifest. A chunk that fails its hash is counted and fetched again,
 * from another holder when there is one.
 */
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { FrameDecoder, decodeVarint, encodeVarint, frame } from './protocol/framing.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, ChunkStatus } from './protocol/messages.ts'
import type { Manifest } from './protocol/messages.ts'
import { chunkCount, chunkRange, sameHash } from './chunks.ts'
import type { Hasher } from './chunks.ts'
import { ChunkIntegrityError, MalformedFrameError, ObjectLostError, OutOfMemoryError } from './errors.ts'
import { abortReason } from './signals.ts'
import type { ObjectStore, StoredObject } from './store.ts'
import { objectKey } from './ref.ts'
import type { TrafficCounter } from './traffic.ts'

const log = logger('refmesh:transfer')

export const CHUNK_PROTOCOL = '/refmesh/chunk/1.0.0'
/** Chunk requests are small; a frame larger than this is hostile. */
const MAX_REQUEST_FRAME = 64 * 1024
const MAX_HEADER = 1024

export interface TransferHooks {
  /** Test hook: return true to flip a byte of this chunk as it is sent. */
  corruptChunk?: (key: string, index: number) => boolean
}

export interface TransferInit {
  libp2p: Libp2p
  store: ObjectStore
  traffic: TrafficCounter
  chunksInFlightPerSource: number
  attemptsPerChunk: number
  /** assumed bandwidth until pulls have measured it, bytes per second */
  defaultBandwidth: number
  sha256: Hasher
  hooks?: TransferHooks
}

export interface TransferStats {
  chunksServed: number
  chunksFetched: number
  badChunks: number
  objectsPulled: number
}

export interface PullRequest {
  key: string
  id: Uint8Array
  owner: string
  manifest: Manifest
  sources: string[]
  signal?: AbortSignal
}

export class Transfer {
  private readonly init: TransferInit
  private readonly pulls = new Map<string, Promise<StoredObject>>()
  readonly stats: TransferStats = { chunksServed: 0, chunksFetched: 0, badChunks: 0, objectsPulled: 0 }

  constructor (init: TransferInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.libp2p.handle(CHUNK_PROTOCOL, (stream, connection) => {
      void this.serve(connection.remotePeer.toString(), stream)
    }, { maxInboundStreams: 256, maxOutboundStreams: 256 })
  }

  async stop (): Promise<void> {
    await this.init.libp2p.unhandle(CHUNK_PROTOCOL).catch(() => {})
  }

  /** Pulls an object into the local store; concurrent pulls of one object share the work. */
  pull (req: PullRequest): Promise<StoredObject> {
    let p = this.pulls.get(req.key)
    if (p === undefined) {
      p = new Pull(this, this.init, req).run()
      this.pulls.set(req.key, p)
      const cleanup = (): void => { this.pulls.delete(req.key) }
      p.then(cleanup, cleanup)
    }
    return p
  }

  private async serve (peer: string, stream: Stream): Promise<void> {
    const decoder = new FrameDecoder(MAX_REQUEST_FRAME)
    const { store, traffic, hooks } = this.init
    try {
      for await (const data of stream) {
        for (const f of decoder.push(data)) {
          const req = ChunkRequestCodec.decode(f.subarray())
          const key = objectKey(req.id)
          for (const index of req.indices) {
            let chunk = await store.readChunk(key, index).catch((err: Error) => {
              log.error('could not read chunk %d of %s: %s', index, key, err.message)
              return undefined
            })
            const header = ChunkHeaderCodec.encode({ id: req.id, index, status: chunk === undefined ? ChunkStatus.NOT_FOUND : ChunkStatus.OK })
            if (chunk !== undefined && hooks?.corruptChunk?.(key, index) === true) {
              chunk = chunk.slice()
              chunk[0] ^= 0xff
            }
            const out = chunk === undefined
              ? frame(encodeVarint(header.byteLength), header)
              : frame(encodeVarint(header.byteLength), header, chunk)
            traffic.add(peer, 'chunkOut', out.byteLength)
            if (chunk !== undefined) this.stats.chunksServed++
            if (!stream.send(out)) await stream.onDrain()
          }
        }
      }
      await stream.close().catch(() => {})
    } catch (err) {
      log.error('chunk stream from %s closed: %e', peer, err)
      stream.abort(err as Error)
    }
  }

  private rate: number | undefined

  /** @internal: a finished pull of `bytes` that took `ms`; feeds the bandwidth estimate. */
  countPulled (bytes: number, ms: number): void {
    this.stats.objectsPulled++
    // Small pulls measure latency, not bandwidth.
    if (bytes < 4 * 1024 * 1024 || ms <= 0) return
    const sample = bytes / (ms / 1000)
    this.rate = this.rate === undefined ? sample : this.rate * 0.7 + sample * 0.3
  }

  /** Inbound transfer rate estimate in bytes per second (a default until measured). */
  bandwidth (): number {
    return this.rate ?? this.init.defaultBandwidth
  }
}

interface Source {
  peer: string
  stream?: Promise<Stream>
  inFlight: Set<number>
  dead: boolean
}

/** One object's pull from several holders. */
class Pull {
  private readonly transfer: Transfer
  private readonly init: TransferInit
  private readonly req: PullRequest
  private readonly sources: Source[]
  private readonly queue: number[] = []
  private readonly attempts = new Map<number, number>()
  private readonly badFrom = new Map<number, Set<string>>()
  private obj!: StoredObject
  private finish!: (err?: Error) => void

  constructor (transfer: Transfer, init: TransferInit, req: PullRequest) {
    this.transfer = transfer
    this.init = init
    this.req = req
    this.sources = [...new Set(req.sources)].map(peer => ({ peer, inFlight: new Set<number>(), dead: false }))
  }

  async run (): Promise<StoredObject> {
    const { store } = this.init
    const { key, id, owner, manifest, signal } = this.req
    // Room first: in memory when the object fits there, else straight to disk.
    const existing = store.get(key)
    if (existing !== undefined) {
      this.obj = existing
    } else if (store.fitsInMemory(manifest.size)) {
      await store.reserve(manifest.size, `object ${key}`, signal)
      this.obj = store.allocate(key, id, owner, manifest)
    } else if (store.diskHasRoom(manifest.size)) {
      this.obj = store.allocate(key, id, owner, manifest, true)
    } else {
      throw new OutOfMemoryError(`object ${key} is ${manifest.size} bytes: more than the store's capacity (${store.capacity}) and its free spill space`)
    }
    const count = chunkCount(manifest.size, manifest.chunkSize)
    for (let i = 0; i < count; i++) if (this.obj.have[i] !== 1) this.queue.push(i)
    if (this.queue.length === 0) return this.obj
    log('pull %s: %d chunks from %s', key, this.queue.length, this.req.sources.join(','))

    const done = new Promise<void>((resolve, reject) => {
      this.finish = (err?: Error) => { if (err === undefined) resolve(); else reject(err) }
    })
    const onAbort = (): void => this.finish(abortReason(signal as AbortSignal, `pull of ${key}`))
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted === true) onAbort()
    try {
      const started = performance.now()
      this.pump()
      await done
      this.transfer.countPulled(manifest.size, performance.now() - started)
      return this.obj
    } catch (err) {
      // A partial copy is useless to others if we give up; drop it.
      if (!store.isComplete(this.obj)) store.delete(key)
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
      for (const s of this.sources) void s.stream?.then(st => { void st.close().catch(() => {}) }, () => {})
    }
  }

  private pickSource (index: number): Source | undefined | null {
    const live = this.sources.filter(s => !s.dead)
    if (live.length === 0) return null
    const bad = this.badFrom.get(index)
    const preferred = live.filter(s => bad?.has(s.peer) !== true)
    const pool = preferred.length > 0 ? preferred : live
    const free = pool.filter(s => s.inFlight.size < this.init.chunksInFlightPerSource)
    if (free.length === 0) return undefined
    return free.reduce((a, b) => (b.inFlight.size < a.inFlight.size ? b : a))
  }

  private pump (): void {
    const batches = new Map<Source, number[]>()
    while (this.queue.length > 0) {
      const index = this.queue[0]
      const source = this.pickSource(index)
      if (source === null) {
        this.finish(new ObjectLostError(`no holder of ${this.req.key} could serve chunk ${index} (tried ${this.req.sources.join(', ')})`))
        return
      }
      if (source === undefined) break
      this.queue.shift()
      source.inFlight.add(index)
      let batch = batches.get(source)
      if (batch === undefined) batches.set(source, batch = [])
      batch.push(index)
    }
    for (const [source, indices] of batches) void this.request(source, indices)
  }

  private async request (source: Source, indices: number[]): Promise<void> {
    try {
      if (source.stream === undefined) {
        source.stream = this.init.libp2p.dialProtocol(peerIdFromString(source.peer), CHUNK_PROTOCOL, { signal: this.req.signal })
        const stream = await source.stream
        void this.readResponses(source, stream)
      }
      const stream = await source.stream
      stream.send(frame(ChunkRequestCodec.encode({ id: this.req.id, indices })))
    } catch (err) {
      this.dropSource(source, err as Error)
    }
  }

  private dropSource (source: Source, err: Error): void {
    if (source.dead) return
    log('source %s of %s dropped: %s', source.peer, this.req.key, err.message)
    source.dead = true
    for (const i of source.inFlight) if (this.obj.have[i] !== 1) this.queue.unshift(i)
    source.inFlight.clear()
    this.pump()
  }

  private async readResponses (source: Source, stream: Stream): Promise<void> {
    const decoder = new FrameDecoder(this.req.manifest.chunkSize + MAX_HEADER)
    try {
      for await (const data of stream) {
        this.init.traffic.add(source.peer, 'chunkIn', data.byteLength)
        for (const f of decoder.push(data)) {
          await this.onChunkFrame(source, f)
          if (this.obj.haveCount === this.obj.have.length) {
            this.finish()
            return
          }
        }
      }
      this.dropSource(source, new ObjectLostError(`${source.peer} closed the chunk stream`))
    } catch (err) {
      stream.abort(err as Error)
      this.dropSource(source, err as Error)
    }
  }

  private async onChunkFrame (source: Source, f: Uint8ArrayList): Promise<void> {
    const head = decodeVarint(f)
    if (head === undefined || head[0] > MAX_HEADER) throw new MalformedFrameError('bad chunk frame header')
    const [headerLength, prefix] = head
    const header = ChunkHeaderCodec.decode(f.subarray(prefix, prefix + headerLength))
    const index = header.index
    if (!source.inFlight.has(index)) throw new MalformedFrameError(`unrequested chunk ${index} from ${source.peer}`)
    source.inFlight.delete(index)
    if (header.status !== ChunkStatus.OK) {
      this.queue.unshift(index)
      throw new ObjectLostError(`${source.peer} does not hold chunk ${index} of ${this.req.key}`)
    }
    const [start, end] = chunkRange(this.req.manifest, index)
    const body = f.sublist(prefix + headerLength)
    if (body.byteLength !== end - start) throw new MalformedFrameError(`chunk ${index} has ${body.byteLength} bytes, expected ${end - start}`)
    if (this.obj.have[index] !== 1) {
      // In memory the chunk lands in place; on disk it goes through one buffer.
      const chunk = this.obj.data !== undefined ? this.obj.data.subarray(start, end) : new Uint8Array(end - start)
      let offset = 0
      for (const buf of body) {
        chunk.set(buf, offset)
        offset += buf.byteLength
      }
      const hash = await this.init.sha256(chunk)
      if (sameHash(hash, this.req.manifest.hashes[index])) {
        if (this.obj.data === undefined) await this.init.store.writeChunk(this.obj, index, chunk)
        this.init.store.markChunk(this.obj, index)
        this.transfer.stats.chunksFetched++
      } else {
        this.transfer.stats.badChunks++
        const attempts = (this.attempts.get(index) ?? 0) + 1
        this.attempts.set(index, attempts)
        log.error('chunk %d of %s from %s failed its hash (attempt %d)', index, this.req.key, source.peer, attempts)
        if (attempts >= this.init.attemptsPerChunk) {
          this.finish(new ChunkIntegrityError(`chunk ${index} of ${this.req.key} failed its SHA-256 check ${attempts} times`))
          return
        }
        let bad = this.badFrom.get(index)
        if (bad === undefined) this.badFrom.set(index, bad = new Set())
        bad.add(source.peer)
        this.queue.unshift(index)
      }
    }
    this.pump()
  }
}
