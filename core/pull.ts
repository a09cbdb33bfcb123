/**
 * The receiver's side of bulk transfer: one object's pull (the class Pull
 * below). transfer.ts is the service that starts pulls, serves chunks and keeps
 * the records of sources. Chunks are asked on CHUNK_PROTOCOL, of direct
 * connections only.
 */
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { FrameDecoder, decodeVarint, frame } from './protocol/framing.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, ChunkStatus } from './protocol/messages.ts'
import type { Manifest } from './protocol/messages.ts'
import { openStream } from './connect.ts'
import { chunkCount, chunkRange, sameHash } from './chunks.ts'
import type { Hasher } from './chunks.ts'
import { ChunkIntegrityError, MalformedFrameError, ObjectLostError, OutOfMemoryError } from './errors.ts'
import { abortReason } from './signals.ts'
import type { ObjectStore, StoredObject } from './store.ts'
import type { TrafficCounter } from './traffic.ts'

// one logger for both sides of a transfer
const log = logger('refmesh:transfer')

export const CHUNK_PROTOCOL = '/refmesh/chunk/1.0.0'
const MAX_HEADER = 1024
/** how many times `stallMs` the only live source of a pull may stay silent before it is dropped */
const LAST_SOURCE_STALL_FACTOR = 3
/** how long a dropped holder's direct redial may take before the object is taken around it */
const DIRECT_REDIAL_MS = 5_000
/**
 * Times a pull asks a holder again whose chunk stream failed while a direct connection to
 * it is open, before taking the object around it; the pause before each try grows by this
 * much. (A WebRTC connection replaced by the one the other side dialled, or a data channel
 * that did not open under load: both ends had a direct link, yet the whole object went
 * through a third peer, twice the bytes on its links.)
 */
const DIRECT_RETRIES = 2
const DIRECT_RETRY_PAUSE_MS = 200
/** a peer id in a SPREAD answer is at most this long (base58 of an identity or SHA-256 multihash) */
const MAX_PEER_ID_CHARS = 128
const textDecoder = new TextDecoder()
/**
 * the endgame (the chunks in flight asked of a second source too) starts when this few are
 * left: with 1 MiB chunks and three in flight per source it began with most of an object
 * still on its way, and behind 20 Mbit/s uplinks a quarter of what receivers relayed to each
 * other was second copies
 */
const ENDGAME_CHUNKS = 2

/** What one pull needs of the peer (a part of TransferInit). */
export interface PullInit {
  libp2p: Libp2p
  store: ObjectStore
  traffic: TrafficCounter
  chunksInFlightPerSource: number
  attemptsPerChunk: number
  sha256: Hasher
  /** the clock of a pull (stalls, progress, relocation, bitfields of holders that do not push them) */
  bitfieldRefreshMs: number
  /** how often a puller asks a holder that pushes its bitfield for it anyway */
  watchedBitfieldRefreshMs: number
  /** a source with chunks in flight that sends nothing this long is dropped */
  stallMs: number
  /** how often a puller reports its progress to the owner */
  progressEveryMs: number
  /** how often a puller asks the owner for the current holders */
  relocateEveryMs: number
  /** pulls take partial holders as sources too (and so take a seed's SPREAD answers) */
  swarm?: boolean
  /** how long a chunk a seed answered SPREAD for waits to reach us from the peer it names before the seed is asked again */
  spreadWaitMs?: number
  /**
   * Holders this peer reaches only through a relay: have a peer both reach directly
   * take a copy first (core/detour.ts), and resolve with it as a source. Chunks never
   * cross a limited (relayed) connection.
   */
  detour?: (object: { id: Uint8Array, owner: string }, holders: string[], signal?: AbortSignal) => Promise<string[]>
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

/** A holder reachable only over a relayed connection, which chunks never cross. */
export class RelayedOnlyError extends Error {
  override name = 'RelayedOnlyError'
}

/** What a pull needs of the transfer service (transfer.ts): its records of sources, and its counters. */
export interface PullHost {
  /** whether a pull of `key` should leave `peer` out */
  avoids: (peer: string, key: string, owner: string) => boolean
  deniedHolding: (peer: string, key: string) => void
  servedBadChunk: (peer: string) => void
  /** a chunk of `key` arrived: peers watching our bitfield of it are told */
  chunkArrived: (key: string) => void
  countBytes: (bytes: number, limited: boolean) => void
  countDetour: (bytes: number) => void
  /** a redial or punch to `peer` found no direct path: skip trying again for a while (askAgainDirect) */
  unpunchable: (peer: string, failedNow?: boolean) => boolean
  countPulled: (bytes: number, ms: number) => void
  readonly stats: { chunksFetched: number, badChunks: number, duplicateChunks: number }
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
  /** no chunk stream could be opened to it (the dial or the stream failed) */
  unreachable?: boolean
  /** when a frame last came from it */
  heard: number
  /** chunks it answered SPREAD for: not asked of it again until then, unless the peer it named is dropped */
  waits?: Map<number, { until: number, via: string }>
}

/**
 * One object's pull from several holders, BitTorrent style: every source's
 * bitfield is asked first and again while it is a partial holder; the rarest
 * missing chunks go first, each to the least loaded source that has it, with at
 * most `chunksInFlightPerSource` per source; near the end the last chunks are
 * asked of a second source too (endgame). A source that dies or stalls costs
 * only its chunks in flight.
 */
export class Pull {
  private readonly transfer: PullHost
  private readonly init: PullInit
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
  private detour: 'none' | 'running' | 'done' = 'none'
  private retriedDirect = false
  private directRetries = 0
  /** a direct dial of dropped holders is under way (askAgainDirect) */
  private redialling = false
  /**
   * the pull has its result (or its error): its streams still end after it (a holder that
   * dies then closes one), and a source dropped then must not start anything (a detour)
   */
  private ended = false

  constructor (transfer: PullHost, init: PullInit, req: PullRequest) {
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
      this.finish = (err?: Error) => {
        this.ended = true
        if (err === undefined) resolve(); else reject(err)
      }
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
    if (source.asking || source.dead || this.ended) return
    source.asking = true
    const watch = !source.watched
    source.watched = true
    void this.send(source, [], true, watch)
  }

  /** Chunks each live source with a known bitfield holds, among those still missing and not asked for. */
  private pump (): void {
    if (this.ended) return
    const live = this.sources.filter(s => !s.dead)
    // While a detour peer takes its copy, there is no source yet, and that is no loss.
    if (live.length === 0 && (this.detour === 'running' || this.redialling || this.askAgainDirect() || this.retryOpenDirect() || this.detourAround())) return
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
    const now = performance.now()
    for (const index of order) {
      const bad = this.badFrom.get(index)
      const holders = live.filter(s => s.have?.[index] === 1 && !this.waiting(s, index, now))
      // A holder that served this chunk bad is asked again only when no other has it (busy or not).
      const good = holders.filter(s => bad?.has(s.peer) !== true)
      const free = (good.length > 0 ? good : holders).filter(s => this.asked(s, batches) < cap)
      // A seed serves only what no good partial holder has.
      const pool = free.filter(s => !reserve(s) || (rarity.get(index) ?? 0) === 0)
      if (pool.length === 0) continue
      // The least asked of; among equals one at random. Taken in list order, the first sources
      // (the parents the owner named) got most asks from every receiver, and their queues made
      // the broadcast's tail (16 MiB to 8 receivers behind 20 Mbit/s uplinks: 8,806-9,181 ms
      // at random, 8,953-10,061 in list order, 6 interleaved runs each).
      const fewest = Math.min(...pool.map(s => this.asked(s, batches)))
      const least = pool.filter(s => this.asked(s, batches) === fewest)
      const source = least[Math.floor(Math.random() * least.length)]
      let batch = batches.get(source)
      if (batch === undefined) batches.set(source, batch = [])
      batch.push(index)
      this.requested.set(index, new Set([source]))
      source.inFlight.add(index)
    }
    if (open.length === 0 && this.requested.size > 0 && this.requested.size <= ENDGAME_CHUNKS) this.endgame(live, batches)
    for (const [source, indices] of batches) void this.send(source, indices, false)
  }

  /** chunks in flight from `source`, with those about to be asked of it */
  private asked (source: Source, batches: Map<Source, number[]>): number {
    return source.inFlight.size + (batches.get(source)?.length ?? 0)
  }

  /**
   * A seed sent chunk `index` elsewhere (SPREAD): it is not asked of that seed again while
   * the peer it went to is a live source here, for at most `spreadWaitMs` (the chunk is on its
   * way there: behind a slow uplink the seed's queue holds seconds of chunks). Once that peer
   * has it, rarity sends the ask there (or to another partial holder); a peer that is dropped,
   * or that does not get it to us in time, leaves it to the seed.
   */
  private waiting (source: Source, index: number, now: number): boolean {
    const wait = source.waits?.get(index)
    if (wait === undefined) return false
    if (now < wait.until && this.sources.some(s => s.peer === wait.via && !s.dead)) return true
    source.waits?.delete(index)
    return false
  }

  /** This peer has an open connection to `peer` that is not limited (not relayed). */
  private reachesDirectly (peer: string): boolean {
    return this.init.libp2p.getConnections(peerIdFromString(peer)).some(c => c.limits == null && c.status === 'open')
  }

  /**
   * Holders dropped while no direct connection led to them (or whose chunk stream failed to
   * open) are dialled once more before the object is taken around them (once per pull): a
   * direct connection may have come up meanwhile (a WebRTC dial that ICE completed late, one
   * the holder made), or a fresh dial may make one where the last one closed as the stream
   * opened (both ends dialling each other at once and each closing one). Those reached
   * directly are asked again. True while that is under way.
   */
  private askAgainDirect (): boolean {
    if (this.retriedDirect) return false
    const dropped = [...new Set(this.sources.filter(s => s.dead && (s.relayedOnly === true || s.unreachable === true)).map(s => s.peer))]
    if (dropped.length === 0) return false
    this.retriedDirect = true
    this.redialling = true
    const signal = this.req.signal === undefined ? AbortSignal.timeout(DIRECT_REDIAL_MS) : AbortSignal.any([this.req.signal, AbortSignal.timeout(DIRECT_REDIAL_MS)])
    const tried: string[] = []
    void Promise.all(dropped.map(async peer => {
      // A holder behind a NAT that maps ports at random is never reached directly: one
      // failed try a while is enough, each pull of its objects need not wait for it.
      if (this.reachesDirectly(peer) || this.transfer.unpunchable(peer)) return
      tried.push(peer)
      const id = peerIdFromString(peer)
      try {
        await this.init.libp2p.dial(id, { signal })
        if (this.reachesDirectly(peer)) return
        // A dial by id comes back relayed when a relayed connection is all there is: punch
        // through again over its WebRTC-via-relay addresses (as node/nat.ts's upgrader does).
        const punch = (await this.init.libp2p.peerStore.get(id, { signal })).addresses.map(a => a.multiaddr).filter(a => a.toString().includes('/p2p-circuit/webrtc')).map(a => a.toString().endsWith(`/p2p/${peer}`) ? a : a.encapsulate(`/p2p/${peer}`))
        if (punch.length > 0) await this.init.libp2p.dial(punch, { signal })
      } catch (err) {
        log('pull %s: no direct connection to %s again: %s', this.req.key, peer, (err as Error).message)
      }
    })).then(() => {
      this.redialling = false
      for (const peer of tried) if (!this.reachesDirectly(peer)) this.transfer.unpunchable(peer, true)
      if (this.ended) return
      const again = dropped.filter(peer => this.reachesDirectly(peer))
      if (again.length > 0) {
        log('pull %s: %s reachable directly now; asking again', this.req.key, again.join(','))
        this.addSources(again)
        for (const s of this.sources) if (!s.dead && s.have === undefined) this.askBitfield(s)
      }
      this.pump()
    })
    return true
  }

  /** Holders whose chunk stream failed though a direct connection to them is open now: asked again after a pause (DIRECT_RETRIES). */
  private retryOpenDirect (): boolean {
    if (this.directRetries >= DIRECT_RETRIES) return false
    const again = [...new Set(this.sources.filter(s => s.dead && (s.relayedOnly === true || s.unreachable === true) && this.reachesDirectly(s.peer)).map(s => s.peer))]
    if (again.length === 0) return false
    this.directRetries++
    this.redialling = true
    log('pull %s: %s failed over an open direct connection; asking again (%d of %d)', this.req.key, again.join(','), this.directRetries, DIRECT_RETRIES)
    setTimeout(() => {
      this.redialling = false
      if (this.ended) return
      this.addSources(again)
      for (const s of this.sources) if (!s.dead && s.have === undefined) this.askBitfield(s)
      this.pump()
    }, DIRECT_RETRY_PAUSE_MS * this.directRetries)
    return true
  }

  /**
   * Every holder left is one this peer reaches only through a relay: the object comes
   * through a peer that reaches both directly (once per pull). True while that is under way.
   */
  private detourAround (): boolean {
    if (this.detour !== 'none') return false
    // Holders dropped while only a relay led to them, or that have no direct connection
    // now (a WebRTC connection that broke under load, say).
    // Holders no chunk stream could be opened to count too (a direct connection that died
    // as it opened, as WebRTC's through a NAT that maps ports at random sometimes does).
    const relayed = [...new Set(this.sources.filter(s => s.relayedOnly === true || s.unreachable === true || !this.reachesDirectly(s.peer)).map(s => s.peer))]
    if (relayed.length === 0 || this.init.detour === undefined) return false
    this.detour = 'running'
    log('pull %s: %s reached only through a relay; taking it through another peer', this.req.key, relayed.join(','))
    this.init.detour({ id: this.req.id, owner: this.req.owner }, relayed, this.req.signal).then(peers => {
      this.detour = 'done'
      this.transfer.countDetour(this.req.manifest.size)
      this.addSources(peers)
      for (const s of this.sources) if (!s.dead && s.have === undefined) this.askBitfield(s)
      this.pump()
    }, (err: Error) => {
      this.detour = 'done'
      // Holders that died are no relay case: the object is lost here, as with any dead holder.
      this.finish(err instanceof ObjectLostError
        ? new ObjectLostError(`no holder of ${this.req.key} is left: ${err.message}`)
        : new ObjectLostError(`${this.req.key}: its holders (${relayed.join(', ')}) are reachable only through a relay, and no peer could take it around: ${err.message}`))
    })
    return true
  }

  /** The last chunks, asked of a second source as well; whichever answers first wins. */
  private endgame (live: Source[], batches: Map<Source, number[]>): void {
    for (const [index, asked] of this.requested) {
      if (asked.size > 1) continue
      const bad = this.badFrom.get(index)
      const now = performance.now()
      const other = live.find(s => !asked.has(s) && s.have?.[index] === 1 && bad?.has(s.peer) !== true && s.inFlight.size < this.init.chunksInFlightPerSource && !this.waiting(s, index, now))
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
        source.stream = this.openStream(source).catch((err: Error) => { source.unreachable = true; throw err })
        const stream = await source.stream
        void this.readResponses(source, stream)
      }
      const stream = await source.stream
      stream.send(frame(ChunkRequestCodec.encode({ id: this.req.id, indices, bitfield, watch, ...(this.init.swarm === true ? { spread: true } : {}) })))
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
    source.relayedOnly = !this.reachesDirectly(source.peer)
    return await openStream(this.init.libp2p, peer, CHUNK_PROTOCOL, {
      signal: this.req.signal,
      accept: conn => {
        if (conn.limits != null) {
          source.relayedOnly = true
          throw new RelayedOnlyError(`${source.peer} is reachable only through a relay (${conn.remoteAddr.toString()})`)
        }
        source.limited = false
        source.relayedOnly = false
      }
    })
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
    if (header.status === ChunkStatus.SPREAD) {
      // A seed sent it to another receiver: get it there (a source from now on), or ask the seed again later.
      if (this.init.swarm !== true) throw new MalformedFrameError(`SPREAD for chunk ${index} from ${source.peer}, though this pull did not ask with spread`)
      if (body.byteLength > MAX_PEER_ID_CHARS) throw new MalformedFrameError(`SPREAD for chunk ${index} names a peer id of ${body.byteLength} bytes`)
      const via = textDecoder.decode(body.subarray())
      // A peer it names that is neither the seed nor this peer, and a peer id at all.
      let valid = via !== source.peer && via !== this.init.libp2p.peerId.toString()
      try { peerIdFromString(via) } catch { valid = false }
      // Chunks do not cross relays: a peer this one reaches only through one (behind another
      // NAT) is no help, and taking it as a source could send the whole pull around it through
      // a detour. The seed is asked again instead (it sends a chunk asked twice).
      if (valid && this.reachesDirectly(via)) {
        source.waits ??= new Map()
        source.waits.set(index, { until: performance.now() + (this.init.spreadWaitMs ?? 0), via })
        this.meet(via)
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
