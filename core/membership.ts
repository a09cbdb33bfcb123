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
}

export class Membership {
  private readonly init: MembershipInit
  private readonly peers = new Map<string, PeerRecord>()
  private readonly changeListeners = new Set<() => void>()
  private readonly deathListeners = new Set<(peer: string, cause: DeathCause) => void>()
  /** peers declared dead, by how */
  readonly deaths: Record<DeathCause, number> = { refused: 0, silent: 0 }

  constructor (init: MembershipInit) {
    this.init = init
  }

  /** Something was heard from `peer`: a hello (functions, addrs) or its gossiped state. */
  heard (peer: string, update: { functions?: string[], addrs?: string[], state?: PeerState }, now = Date.now()): void {
    let rec = this.peers.get(peer)
    if (rec !== undefined && update.state !== undefined && rec.state !== undefined && update.state.seq <= rec.state.seq) return
    if (rec === undefined) {
      rec = { peer, functions: new Set(), addrs: [], lastHeard: now, connected: false, liveness: 'alive' }
      this.peers.set(peer, rec)
      this.evictIfFull()
    }
    if (update.state !== undefined) rec.state = update.state
    const functions = update.functions ?? update.state?.functions
    if (functions !== undefined) rec.functions = new Set(functions)
    const addrs = update.addrs ?? update.state?.addrs
    if (addrs !== undefined && addrs.length > 0) rec.addrs = addrs
    rec.lastHeard = now
    rec.liveness = 'alive'
    this.changed()
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

  /** when tick() last ran, and whether it passed its verdicts over */
  private lastTick: number | undefined
  private deferredTick = false

  /** Advances the failure detector; call about once a heartbeat. */
  tick (now = Date.now()): void {
    const beat = this.init.heartbeatMs
    // Late by more than a beat, this peer's own event loop stalled (a long synchronous
    // call, a paused process): the hellos and states that came meanwhile are still
    // unread (timers run before I/O), so the others look silent for this peer's own
    // stall. The verdicts wait one beat, once: a loop that stays slow still gets them.
    const stalled = this.lastTick !== undefined && now - this.lastTick > 2 * beat && !this.deferredTick
    this.lastTick = now
    this.deferredTick = stalled
    if (stalled) return
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
