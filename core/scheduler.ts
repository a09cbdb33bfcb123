/**
 * Placement: the caller picks the peer that runs each call, with no central
 * scheduler (DESIGN.md section 4). Among the live peers that offer the function
 * and can admit its arguments, it picks the earliest estimated start, Dask's
 * worker objective:
 *
 *   start(peer) = bytes of arguments the peer lacks / its bandwidth
 *               + (its queued and running calls + ours in flight there) / its slots * the function's mean duration
 *
 * Peer state comes from gossip (about a second old); this caller's own calls in
 * flight are counted exactly. Argument locations come from the Refs themselves
 * (owned objects: exact; borrowed: hints carried on the wire), so placing a call
 * costs no round trip.
 */
import { FunctionNotFoundError, PeerDiedError } from './errors.ts'
import { raceSignal } from './signals.ts'

export interface PlacementOptions {
  /** run only on this peer */
  peer?: string
  /** run on this peer if it offers the function and is alive; otherwise place as usual */
  prefer?: string
  /** ignore locality and spread calls evenly over the candidates (least loaded first) */
  spread?: boolean
}

export interface CandidateView {
  peer: string
  slots: number
  /** queued and running calls, as last gossiped */
  load: number
  /** argument bytes it can admit; Infinity if unknown */
  admitBytes: number
  /** bytes per second it can receive */
  bandwidth: number
  /** calls of this function one caller may have in flight there (its slots times the queue it keeps); Infinity: no limit */
  limit: number
}

export interface ArgInfo {
  size: number
  locations: string[]
}

export interface PlacementInput {
  fn: string
  candidates: CandidateView[]
  args: ArgInfo[]
  /** peers that failed or handed back this call */
  exclude: Set<string>
  options: PlacementOptions
}

const MAX_STAND_INS = 64

export interface SchedulerInit {
  /** assumed duration of a function not yet measured */
  defaultCallMs: number
}

export class Scheduler {
  private readonly init: SchedulerInit
  private readonly inFlight = new Map<string, number>()
  private readonly meanMs = new Map<string, number>()
  /** calls held back by flow control, woken one per finished call, oldest first */
  private readonly finishWaiters: Array<() => void> = []
  /** calls this caller placed on each peer (stats) */
  readonly placed = new Map<string, number>()
  /** for a preferred peer that is gone: the peer that took its first call since (see place) */
  private readonly standIns = new Map<string, string>()

  constructor (init: SchedulerInit) {
    this.init = init
  }

  /** Bytes of the arguments `peer` does not hold. */
  static missingBytes (peer: string, args: ArgInfo[]): number {
    let missing = 0
    for (const a of args) if (!a.locations.includes(peer)) missing += a.size
    return missing
  }

  /** Estimated milliseconds until the call could start on `c`. */
  estimateMs (fn: string, c: CandidateView, args: ArgInfo[]): number {
    const transferMs = Scheduler.missingBytes(c.peer, args) / Math.max(c.bandwidth, 1) * 1000
    const queue = c.load + (this.inFlight.get(c.peer) ?? 0)
    const queueMs = queue / Math.max(c.slots, 1) * (this.meanMs.get(fn) ?? this.init.defaultCallMs)
    return transferMs + queueMs
  }

  place (input: PlacementInput): string {
    const { fn, options } = input
    let candidates = input.candidates
    if (options.peer !== undefined) {
      candidates = candidates.filter(c => c.peer === options.peer)
      if (candidates.length === 0) throw new FunctionNotFoundError(fn, options.peer)
    }
    if (candidates.length === 0) throw new FunctionNotFoundError(fn)
    const live = candidates.filter(c => !input.exclude.has(c.peer))
    if (live.length === 0) throw new PeerDiedError(`every peer offering "${fn}" failed or handed back this call`)
    const withRoom = live.filter(c => this.hasRoom(c))
    const usable = withRoom.length > 0 ? withRoom : live
    // A preferred peer is tried first even when it looks full: it may hand the call back.
    if (options.prefer !== undefined && usable.some(c => c.peer === options.prefer)) return options.prefer
    // Calls preferring a peer that is gone are mostly lineage re-running what it made: a chain
    // (y = g(x), x = f()) re-placed call by call before x exists would land wherever estimates
    // say and move x between peers. One stand-in per gone peer, while it has room, keeps the
    // chain where its intermediate results are.
    const goneAway = options.prefer !== undefined && !candidates.some(c => c.peer === options.prefer)
    if (goneAway) {
      const standIn = this.standIns.get(options.prefer as string)
      if (standIn !== undefined && withRoom.some(c => c.peer === standIn)) return standIn
    }
    const chosen = this.placeByEstimate(fn, usable, input)
    if (goneAway) this.rememberStandIn(options.prefer as string, chosen)
    return chosen
  }

  private rememberStandIn (gone: string, peer: string): void {
    if (this.standIns.has(gone)) return
    // Deaths are few, but a long churn run should not grow this without bound.
    if (this.standIns.size >= MAX_STAND_INS) this.standIns.delete(this.standIns.keys().next().value as string)
    this.standIns.set(gone, peer)
  }

  private placeByEstimate (fn: string, usable: CandidateView[], input: PlacementInput): string {
    const { options } = input
    const admitting = usable.filter(c => Scheduler.missingBytes(c.peer, input.args) <= c.admitBytes)
    const pool = admitting.length > 0 ? admitting : usable
    // Start at a random candidate so equal estimates spread over peers.
    const offset = Math.floor(Math.random() * pool.length)
    let best = pool[offset]
    let bestMs = Infinity
    for (let i = 0; i < pool.length; i++) {
      const c = pool[(i + offset) % pool.length]
      const ms = options.spread === true
        ? (c.load + (this.inFlight.get(c.peer) ?? 0)) / Math.max(c.slots, 1)
        : this.estimateMs(fn, c, input.args)
      if (ms < bestMs) {
        bestMs = ms
        best = c
      }
    }
    return best.peer
  }

  /** Whether this caller may send `c` another call now (flow control for slot-bound functions). */
  hasRoom (c: CandidateView): boolean {
    return (this.inFlight.get(c.peer) ?? 0) < c.limit
  }

  /**
   * Resolves when one of this caller's calls finishes and it is this waiter's
   * turn (one waiter per finished call, so a burst of held calls costs O(n)).
   * `first`: a waiter that was woken but still found no room keeps its place.
   */
  async nextFinish (signal?: AbortSignal, first = false): Promise<void> {
    let wake!: () => void
    const finished = new Promise<void>(resolve => { wake = resolve })
    if (first) this.finishWaiters.unshift(wake)
    else this.finishWaiters.push(wake)
    try {
      await raceSignal(finished, signal, 'waiting for room on an executor')
    } catch (err) {
      const i = this.finishWaiters.indexOf(wake)
      if (i >= 0) this.finishWaiters.splice(i, 1)
      throw err
    }
  }

  started (peer: string): void {
    this.inFlight.set(peer, (this.inFlight.get(peer) ?? 0) + 1)
    this.placed.set(peer, (this.placed.get(peer) ?? 0) + 1)
  }

  finished (peer: string): void {
    const n = (this.inFlight.get(peer) ?? 1) - 1
    if (n <= 0) this.inFlight.delete(peer)
    else this.inFlight.set(peer, n)
    this.finishWaiters.shift()?.()
  }

  /** Records how long a call of `fn` took (an exponential moving average). */
  observe (fn: string, ms: number): void {
    const old = this.meanMs.get(fn)
    this.meanMs.set(fn, old === undefined ? ms : old * 0.8 + ms * 0.2)
    if (this.meanMs.size > 4096) this.meanMs.delete(this.meanMs.keys().next().value as string)
  }
}
