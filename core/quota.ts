/**
 * Quotas per remote peer: what one peer may have in flight here (calls, chunk
 * requests), how many bytes it may have this store keep for it (objects it
 * handed over with a durable put), and how fast it may send gossip. Past a
 * quota a request gets a typed refusal (QuotaExceededError, or a REFUSED chunk
 * frame); a peer that keeps being refused (`strikesBeforeHangUp` within
 * `strikeWindowMs`) is hung up on. Honest peers stay far below every limit:
 * callers hold calls back by flow control, pullers keep a few chunks in flight
 * per holder.
 */
import { logger } from '@libp2p/logger'

const log = logger('refmesh:quota')
const MAX_PEERS_COUNTED = 4096

export interface QuotaLimits {
  /** calls from one peer queued or running here */
  callsInFlight: number
  /** chunks one peer has asked of this peer and not yet received */
  chunksInFlight: number
  /** bytes of objects one peer handed to this peer to own (durable puts) and still held here */
  storedBytes: number
  /** gossip messages per second relayed by one peer */
  gossipPerSecond: number
  /** refusals within `strikeWindowMs` before the peer is hung up on */
  strikesBeforeHangUp: number
  strikeWindowMs: number
}

export type QuotaKind = 'calls' | 'chunks' | 'bytes'

export class PeerQuotas {
  private readonly limits: QuotaLimits
  private readonly onAbuse: (peer: string) => void
  private readonly inFlight = new Map<string, Record<QuotaKind, number>>()
  private readonly gossip = new Map<string, { second: number, count: number }>()
  private readonly strikes = new Map<string, number[]>()
  /** refusals so far, by kind (stats) */
  readonly refused = { calls: 0, chunks: 0, bytes: 0, gossip: 0, hangUps: 0 }
  /** refusals by peer (bounded: the oldest peer's count goes first) */
  readonly refusedByPeer = new Map<string, number>()

  constructor (limits: QuotaLimits, onAbuse: (peer: string) => void) {
    this.limits = limits
    this.onAbuse = onAbuse
  }

  /** Takes one unit of `kind` for `peer`; false (and a strike) when it is at its limit. */
  take (peer: string, kind: QuotaKind, n = 1): boolean {
    let used = this.inFlight.get(peer)
    if (used === undefined) this.inFlight.set(peer, used = { calls: 0, chunks: 0, bytes: 0 })
    const limit = this.limit(kind)
    if (used[kind] + n > limit) {
      this.refused[kind]++
      this.strike(peer, kind)
      return false
    }
    used[kind] += n
    return true
  }

  limit (kind: QuotaKind): number {
    return kind === 'calls' ? this.limits.callsInFlight : kind === 'chunks' ? this.limits.chunksInFlight : this.limits.storedBytes
  }

  give (peer: string, kind: QuotaKind, n = 1): void {
    const used = this.inFlight.get(peer)
    if (used === undefined) return
    used[kind] = Math.max(0, used[kind] - n)
    if (used.calls === 0 && used.chunks === 0 && used.bytes === 0) this.inFlight.delete(peer)
  }

  /** Counts a gossip message relayed by `peer`; false when it is over its rate. */
  gossipAllowed (peer: string, atLeast = 0): boolean {
    const second = Math.floor(performance.now() / 1000)
    let rate = this.gossip.get(peer)
    if (rate === undefined || rate.second !== second) this.gossip.set(peer, rate = { second, count: 0 })
    if (++rate.count <= Math.max(this.limits.gossipPerSecond, atLeast)) return true
    this.refused.gossip++
    this.strike(peer, 'gossip')
    return false
  }

  forget (peer: string): void {
    this.inFlight.delete(peer)
    this.gossip.delete(peer)
    this.strikes.delete(peer)
  }

  private strike (peer: string, kind: string): void {
    const count = this.refusedByPeer.get(peer)
    if (count === undefined && this.refusedByPeer.size >= MAX_PEERS_COUNTED) this.refusedByPeer.delete(this.refusedByPeer.keys().next().value as string)
    this.refusedByPeer.set(peer, (count ?? 0) + 1)
    const now = performance.now()
    const recent = (this.strikes.get(peer) ?? []).filter(t => now - t < this.limits.strikeWindowMs)
    recent.push(now)
    this.strikes.set(peer, recent)
    if (recent.length === 1) log('%s is over its %s quota', peer, kind)
    if (recent.length >= this.limits.strikesBeforeHangUp) {
      log.error('%s kept exceeding its quotas (%d refusals in %d ms): hanging up', peer, recent.length, this.limits.strikeWindowMs)
      this.refused.hangUps++
      this.strikes.delete(peer)
      this.onAbuse(peer)
    }
  }
}
