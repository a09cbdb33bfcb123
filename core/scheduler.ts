/**
 * Placement: the caller picks the peer that runs each call. For now the rule
 * is locality first (the candidate already holding the most argument bytes),
 * then the fewest calls this caller has in flight there. The gossip-based
 * scheduler (DESIGN.md section 4) refines the estimate with queue lengths and
 * link bandwidth.
 */
import { FunctionNotFoundError, PeerDiedError } from './errors.ts'

export interface PlacementOptions {
  /** run only on this peer */
  peer?: string
}

export interface PlacementInput {
  fn: string
  candidates: string[]
  /** argument bytes each peer already holds */
  localBytes: Map<string, number>
  /** peers that failed this call before */
  exclude: Set<string>
  options: PlacementOptions
}

export class Scheduler {
  private readonly inFlight = new Map<string, number>()

  place (input: PlacementInput): string {
    let candidates = input.candidates
    if (input.options.peer !== undefined) {
      if (!candidates.includes(input.options.peer)) {
        throw new FunctionNotFoundError(input.fn, input.options.peer)
      }
      candidates = [input.options.peer]
    }
    if (candidates.length === 0) throw new FunctionNotFoundError(input.fn)
    const usable = candidates.filter(p => !input.exclude.has(p))
    if (usable.length === 0) throw new PeerDiedError(`every peer offering "${input.fn}" failed this call`)
    let best = usable[0]
    let bestScore = -Infinity
    const offset = Math.floor(Math.random() * usable.length)
    for (let i = 0; i < usable.length; i++) {
      const peer = usable[(i + offset) % usable.length]
      // Argument bytes dominate; in-flight calls break ties.
      const score = (input.localBytes.get(peer) ?? 0) - (this.inFlight.get(peer) ?? 0)
      if (score > bestScore) {
        bestScore = score
        best = peer
      }
    }
    return best
  }

  started (peer: string): void {
    this.inFlight.set(peer, (this.inFlight.get(peer) ?? 0) + 1)
  }

  finished (peer: string): void {
    const n = (this.inFlight.get(peer) ?? 1) - 1
    if (n <= 0) this.inFlight.delete(peer)
    else this.inFlight.set(peer, n)
  }
}
