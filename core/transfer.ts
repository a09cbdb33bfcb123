/**
 * Bulk transfer: objects move as raw chunks on their own protocol, pulled by
 * the receiver from every holder it knows at once (partial holders included:
 * a peer serves the chunks it has verified while it is still receiving the
 * rest) and verified against the owner's manifest. A chunk that fails its hash
 * is counted and fetched again, from another holder when there is one.
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
import type { PeerQuotas } from './quota.ts'

const log = logger('refmesh:transfer')

export const CHUNK_PROTOCOL = '/refmesh/chunk/1.0.0'
/** Chunk requests are small; a frame larger than this is hostile. */
const MAX_REQUEST_FRAME = 64 * 1024
const MAX_HEADER = 1024
/** peers with a record of misbehaving kept, and objects each was caught denying */
const MAX_SOURCE_RECORDS = 4096
const MAX_DENIED_PER_PEER = 1024
/** how many times `stallMs` the only live source of a pull may stay silent before it is dropped */
const LAST_SOURCE_STALL_FACTOR = 3

export interface TransferHooks {
  /** Test hook: return true to flip a byte of this chunk as it is sent. */
  corruptChunk?: (key: string, index: number) => boolean
  /** Test hook: return true to deny holding this object (while the owner is told we hold it). */
  withholdChunks?: (key: string) => boolean
}

/** What a peer did wrong as a source: chunks that failed their hash, objects it was said to hold and did not serve. */
export interface SourceRecord {
  badChunks: number
  falseClaims: number
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
  /** the clock of a pull (stalls, progress, relocation, bitfields of holders that do not push them) */
  bitfieldRefreshMs: number
  /** how often a puller asks a holder that pushes its bitfield for it anyway */
  watchedBitfieldRefreshMs: number
  /** a source with chunks in flight that sends nothing this long is dropped */
  stallMs: number
  /** how often a puller reports its progress to the owner */
  progressEveryMs: number
  /** how long a peer that served a chunk that failed its hash is left out of pulls (its owner's objects excepted) */
  avoidBadSourceMs: number
  /** how long a peer that denied holding an object it was named a holder of is left out of that object's pulls */
  avoidDeniedMs: number
  /** how often a puller asks the owner for the current holders */
  relocateEveryMs: number
  /** pull from partial holders too (false: complete holders only, for comparison) */
  swarm: boolean
  /** private meshes: resolves once the peer has proved the mesh secret */
  admit?: (peer: string) => Promise<void>
  /** per-peer limits on chunks asked and not yet sent */
  quotas?: PeerQuotas
  /**
   * Holders this peer reaches only through a relay: have a peer both reach directly
   * take a copy first (core/detour.ts), and resolve with it as a source. Chunks never
   * cross a limited (relayed) connection.
   */
  detour?: (object: { id: Uint8Array, owner: string }, holders: string[], signal?: AbortSignal) => Promise<string[]>
}

/** A holder reachable only over a relayed connection, which chunks never cross. */
export class RelayedOnlyError extends Error {
  override name = 'RelayedOnlyError'
}

export interface TransferStats {
  chunksServed: number
  chunksFetched: number
  badChunks: number
  objectsPulled: number
  /** chunks that arrived twice (asked of two sources near the end) */
  duplicateChunks: number
  /** chunk bytes received over direct connections, and over relayed (limited) ones (none: pulls refuse them) */
  bytesDirect: number
  bytesRelayed: number
  /** objects whose only holders were behind a relay, pulled through a peer reached directly instead; their bytes */
  detours: number
  detourBytes: number
}

export interface PullRequest {
  key: string
  id: Uint8Array
  owner: string
  manifest: Manifest
  sources: string[]
  signal?: AbortSignal
  /** asks the owner for holders again, when the known ones cannot help */
  relocate?: () => Promise<string[]>
  /** the chunks held so far (not a copy), at most every `progressEveryMs` and once when complete */
  onProgress?: (have: Uint8Array, complete: boolean) => void
}

export class Transfer {
  private readonly init: TransferInit
  private readonly pulls = new Map<string, Promise<StoredObject>>()
  /** pulls under way, by object: a peer asking us for one is pulling it too, so it is a source */
  private readonly active = new Map<string, Pull>()
  readonly stats: TransferStats = { chunksServed: 0, chunksFetched: 0, badChunks: 0, objectsPulled: 0, duplicateChunks: 0, bytesDirect: 0, bytesRelayed: 0, detours: 0, detourBytes: 0 }
  /**
   * Pullers watching our bitfield of an object we are still receiving, by object:
   * each gets it pushed as chunks arrive (batched per turn of the event loop),
   * instead of asking every few tens of milliseconds.
   */
  private readonly watchers = new Map<string, Set<Watcher>>()
  /** sources that misbehaved, for avoiding them and for stats */
  private readonly records = new Map<string, SourceRecord & { badUntil: number, denied: Map<string, number> }>()
  private readonly changed = new Set<string>()
  private flushScheduled = false

  constructor (init: TransferInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.libp2p.handle(CHUNK_PROTOCOL, (stream, connection) => {
      const peer = connection.remotePeer.toString()
      if (this.init.admit === undefined) {
        void this.serve(peer, stream)
        return
      }
      this.init.admit(peer).then(() => this.serve(peer, stream), (err: Error) => { stream.abort(err) })
    }, { maxInboundStreams: 256, maxOutboundStreams: 256 })
  }

  async stop (): Promise<void> {
    await this.init.libp2p.unhandle(CHUNK_PROTOCOL).catch(() => {})
  }

  /** Per peer: chunks it served that failed their hash, and objects it was named a holder of and denied holding. */
  sourceRecords (): Record<string, SourceRecord> {
    return Object.fromEntries([...this.records].map(([peer, r]) => [peer, { badChunks: r.badChunks, falseClaims: r.falseClaims }]))
  }

  private record (peer: string): SourceRecord & { badUntil: number, denied: Map<string, number> } {
    let r = this.records.get(peer)
    if (r === undefined) {
      // Bounded: the oldest record goes first (a Map keeps insertion order).
      if (this.records.size >= MAX_SOURCE_RECORDS) this.records.delete(this.records.keys().next().value as string)
      this.records.set(peer, r = { badChunks: 0, falseClaims: 0, badUntil: 0, denied: new Map() })
    }
    return r
  }

  /** `peer` served a chunk that failed its hash: it is left out of pulls for a while. */
  servedBadChunk (peer: string): void {
    const r = this.record(peer)
    r.badChunks++
    r.badUntil = performance.now() + this.init.avoidBadSourceMs
  }

  /**
   * `peer` was named a holder of `key` (by the owner or by its own bitfield) and denied it: not asked
   * for it again for a while (an honest peer that dropped its copy may fetch it again later).
   */
  deniedHolding (peer: string, key: string): void {
    const r = this.record(peer)
    const now = performance.now()
    if ((r.denied.get(key) ?? 0) > now) return
    r.falseClaims++
    r.denied.delete(key)
    if (r.denied.size >= MAX_DENIED_PER_PEER) r.denied.delete(r.denied.keys().next().value as string)
    r.denied.set(key, now + this.init.avoidDeniedMs)
  }

  /** Whether a pull of `key` should leave `peer` out. The owner never is: its bytes are the object. */
  avoids (peer: string, key: string, owner: string): boolean {
    if (peer === owner) return false
    const r = this.records.get(peer)
    return r !== undefined && (r.badUntil > performance.now() || (r.denied.get(key) ?? 0) > performance.now())
  }

  /** Pulls an object into the local store; concurrent pulls of one object share the work. */
  pull (req: PullRequest): Promise<StoredObject> {
    let p = this.pulls.get(req.key)
    if (p === undefined) {
      const pull = new Pull(this, this.init, req)
      this.active.set(req.key, pull)
      p = pull.run().finally(() => { this.active.delete(req.key) })
      this.pulls.set(req.key, p)
      const cleanup = (): void => { this.pulls.delete(req.key) }
      p.then(cleanup, cleanup)
    }
    return p
  }

  private async serve (peer: string, stream: Stream): Promise<void> {
    const decoder = new FrameDecoder(MAX_REQUEST_FRAME)
    const { store, traffic, hooks } = this.init
    const watching: Watcher[] = []
    try {
      for await (const data of stream) {
        for (const f of decoder.push(data)) {
          const req = ChunkRequestCodec.decode(f.subarray())
          const key = objectKey(req.id)
          if (req.bitfield) {
            // Whoever asks what we hold of an object we are pulling is pulling it too.
            if (this.init.swarm) this.active.get(key)?.meet(peer)
            const obj = hooks?.withholdChunks?.(key) === true ? undefined : store.get(key)
            const out = this.bitfieldFrame(req.id, obj?.have)
            traffic.add(peer, 'chunkOut', out.byteLength)
            if (req.watch === true && obj !== undefined && !store.isComplete(obj) && !watching.some(w => w.key === key)) {
              const watcher: Watcher = { key, id: req.id, peer, stream }
              watching.push(watcher)
              let set = this.watchers.get(key)
              if (set === undefined) this.watchers.set(key, set = new Set())
              set.add(watcher)
            }
            if (!stream.send(out)) await stream.onDrain()
          }
          // Past its quota a peer's request is refused chunk by chunk (it may ask again later).
          const quotas = this.init.quotas
          const allowed = quotas === undefined || quotas.take(peer, 'chunks', req.indices.length)
          if (!allowed) {
            for (const index of req.indices) {
              const header = ChunkHeaderCodec.encode({ id: req.id, index, status: ChunkStatus.REFUSED })
              if (!stream.send(frame(encodeVarint(header.byteLength), header))) await stream.onDrain()
            }
            continue
          }
          try {
            for (const index of req.indices) {
              const withheld = hooks?.withholdChunks?.(key) === true
              let chunk = withheld
                ? undefined
                : await store.readChunk(key, index).catch((err: Error) => {
                  log.error('could not read chunk %d of %s: %s', index, key, err.message)
                  return undefined
                })
              // Held in part (still arriving): not this chunk yet, ask again later.
              const status = chunk !== undefined ? ChunkStatus.OK : store.has(key) && !withheld ? ChunkStatus.NOT_YET : ChunkStatus.NOT_FOUND
              const header = ChunkHeaderCodec.encode({ id: req.id, index, status })
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
          } finally {
            quotas?.give(peer, 'chunks', req.indices.length)
          }
        }
      }
      await stream.close().catch(() => {})
    } catch (err) {
      log.error('chunk stream from %s closed: %e', peer, err)
      stream.abort(err as Error)
    } finally {
      for (const w of watching) this.unwatch(w)
    }
  }

  private bitfieldFrame (id: Uint8Array, have: Uint8Array | undefined): Uint8ArrayList {
    const header = ChunkHeaderCodec.encode({ id, index: 0, status: have === undefined ? ChunkStatus.NOT_FOUND : ChunkStatus.BITFIELD })
    return have === undefined ? frame(encodeVarint(header.byteLength), header) : frame(encodeVarint(header.byteLength), header, have.slice())
  }

  private unwatch (w: Watcher): void {
    const set = this.watchers.get(w.key)
    set?.delete(w)
    if (set?.size === 0) this.watchers.delete(w.key)
  }

  /** @internal: a pull of `key` verified another chunk; its watchers hear of it. */
  chunkArrived (key: string): void {
    if (!this.watchers.has(key)) return
    this.changed.add(key)
    if (this.flushScheduled) return
    this.flushScheduled = true
    // Chunks that land in the same turn go out as one bitfield.
    setTimeout(() => { this.pushBitfields() }, 0)
  }

  private pushBitfields (): void {
    this.flushScheduled = false
    const keys = [...this.changed]
    this.changed.clear()
    for (const key of keys) {
      const obj = this.init.store.get(key)
      const set = this.watchers.get(key)
      if (set === undefined) continue
      const complete = obj === undefined || this.init.store.isComplete(obj)
      for (const w of set) {
        const out = this.bitfieldFrame(w.id, obj?.have)
        this.init.traffic.add(w.peer, 'chunkOut', out.byteLength)
        // A bitfield is a few bytes; it goes out even while the stream is backed up.
        try { w.stream.send(out) } catch (err) { log('bitfield to %s failed: %s', w.peer, (err as Error).message) }
      }
      if (complete) this.watchers.delete(key)
    }
  }

  private rate: number | undefined

  /** @internal: a finished pull of `bytes` that took `ms`; feeds the bandwidth estimate. */
  countBytes (bytes: number, limited: boolean): void {
    if (limited) this.stats.bytesRelayed += bytes
    else this.stats.bytesDirect += bytes
  }

  countDetour (bytes: number): void {
    this.stats.detours++
    this.stats.detourBytes += bytes
  }

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

interface Watcher {
  key: string
  id: Uint8Array
  peer: string
  stream: Stream
}

interface Source {
  peer: string
  stream?: Promise<Stream>
  inFlight: Set<number>
  dead: boolean
  /** the chunks it holds, as its last bitfield said; undefined until it has answered */
  have?: Uint8Array
  haveCount: number
  /** a bitfield request is on its way */
  asking: boolean
  /** it pushes its bitfield as it changes (we asked it to watch) */
  watched: boolean
  /** when its bitfield last arrived */
  bitfieldAt: number
  /** it was dropped because this peer reaches it only through a relay (or not at all) */
  relayedOnly?: boolean
  /** chunks come over a limited connection */
  limited?: boolean
  /** when a frame last came from it */
  heard: number
}

/**
 * One object's pull from several holders, BitTorrent style: every source's
 * bitfield is asked first and again while it is a partial holder; the rarest
 * missing chunks go first, each to the least loaded source that has it, with at
 * most `chunksInFlightPerSource` per source; near the end the last chunks are
 * asked of a second source too (endgame). A source that dies or stalls costs
 * only its chunks in flight.
 */
class Pull {
  private readonly transfer: Transfer
  private readonly init: TransferInit
  private readonly req: PullRequest
  private readonly sources: Source[] = []
  private readonly count: number
  private readonly attempts = new Map<number, number>()
  private readonly badFrom = new Map<number, Set<string>>()
  /** sources each chunk in flight was asked of */
  private readonly requested = new Map<number, Set<Source>>()
  private obj!: StoredObject
  private finish!: (err?: Error) => void
  private timer: ReturnType<typeof setInterval> | undefined
  private lastProgress = performance.now()
  private lastReport = 0
  private relocating = false
  private lastRelocate = performance.now()
  private detoured = false

  constructor (transfer: Transfer, init: TransferInit, req: PullRequest) {
    this.transfer = transfer
    this.init = init
    this.req = req
    this.count = chunkCount(req.manifest.size, req.manifest.chunkSize)
    this.addSources(req.sources)
  }

  /** A peer that pulls this object too: a source from now on. */
  meet (peer: string): void {
    if (this.sources.some(s => s.peer === peer && !s.dead)) return
    this.addSources([peer])
    if (this.finish !== undefined) this.askBitfield(this.sources[this.sources.length - 1])
  }

  private addSources (peers: string[]): void {
    for (const peer of new Set(peers)) {
      if (this.sources.some(s => s.peer === peer && !s.dead)) continue
      if (this.transfer.avoids(peer, this.req.key, this.req.owner)) continue
      this.sources.push({ peer, inFlight: new Set(), dead: false, haveCount: 0, asking: false, watched: false, bitfieldAt: 0, heard: performance.now() })
    }
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
    if (this.obj.haveCount === this.count) return this.obj
    log('pull %s: %d chunks from %s', key, this.count - this.obj.haveCount, this.req.sources.join(','))

    const done = new Promise<void>((resolve, reject) => {
      this.finish = (err?: Error) => { if (err === undefined) resolve(); else reject(err) }
    })
    const onAbort = (): void => this.finish(abortReason(signal as AbortSignal, `pull of ${key}`))
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted === true) onAbort()
    try {
      const started = performance.now()
      for (const s of this.sources) this.askBitfield(s)
      this.timer = setInterval(() => { this.tick() }, this.init.bitfieldRefreshMs)
      await done
      this.transfer.countPulled(manifest.size, performance.now() - started)
      this.report(true)
      return this.obj
    } catch (err) {
      // A partial copy is useless to others if we give up; drop it.
      if (!store.isComplete(this.obj)) store.delete(key)
      throw err
    } finally {
      clearInterval(this.timer)
      signal?.removeEventListener('abort', onAbort)
      for (const s of this.sources) void s.stream?.then(st => { void st.close().catch(() => {}) }, () => {})
    }
  }

  /** Every refresh: partial sources' bitfields again, stalled sources dropped, the owner told our progress. */
  private tick (): void {
    const now = performance.now()
    // The last live source is given longer: behind a slow, shared uplink TCP's retransmission
    // backoff can leave a flow silent for over 10 s, and dropping it would fail a pull that is
    // only slow (seen at 20 Mbit/s with eight receivers). A hung peer is still dropped, later.
    const lastSource = this.sources.filter(s => !s.dead).length === 1
    const stallMs = lastSource ? this.init.stallMs * LAST_SOURCE_STALL_FACTOR : this.init.stallMs
    for (const s of this.sources) {
      if (s.dead) continue
      if (s.inFlight.size > 0 && now - s.heard > stallMs) {
        this.dropSource(s, new ObjectLostError(`${s.peer} stalled: nothing for ${Math.round(now - s.heard)} ms`))
        continue
      }
      if (s.haveCount < this.count && (!s.watched || now - s.bitfieldAt > this.init.watchedBitfieldRefreshMs)) this.askBitfield(s)
    }
    this.report(false)
    // The owner's list of holders again, now and then (receivers that started after us
    // become sources), and at once when the sources we know cannot help.
    const stuck = now - this.lastProgress > this.init.stallMs && this.requested.size === 0
    if (this.req.relocate !== undefined && !this.relocating && (stuck || now - this.lastRelocate > this.init.relocateEveryMs)) {
      this.relocating = true
      this.lastRelocate = now
      this.req.relocate().then(peers => {
        this.addSources(peers)
        for (const s of this.sources) if (s.have === undefined) this.askBitfield(s)
        if (stuck) this.lastProgress = performance.now()
      }, (err: Error) => { log('relocating %s failed: %s', this.req.key, err.message) }).finally(() => { this.relocating = false })
    }
    this.pump()
  }

  private report (complete: boolean): void {
    const now = performance.now()
    if (this.req.onProgress === undefined || (!complete && now - this.lastReport < this.init.progressEveryMs)) return
    this.lastReport = now
    this.req.onProgress(this.obj.have, complete)
  }

  private askBitfield (source: Source): void {
    if (source.asking || source.dead) return
    source.asking = true
    const watch = !source.watched
    source.watched = true
    void this.send(source, [], true, watch)
  }

  /** Chunks each live source with a known bitfield holds, among those still missing and not asked for. */
  private pump (): void {
    const live = this.sources.filter(s => !s.dead)
    if (live.length === 0 && this.detourAround()) return
    if (live.length === 0) {
      this.finish(new ObjectLostError(`no holder of ${this.req.key} is left (tried ${this.sources.map(s => s.peer).join(', ')})`))
      return
    }
    const open: number[] = []
    for (let i = 0; i < this.count; i++) if (this.obj.have[i] !== 1 && !this.requested.has(i)) open.push(i)
    // While partial holders are among the sources, complete ones (seeds) are held in
    // reserve: asked only for chunks no partial holder has, so receivers feed each other
    // and a seed's uplink carries each chunk about once.
    const partials = live.filter(s => s.have !== undefined && s.haveCount < this.count)
    const reserve = (s: Source): boolean => partials.length > 0 && s.haveCount === this.count
    // Rarity: how many partial holders, not caught serving it bad, have each chunk.
    const rarity = new Map<number, number>()
    for (const i of open) {
      const bad = this.badFrom.get(i)
      let n = 0
      for (const s of partials) if (s.have?.[i] === 1 && bad?.has(s.peer) !== true) n++
      rarity.set(i, n)
    }
    // Rarest first; equally rare in a random order, so receivers start on different chunks.
    const order = open.map(i => ({ i, r: rarity.get(i) as number, k: Math.random() })).sort((a, b) => a.r - b.r || a.k - b.k).map(x => x.i)
    const batches = new Map<Source, number[]>()
    const cap = this.init.chunksInFlightPerSource
    for (const index of order) {
      const bad = this.badFrom.get(index)
      const holders = live.filter(s => s.have?.[index] === 1)
      // A holder that served this chunk bad is asked again only when no other has it (busy or not).
      const good = holders.filter(s => bad?.has(s.peer) !== true)
      const free = (good.length > 0 ? good : holders).filter(s => s.inFlight.size + (batches.get(s)?.length ?? 0) < cap)
      // A seed serves only what no good partial holder has.
      const pool = free.filter(s => !reserve(s) || (rarity.get(index) ?? 0) === 0)
      if (pool.length === 0) continue
      const source = pool.reduce((a, b) => (b.inFlight.size + (batches.get(b)?.length ?? 0) < a.inFlight.size + (batches.get(a)?.length ?? 0) ? b : a))
      let batch = batches.get(source)
      if (batch === undefined) batches.set(source, batch = [])
      batch.push(index)
      this.requested.set(index, new Set([source]))
      source.inFlight.add(index)
    }
    if (open.length === 0 && this.requested.size > 0) this.endgame(live, batches)
    for (const [source, indices] of batches) void this.send(source, indices, false)
  }

  /**
   * Every holder left is one this peer reaches only through a relay: the object comes
   * through a peer that reaches both directly (once per pull). True while that is under way.
   */
  private detourAround (): boolean {
    if (this.detoured) return false
    // Holders dropped while only a relay led to them, or that have no direct connection
    // now (a WebRTC connection that broke under load, say).
    const direct = (peer: string): boolean => this.init.libp2p.getConnections(peerIdFromString(peer)).some(c => c.limits == null && c.status === 'open')
    const relayed = [...new Set(this.sources.filter(s => s.relayedOnly === true || !direct(s.peer)).map(s => s.peer))]
    if (relayed.length === 0 || this.init.detour === undefined) return false
    this.detoured = true
    log('pull %s: %s reached only through a relay; taking it through another peer', this.req.key, relayed.join(','))
    this.init.detour({ id: this.req.id, owner: this.req.owner }, relayed, this.req.signal).then(peers => {
      this.transfer.countDetour(this.req.manifest.size)
      this.addSources(peers)
      for (const s of this.sources) if (!s.dead && s.have === undefined) this.askBitfield(s)
      this.pump()
    }, (err: Error) => {
      this.finish(new ObjectLostError(`${this.req.key}: its holders (${relayed.join(', ')}) are reachable only through a relay, and no peer could take it around: ${err.message}`))
    })
    return true
  }

  /** The last chunks, asked of a second source as well; whichever answers first wins. */
  private endgame (live: Source[], batches: Map<Source, number[]>): void {
    for (const [index, asked] of this.requested) {
      if (asked.size > 1) continue
      const bad = this.badFrom.get(index)
      const other = live.find(s => !asked.has(s) && s.have?.[index] === 1 && bad?.has(s.peer) !== true && s.inFlight.size < this.init.chunksInFlightPerSource)
      if (other === undefined) continue
      asked.add(other)
      other.inFlight.add(index)
      let batch = batches.get(other)
      if (batch === undefined) batches.set(other, batch = [])
      batch.push(index)
    }
  }

  private async send (source: Source, indices: number[], bitfield: boolean, watch = false): Promise<void> {
    try {
      if (source.stream === undefined) {
        source.stream = this.openStream(source)
        const stream = await source.stream
        void this.readResponses(source, stream)
      }
      const stream = await source.stream
      stream.send(frame(ChunkRequestCodec.encode({ id: this.req.id, indices, bitfield, watch })))
    } catch (err) {
      this.dropSource(source, err as Error)
    }
  }

  /** A chunk stream on a direct connection; a holder reached only through a relay is refused. */
  private async openStream (source: Source): Promise<Stream> {
    const peer = peerIdFromString(source.peer)
    // Without a direct connection, the dial may come back relayed, fail, or outlast the
    // stall timeout (a WebRTC dial whose ICE cannot cross the NATs): whichever way the
    // source is dropped, another peer may still reach it.
    source.relayedOnly = !this.init.libp2p.getConnections(peer).some(c => c.limits == null && c.status === 'open')
    const conn = await this.init.libp2p.dial(peer, { signal: this.req.signal })
    if (conn.limits != null) {
      source.relayedOnly = true
      throw new RelayedOnlyError(`${source.peer} is reachable only through a relay (${conn.remoteAddr.toString()})`)
    }
    source.limited = false
    source.relayedOnly = false
    return await conn.newStream(CHUNK_PROTOCOL, { signal: this.req.signal })
  }

  private dropSource (source: Source, err: Error): void {
    if (source.dead) return
    log('source %s of %s dropped: %s', source.peer, this.req.key, err.message)
    source.dead = true
    for (const i of source.inFlight) this.unask(i, source)
    source.inFlight.clear()
    this.addSources([])
    this.pump()
  }

  /** `source` will not answer for chunk `index` (any more). */
  private unask (index: number, source: Source): void {
    source.inFlight.delete(index)
    const asked = this.requested.get(index)
    asked?.delete(source)
    if (asked?.size === 0) this.requested.delete(index)
  }

  private async readResponses (source: Source, stream: Stream): Promise<void> {
    const decoder = new FrameDecoder(Math.max(this.req.manifest.chunkSize, this.count) + MAX_HEADER)
    try {
      for await (const data of stream) {
        this.init.traffic.add(source.peer, 'chunkIn', data.byteLength)
        this.transfer.countBytes(data.byteLength, source.limited === true)
        source.heard = performance.now()
        for (const f of decoder.push(data)) {
          await this.onFrame(source, f)
          if (this.obj.haveCount === this.count) {
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

  private async onFrame (source: Source, f: Uint8ArrayList): Promise<void> {
    const head = decodeVarint(f)
    if (head === undefined || head[0] > MAX_HEADER) throw new MalformedFrameError('bad chunk frame header')
    const [headerLength, prefix] = head
    const header = ChunkHeaderCodec.decode(f.subarray(prefix, prefix + headerLength))
    const body = f.sublist(prefix + headerLength)
    if (header.status === ChunkStatus.BITFIELD) {
      if (body.byteLength !== this.count) throw new MalformedFrameError(`a bitfield of ${body.byteLength} bytes for ${this.count} chunks`)
      source.have = body.subarray()
      source.haveCount = source.have.reduce((n, b) => n + (b === 1 ? 1 : 0), 0)
      source.asking = false
      source.bitfieldAt = performance.now()
      this.pump()
      return
    }
    if (header.status === ChunkStatus.NOT_FOUND) {
      // It was named a holder (by the owner, or by its own bitfield) and holds nothing of
      // this object: an honest peer whose copy was dropped, or a liar; either way, not for a while.
      this.transfer.deniedHolding(source.peer, this.req.key)
      throw new ObjectLostError(`${source.peer} does not hold ${this.req.key}`)
    }
    const index = header.index
    if (!source.inFlight.has(index)) throw new MalformedFrameError(`unrequested chunk ${index} from ${source.peer}`)
    this.unask(index, source)
    if (header.status === ChunkStatus.NOT_YET || header.status === ChunkStatus.REFUSED) {
      // Its bitfield was stale (or it is busy with our requests): it will say again when it has the chunk.
      if (source.have !== undefined && source.have[index] === 1) {
        source.have[index] = 0
        source.haveCount--
      }
      this.pump()
      return
    }
    if (header.status !== ChunkStatus.OK) throw new ObjectLostError(`${source.peer} does not hold chunk ${index} of ${this.req.key}`)
    const [start, end] = chunkRange(this.req.manifest, index)
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
      if (this.obj.have[index] === 1) {
        // Its twin from the endgame got here while we hashed.
      } else if (sameHash(hash, this.req.manifest.hashes[index])) {
        if (this.obj.data === undefined) await this.init.store.writeChunk(this.obj, index, chunk)
        this.init.store.markChunk(this.obj, index)
        this.transfer.chunkArrived(this.req.key)
        this.transfer.stats.chunksFetched++
        this.lastProgress = performance.now()
        // A twin asked in the endgame still answers; its copy is counted and dropped.
        this.requested.delete(index)
        this.report(false)
      } else {
        this.transfer.stats.badChunks++
        this.transfer.servedBadChunk(source.peer)
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
        // A source caught serving bad bytes is dropped while another can serve; the owner is
        // kept as a last resort (a wrong chunk from it may be corruption on the way).
        if (source.peer !== this.req.owner && this.sources.some(s => !s.dead && s !== source)) {
          this.dropSource(source, new ChunkIntegrityError(`${source.peer} served chunk ${index} of ${this.req.key} with a wrong hash`))
          return
        }
      }
    } else {
      this.transfer.stats.duplicateChunks++
    }
    this.pump()
  }
}
