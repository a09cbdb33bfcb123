/**
 * Membership and failure detection: the peers this peer knows, what each
 * offers and how loaded it is, and whether it is alive.
 *
 * A peer is heard from through its gossiped state, its hellos (each heartbeat, or
 * every other one once its state has been still a while: gossip.ts), its
 * first hello on a new connection, and connection events. One that is not heard from
 * for `suspectAfterBeats` heartbeats is suspect; for `deadAfterBeats` while no
 * connection to it is open (or `deadWhileConnectedBeats` even with one, for a
 * peer that hangs without closing its connections) it is dead: it gets no new
 * calls and the mesh forgets what it borrowed or held. The view is bounded.
 *
 * That bound is for a peer that went silent (a partition, a stopped process).
 * The common failure is quicker to tell: a process that died had its
 * connections closed by its kernel, and nothing listens on its ports any more.
 * So when a peer's last connection closes, the mesh redials it
 * (core/redial.ts), and a refused redial is a verdict at once
 * (`declareDead(peer, 'refused')`); a redial that times out proves nothing and
 * leaves the peer to the heartbeat bound. `deaths` counts both causes.
 *
 * Silence is counted only while this peer listens: a tick that comes late
 * (its own event loop blocked, or the machine stalled under load) credits
 * every peer with the pause, as Cassandra's failure detector skips verdicts
 * after a local pause. Otherwise one stall of the observer would declare the
 * whole mesh dead at once, and the mesh would forget every copy they hold.
 */
import { BUILTIN_FUNCTIONS } from './constants.ts'

export interface PeerState {
  peer: string
  seq: number
  functions: string[]
  addrs: string[]
  /** calls it runs at once */
  slots: number
  queued: number
  running: number
  storeUsed: number
  storeCapacity: number
  spilledBytes: number
  /** bytes of arguments it can admit now */
  admitBytes: number
  /** its inbound transfer rate estimate, bytes per second */
  bandwidth: number
  /** functions that run in its slots */
  pooledFunctions: string[]
  /** 'node' or 'browser' */
  runtime: string
  /** its open connections to other peers, and over what ('tcp', 'ws', 'webrtc-direct', 'webrtc', 'relay') */
  links: PeerLink[]
  /** chunk bytes per second it received from each source over the last heartbeat (transfers in flight) */
  flows: ChunkFlow[]
  /** names it publishes (mesh.publish); lookups ask it */
  names: string[]
}

export interface PeerLink { peer: string, transport: string }
export interface ChunkFlow { from: string, bytesPerSecond: number }

export type Liveness = 'alive' | 'suspect' | 'dead'

/** How a death was told: its connections closed and a redial was refused, or it was silent past the heartbeat bound. */
export type DeathCause = 'refused' | 'silent'

export interface PeerRecord {
  peer: string
  functions: Set<string>
  addrs: string[]
  state?: PeerState
  lastHeard: number
  connected: boolean
  liveness: Liveness
}

export interface MembershipInit {
  heartbeatMs: number
  suspectAfterBeats: number
  deadAfterBeats: number
  deadWhileConnectedBeats: number
  maxPeers: number
  /** a tick later than this many heartbeats after the last one is a pause of this peer, not silence of the others */
  pauseAfterBeats?: number
}

export class Membership {
  private readonly init: MembershipInit
  private readonly peers = new Map<string, PeerRecord>()
  private readonly changeListeners = new Set<() => void>()
  private readonly deathListeners = new Set<(peer: string, cause: DeathCause) => void>()
  /** peers declared dead, by how */
  readonly deaths: Record<DeathCause, number> = { refused: 0, silent: 0 }
  /** ticks that came late enough to count as this peer's own pause */
  pauses = 0
  private lastTick: number | undefined
  /** peers declared dead and not heard from since, the oldest dropped first (bounded) */
  private readonly dead = new Set<string>()
  /** functions that peers in the view offered, kept after those peers die (bounded) */
  private readonly offeredBefore = new Set<string>()

  constructor (init: MembershipInit) {
    this.init = init
  }

  /** Something was heard from `peer`: a hello (functions, addrs) or its gossiped state. */
  heard (peer: string, update: { functions?: string[], addrs?: string[], state?: PeerState }, now = Date.now()): void {
    let rec = this.peers.get(peer)
    if (rec !== undefined && update.state !== undefined && rec.state !== undefined && update.state.seq <= rec.state.seq) return
    if (rec === undefined) {
      // A peer declared dead that speaks again comes back as a new peer.
      this.dead.delete(peer)
      rec = { peer, functions: new Set(), addrs: [], lastHeard: now, connected: false, liveness: 'alive' }
      this.peers.set(peer, rec)
      this.evictIfFull()
    }
    if (update.state !== undefined) rec.state = update.state
    const functions = update.functions ?? update.state?.functions
    if (functions !== undefined) {
      rec.functions = new Set(functions)
      for (const fn of functions) this.rememberOffered(fn)
    }
    const addrs = update.addrs ?? update.state?.addrs
    if (addrs !== undefined && addrs.length > 0) rec.addrs = addrs
    rec.lastHeard = now
    rec.liveness = 'alive'
    this.changed()
  }

  /**
   * Any traffic from `peer` (a reply, a request, a chunk): it lives. Cheaper
   * than heard() and never brings back a peer already declared dead, nor adds
   * one this peer does not know.
   */
  touch (peer: string, now = Date.now()): void {
    const rec = this.peers.get(peer)
    if (rec === undefined) return
    rec.lastHeard = now
    if (rec.liveness === 'suspect' && rec.connected) {
      rec.liveness = 'alive'
      this.changed()
    }
  }

  connected (peer: string): void {
    const rec = this.peers.get(peer)
    if (rec !== undefined) rec.connected = true
  }

  disconnected (peer: string): void {
    const rec = this.peers.get(peer)
    if (rec === undefined) return
    rec.connected = false
    if (rec.liveness === 'alive') {
      rec.liveness = 'suspect'
      this.changed()
    }
  }

  /** Advances the failure detector; call about once a heartbeat. */
  tick (now = Date.now()): void {
    const beat = this.init.heartbeatMs
    const sinceLastTick = this.lastTick === undefined ? 0 : now - this.lastTick
    this.lastTick = now
    if (sinceLastTick > (this.init.pauseAfterBeats ?? 3) * beat) {
      this.pauses++
      const paused = sinceLastTick - beat
      for (const rec of this.peers.values()) rec.lastHeard = Math.min(now, rec.lastHeard + paused)
    }
    let changed = false
    for (const rec of [...this.peers.values()]) {
      const silent = now - rec.lastHeard
      const deadAfter = (rec.connected ? this.init.deadWhileConnectedBeats : this.init.deadAfterBeats) * beat
      if (silent > deadAfter) {
        this.died(rec, 'silent')
        changed = true
      } else if (silent > this.init.suspectAfterBeats * beat && rec.liveness === 'alive') {
        rec.liveness = 'suspect'
        changed = true
      }
    }
    if (changed) this.changed()
  }

  /** A verdict from outside the heartbeats (a refused redial): `peer` is dead now. */
  declareDead (peer: string, cause: DeathCause): void {
    const rec = this.peers.get(peer)
    if (rec === undefined) return
    this.died(rec, cause)
    this.changed()
  }

  private died (rec: PeerRecord, cause: DeathCause): void {
    this.peers.delete(rec.peer)
    if (this.dead.size >= this.init.maxPeers) this.dead.delete(this.dead.values().next().value as string)
    this.dead.add(rec.peer)
    rec.liveness = 'dead'
    this.deaths[cause]++
    for (const l of this.deathListeners) l(rec.peer, cause)
  }

  /**
   * Waits for the verdict on a peer that is not alive now (its connection just
   * closed, or it is suspect): 'dead' once declared, 'alive' once heard from
   * again, or after `boundMs` without a verdict (let the caller try it).
   */
  async verdict (peer: string, boundMs: number, signal?: AbortSignal): Promise<'dead' | 'alive'> {
    const now = (): 'dead' | 'alive' | undefined => !this.peers.has(peer) ? 'dead' : this.isAlive(peer) ? 'alive' : undefined
    const known = now()
    if (known !== undefined) return known
    let unsubscribe = (): void => {}
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      return await new Promise<'dead' | 'alive'>((resolve, reject) => {
        unsubscribe = this.onChange(() => { const v = now(); if (v !== undefined) resolve(v) })
        timer = setTimeout(() => { resolve(now() ?? 'alive') }, boundMs)
        if (signal?.aborted === true) reject(signal.reason)
        signal?.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
      })
    } finally {
      unsubscribe()
      clearTimeout(timer)
    }
  }

  get (peer: string): PeerRecord | undefined {
    return this.peers.get(peer)
  }

  /**
   * Whether `peer` was declared dead and has not spoken since. A dead peer leaves
   * the view at once, so `get(peer)` cannot tell it from a peer never heard of.
   */
  isDead (peer: string): boolean {
    return this.dead.has(peer)
  }

  isAlive (peer: string): boolean {
    return this.peers.get(peer)?.liveness === 'alive'
  }

  has (peer: string): boolean {
    return this.peers.has(peer)
  }

  all (): PeerRecord[] {
    return [...this.peers.values()]
  }

  /**
   * Alive peers offering `fn`; when none is, the suspect ones still connected: a
   * busy machine delays gossip past the suspect mark, and a call (a lineage rebuild
   * right after a quick death verdict) had better go to a slow peer than fail.
   * So had a call required on a suspect peer (its connection may have dropped
   * while it was busy): it is dialled, and fails only once the peer is dead.
   */
  offering (fn: string, required?: string): PeerRecord[] {
    const builtin = BUILTIN_FUNCTIONS.has(fn)
    const offering = this.all().filter(p => p.liveness !== 'dead' && (builtin || p.functions.has(fn)))
    const alive = offering.filter(p => p.liveness === 'alive')
    // A call required on a peer busy past the suspect mark (a long CPU-bound call holds its gossip back) goes to it.
    if (required !== undefined && !alive.some(p => p.peer === required)) alive.push(...offering.filter(p => p.peer === required))
    return alive.length > 0 ? alive : offering.filter(p => p.connected)
  }

  /**
   * Whether some peer offered `fn` while in this view, even if none does now:
   * under churn every offerer of a function may be gone for a moment, and a
   * call of it waits for the next one (as Ray keeps a task pending until a node
   * with its resources joins) instead of failing like a call of a name nobody
   * ever offered.
   */
  wasOffered (fn: string): boolean {
    return this.offeredBefore.has(fn)
  }

  private rememberOffered (fn: string): void {
    if (this.offeredBefore.has(fn)) return
    // Bounded: the oldest names go first (a Set iterates in insertion order).
    if (this.offeredBefore.size >= this.init.maxPeers) this.offeredBefore.delete(this.offeredBefore.values().next().value as string)
    this.offeredBefore.add(fn)
  }

  onChange (listener: () => void): () => void {
    this.changeListeners.add(listener)
    return () => { this.changeListeners.delete(listener) }
  }

  onDeath (listener: (peer: string, cause: DeathCause) => void): () => void {
    this.deathListeners.add(listener)
    return () => { this.deathListeners.delete(listener) }
  }

  private changed (): void {
    for (const l of this.changeListeners) l()
  }

  private evictIfFull (): void {
    if (this.peers.size <= this.init.maxPeers) return
    let oldest: PeerRecord | undefined
    for (const rec of this.peers.values()) {
      if (rec.connected) continue
      if (oldest === undefined || rec.lastHeard < oldest.lastHeard) oldest = rec
    }
    if (oldest !== undefined) this.peers.delete(oldest.peer)
  }
}
