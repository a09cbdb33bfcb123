/**
 * Bulk transfer: objects move as raw chunks on their own protocol, pulled by
 * the receiver from every holder it knows at once (partial holders included:
 * a peer serves the chunks it has verified while it is still receiving the
 * rest) and verified against the owner's manifest. A chunk that fails its hash
 * is counted and fetched again, from another holder when there is one.
 *
 * This file is the service (serving chunks and bitfields, the records of
 * sources that misbehaved, stats); one pull, the receiver's side, is pull.ts.
 */
import { logger } from '@libp2p/logger'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { FrameDecoder, encodeVarint, frame } from './protocol/framing.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, ChunkStatus } from './protocol/messages.ts'
import { CHUNK_PROTOCOL, Pull } from './pull.ts'
import type { PullInit, PullRequest } from './pull.ts'
import type { StoredObject } from './store.ts'
import { objectKey } from './ref.ts'
import type { PeerQuotas } from './quota.ts'
import { DEFAULTS } from './constants.ts'
import { UplinkMeter } from './uplink.ts'

export { CHUNK_PROTOCOL, RelayedOnlyError } from './pull.ts'
export type { PullRequest } from './pull.ts'

const log = logger('refmesh:transfer')

/** Chunk requests are small; a frame larger than this is hostile. */
const MAX_REQUEST_FRAME = 64 * 1024
/** peers with a record of misbehaving kept, and objects each was caught denying */
const MAX_SOURCE_RECORDS = 4096
const MAX_DENIED_PER_PEER = 1024

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

/** The service's settings; a pull's own are PullInit (pull.ts). */
export interface TransferInit extends PullInit {
  /** assumed bandwidth until pulls have measured it, bytes per second */
  defaultBandwidth: number
  hooks?: TransferHooks
  /** how long a peer that served a chunk that failed its hash is left out of pulls (its owner's objects excepted) */
  avoidBadSourceMs: number
  /** how long a peer that denied holding an object it was named a holder of is left out of that object's pulls */
  avoidDeniedMs: number
  /** pull from partial holders too (false: complete holders only, for comparison) */
  swarm: boolean
  /** private meshes: resolves once the peer has proved the mesh secret */
  admit?: (peer: string) => Promise<void>
  /** per-peer limits on chunks asked and not yet sent */
  quotas?: PeerQuotas
}

export interface TransferStats {
  chunksServed: number
  chunksFetched: number
  badChunks: number
  objectsPulled: number
  /** chunks that arrived twice (asked of two sources near the end) */
  duplicateChunks: number
  /** chunk asks this peer, super-seeding, answered with where the chunk went instead (SPREAD) */
  chunksSpread: number
  /** chunk bytes received over direct connections, and over relayed (limited) ones (none: pulls refuse them) */
  bytesDirect: number
  bytesRelayed: number
  /** objects whose only holders were behind a relay, pulled through a peer reached directly instead; their bytes */
  detours: number
  detourBytes: number
}

/** how long a peer no redial or punch reached directly is not tried again by pulls */
const UNPUNCHABLE_MS = 60_000
/** objects whose super-seeding state a peer keeps (the most recently served) */
const MAX_SEEDED_OBJECTS = 256
/** keys of objects this peer pulled, remembered to leave their copies out of super-seeding */
const MAX_PULLED_KEYS = 4096
/** the longest a seed's turn to send a chunk lasts, waiting for it to leave (see flushed()) */
const SEED_TURN_MAX_MS = 1_000
/**
 * chunks a seed sends at once (see serve()): one at a time left its uplink a quarter idle on a
 * loaded machine (the next chunk's bytes were late to reach the socket); two keep it busy
 */
const SEED_SENDS_AT_ONCE = 2
/** SPREAD answers one seeded object gives per chunk (on average) before it serves every ask: bounds its memory */
const MAX_DEFERRED_PER_CHUNK = 64

/**
 * Super-seeding of one object this peer holds a copy of that it did not pull (its
 * maker's, or the owner's): a chunk it already sent to one receiver is not sent to
 * another at once; that one is told where it went (SPREAD) and gets it from there, as
 * in BitTorrent's super-seeding. So the seed's uplink, the one every broadcast from it
 * must cross, carries each chunk about once instead of the 1.4-1.7 copies receivers'
 * racing requests (each asks for what its own sources lack, blind to what is in flight
 * to the others) made it send.
 */
interface Seeding {
  /** per chunk: the peers this seed sent it to */
  sentTo: Array<Set<string> | undefined>
  /** per chunk: peers answered SPREAD for it; a second ask from one of them is served */
  deferred: Map<number, Set<string>>
  /** entries in `deferred`; past MAX_DEFERRED_PER_CHUNK per chunk on average, every ask is served */
  deferrals: number
}

/** A few chunks at a time: `busy` sends under way, `queue` the sends waiting for their turn, first come first. */
interface Turns {
  busy: number
  queue: Array<() => void>
}

/** A transfer's clocks and counts as the mesh runs them: the defaults, in one place (constants.ts). */
export function transferDefaults (): Pick<TransferInit, 'attemptsPerChunk' | 'defaultBandwidth' | 'bitfieldRefreshMs' | 'watchedBitfieldRefreshMs' | 'stallMs' | 'progressEveryMs' | 'relocateEveryMs' | 'spreadWaitMs'> {
  const { attemptsPerChunk, bitfieldRefreshMs, watchedBitfieldRefreshMs, stallMs, progressEveryMs, relocateEveryMs, spreadWaitMs } = DEFAULTS
  return { attemptsPerChunk, defaultBandwidth: DEFAULTS.bandwidthBytesPerSecond, bitfieldRefreshMs, watchedBitfieldRefreshMs, stallMs, progressEveryMs, relocateEveryMs, spreadWaitMs }
}

export class Transfer {
  private readonly init: TransferInit
  private readonly pulls = new Map<string, Promise<StoredObject>>()
  /** pulls under way, by object: a peer asking us for one is pulling it too, so it is a source */
  private readonly active = new Map<string, Pull>()
  /** chunks this peer serves, timed: its uplink's rate, which chunk sizes follow */
  private readonly uplink = new UplinkMeter()
  readonly stats: TransferStats = { chunksServed: 0, chunksFetched: 0, badChunks: 0, objectsPulled: 0, duplicateChunks: 0, chunksSpread: 0, bytesDirect: 0, bytesRelayed: 0, detours: 0, detourBytes: 0 }
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
  /** super-seeding state of objects this peer serves from a copy it did not pull */
  private readonly seeding = new Map<string, Seeding>()
  /** this peer's uplink as a seed: its chunks go out a few at a time (see serve()) */
  private readonly seedTurns: Turns = { busy: 0, queue: [] }
  /** objects this peer pulled (its copies of them are not seeds) */
  private readonly pulledHere = new Set<string>()

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

  /** Peers that denied holding `key` when named its holders, and are left out of its pulls now (at most `max`). */
  deniedOf (key: string, max = 16): string[] {
    const now = performance.now()
    const peers: string[] = []
    for (const [peer, r] of this.records) {
      if ((r.denied.get(key) ?? 0) > now) peers.push(peer)
      if (peers.length >= max) break
    }
    return peers
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
      if (this.pulledHere.size >= MAX_PULLED_KEYS) this.pulledHere.delete(this.pulledHere.values().next().value as string)
      this.pulledHere.add(req.key)
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
          let endTurn: (() => void) | undefined
          try {
            for (const index of req.indices) {
              const withheld = hooks?.withholdChunks?.(key) === true
              // Super-seeding: a chunk that went to another receiver is got there, while others never left.
              const seeding = withheld ? undefined : this.seedingOf(key)
              // A seed sends a chunk or two at a time (first asked, first served), so each arrives
              // whole at its receiver early and is relayed from there at once. Sent all at once
              // (16 chunks of 1 MiB to 8 receivers over a 20 Mbit/s uplink), each crawled in over
              // its own TCP flow, the first arrived after 1.5 s and most after 4-6 s, and the
              // receivers' uplinks stood idle until then. The turn is taken before SPREAD is
              // decided: a chunk sent while the ask waited is got from where it went.
              if (req.spread === true && seeding !== undefined) endTurn = await takeTurn(this.seedTurns)
              const elsewhere = req.spread === true && seeding !== undefined ? spreadTo(seeding, index, peer) : undefined
              if (elsewhere !== undefined) {
                const header = ChunkHeaderCodec.encode({ id: req.id, index, status: ChunkStatus.SPREAD })
                const out = frame(encodeVarint(header.byteLength), header, new TextEncoder().encode(elsewhere))
                traffic.add(peer, 'chunkOut', out.byteLength)
                this.stats.chunksSpread++
                if (!stream.send(out)) await stream.onDrain()
                endTurn?.()
                endTurn = undefined
                continue
              }
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
              if (chunk !== undefined) {
                this.stats.chunksServed++
                this.uplink.add(out.byteLength)
                if (seeding !== undefined) sent(seeding, index, peer)
              }
              if (!stream.send(out)) await stream.onDrain()
              if (endTurn !== undefined) {
                await flushed(stream)
                endTurn()
                endTurn = undefined
              }
            }
          } finally {
            endTurn?.()
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

  /** The super-seeding state of an object served from a complete copy this peer did not pull; undefined for any other. */
  private seedingOf (key: string): Seeding | undefined {
    if (!this.init.swarm || this.pulledHere.has(key)) return undefined
    let seeding = this.seeding.get(key)
    if (seeding !== undefined) {
      // Most recently served last: the oldest goes first when the map is full.
      this.seeding.delete(key)
      this.seeding.set(key, seeding)
      return seeding
    }
    const obj = this.init.store.get(key)
    if (obj === undefined || !this.init.store.isComplete(obj)) return undefined
    if (this.seeding.size >= MAX_SEEDED_OBJECTS) this.seeding.delete(this.seeding.keys().next().value as string)
    seeding = { sentTo: new Array(obj.have.length), deferred: new Map(), deferrals: 0 }
    this.seeding.set(key, seeding)
    return seeding
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

  /** @internal: chunk bytes a pull received, over a direct or a limited (relayed) connection. */
  countBytes (bytes: number, limited: boolean): void {
    if (limited) this.stats.bytesRelayed += bytes
    else this.stats.bytesDirect += bytes
  }

  /** until when each peer counts as unreachable directly (a redial and punch found no path) */
  private readonly unpunchableUntil = new Map<string, number>()

  unpunchable (peer: string, failedNow = false): boolean {
    const now = performance.now()
    if (failedNow) {
      // Bounded like the other per-peer records: the oldest entry goes first.
      if (this.unpunchableUntil.size >= 1024) this.unpunchableUntil.delete(this.unpunchableUntil.keys().next().value as string)
      this.unpunchableUntil.set(peer, now + UNPUNCHABLE_MS)
      return true
    }
    return (this.unpunchableUntil.get(peer) ?? 0) > now
  }

  /** @internal: a pull went around a relay (core/detour.ts). */
  countDetour (bytes: number): void {
    this.stats.detours++
    this.stats.detourBytes += bytes
  }

  /** @internal: a finished pull of `bytes` that took `ms`; feeds the bandwidth estimate. */
  countPulled (bytes: number, ms: number): void {
    this.stats.objectsPulled++
    // Small pulls measure latency, not bandwidth.
    if (bytes < 4 * 1024 * 1024 || ms <= 0) return
    const sample = bytes / (ms / 1000)
    this.rate = this.rate === undefined ? sample : this.rate * 0.7 + sample * 0.3
  }

  /** This peer's measured upload rate in bytes per second (its peak, fading); undefined until measured. */
  uplinkRate (): number | undefined {
    return this.uplink.rate()
  }

  /** Inbound transfer rate estimate in bytes per second (a default until measured). */
  bandwidth (): number {
    return this.rate ?? this.init.defaultBandwidth
  }
}

/**
 * Whether a super-seed answers `peer`'s ask for chunk `index` with SPREAD, and naming
 * whom: only for a chunk another receiver got, and once per peer and chunk (asked
 * again, after the puller's wait, the chunk has not reached it from there: it is sent).
 * Also in a broadcast's last seconds, when every chunk has left: a second copy from the
 * seed then did not shorten the broadcast (its uplink had 1.2-1.4 copies to carry instead).
 */
function spreadTo (seeding: Seeding, index: number, peer: string): string | undefined {
  const to = seeding.sentTo[index]
  if (to === undefined || to.has(peer) || seeding.deferrals >= MAX_DEFERRED_PER_CHUNK * seeding.sentTo.length) return undefined
  let deferred = seeding.deferred.get(index)
  if (deferred?.has(peer) === true) return undefined
  if (deferred === undefined) seeding.deferred.set(index, deferred = new Set())
  deferred.add(peer)
  seeding.deferrals++
  // The most recent receiver of it: the one likeliest still to be pulling.
  return [...to].at(-1)
}

/** Waits for a turn to send a chunk; returns the call that ends it (passing it on). */
async function takeTurn (turns: Turns): Promise<() => void> {
  if (turns.busy >= SEED_SENDS_AT_ONCE) await new Promise<void>(resolve => { turns.queue.push(resolve) })
  else turns.busy++
  let ended = false
  return () => {
    if (ended) return
    ended = true
    const next = turns.queue.shift()
    if (next !== undefined) next()
    else turns.busy--
  }
}

/**
 * Resolves once what was sent on `stream` has left its buffers for the connection (and the
 * connection's own are not backed up), or after SEED_TURN_MAX_MS: a receiver that reads
 * slowly holds a seed's turn no longer than that. Waits on the stream's events: its
 * onDrain() stays resolved after the first drain.
 */
async function flushed (stream: Stream): Promise<void> {
  const deadline = performance.now() + SEED_TURN_MAX_MS
  while (needsDrain(stream) || stream.writeBufferLength > 0) {
    const left = deadline - performance.now()
    if (left <= 0 || stream.status !== 'open') return
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        for (const e of ['drain', 'idle', 'close'] as const) stream.removeEventListener(e, done)
        resolve()
      }
      const timer = setTimeout(done, left)
      for (const e of ['drain', 'idle', 'close'] as const) stream.addEventListener(e, done)
    })
    // after a drain the stream sends what it queued in a microtask
    await Promise.resolve()
  }
}

function needsDrain (stream: Stream): boolean {
  return (stream as unknown as { writableNeedsDrain?: boolean }).writableNeedsDrain === true
}

function sent (seeding: Seeding, index: number, peer: string): void {
  let to = seeding.sentTo[index]
  if (to === undefined) seeding.sentTo[index] = to = new Set()
  to.delete(peer)
  to.add(peer)
}

interface Watcher {
  key: string
  id: Uint8Array
  peer: string
  stream: Stream
}
