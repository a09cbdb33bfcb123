/**
 * Owner side of a broadcast: which holders feed a new receiver. Every holder,
 * complete or still receiving, feeds a few receivers at once, and a receiver
 * pulls from two parents, so a pipelined tree forms as demand arrives (Hoplite).
 * The tree's shape follows measured upload rates (BitTorrent's unchoking of the
 * fastest uploaders, in the owner's hands): a holder's fan-out is the default
 * scaled by its upload rate against the median holder's, and a receiver goes to
 * the holders that would give each child the most (rate / (children + 1)).
 * Only receivers that relay are scaled this way; complete holders keep the
 * default fan-out. Rates come from the gossiped flows: every peer says each heartbeat how many
 * chunk bytes per second it got from each source; a holder's upload rate is the
 * sum over the peers it feeds, and the owner keeps the peak, decaying, since an
 * idle holder is not a slow one.
 */
import type { ChunkFlow } from './membership.ts'

/** how fast a remembered peak upload rate fades (half-life), so a link that slowed is believed */
const PEAK_HALF_LIFE_MS = 30_000
/** a measured holder feeds between these multiples of the default fan-out */
const MIN_FANOUT_SCALE = 0.5
const MAX_FANOUT_SCALE = 2
/** a receiver that has parents gets one more only if it would serve it this much faster than its best one */
const EXTRA_PARENT_GAIN = 1.5

export interface TreeInit {
  /** receivers one holder of unmeasured or median upload rate feeds at once */
  fanout: number
  /** holders a new receiver is pointed at */
  parents: number
}

export class UploadRates {
  private readonly peaks = new Map<string, { rate: number, at: number }>()

  /** Folds in the latest flows every peer reported (its `flows` of the last heartbeat). */
  observe (reports: Iterable<ChunkFlow[] | undefined>, now = performance.now()): void {
    const sums = new Map<string, number>()
    for (const flows of reports) for (const f of flows ?? []) sums.set(f.from, (sums.get(f.from) ?? 0) + f.bytesPerSecond)
    for (const [peer, rate] of sums) {
      const known = this.rate(peer, now)
      if (known === undefined || rate >= known) this.peaks.set(peer, { rate, at: now })
    }
  }

  /** a peer's peak upload rate, faded by age; undefined if never seen uploading */
  rate (peer: string, now = performance.now()): number | undefined {
    const p = this.peaks.get(peer)
    return p === undefined ? undefined : p.rate * 0.5 ** ((now - p.at) / PEAK_HALF_LIFE_MS)
  }

  forget (peer: string): void {
    this.peaks.delete(peer)
  }
}

/**
 * The holders `receiver` should pull from. `holders` come complete ones first,
 * then partial ones, each group earliest first; `load` is how many receivers a
 * holder feeds now; `current` the parents it was given before (kept while they
 * hold). Returns the parents, which the caller records as the receiver's.
 */
export function chooseParents (holders: string[], load: (h: string) => number, current: string[] | undefined, rates: UploadRates, init: TreeInit, partial: (h: string) => boolean = () => true): string[] {
  // Only receivers that relay (partial holders) are compared and scaled: a complete holder (the
  // owner's copy) is the fastest measured uploader early on only because no receiver has anything
  // to upload yet, and scaling it up would put the whole broadcast back on its uplink.
  const known = holders.filter(partial).map(h => rates.rate(h)).filter((r): r is number => r !== undefined && r > 0).sort((a, b) => a - b)
  const median = known.length > 0 ? known[Math.floor(known.length / 2)] : undefined
  const rateOf = (h: string): number => rates.rate(h) ?? median ?? 1
  const fanoutOf = (h: string): number => {
    const r = rates.rate(h)
    if (r === undefined || median === undefined || !partial(h)) return init.fanout
    const scale = Math.min(MAX_FANOUT_SCALE, Math.max(MIN_FANOUT_SCALE, r / median))
    return Math.max(1, Math.round(init.fanout * scale))
  }
  // What one more child would get from each holder; the sort is stable, so equals keep the holders' order.
  const perChild = (h: string): number => (partial(h) ? rateOf(h) : median ?? 1) / (load(h) + 1)
  const withRoom = holders.filter(h => load(h) < fanoutOf(h)).sort((a, b) => perChild(b) - perChild(a))
  if (current !== undefined && current.length > 0) {
    // Keep its parents; add one holder with room that would serve it much faster than any of them.
    if (current.length >= 2 * init.parents || median === undefined) return current
    const best = Math.max(...current.map(h => rateOf(h) / Math.max(1, load(h))))
    const extra = withRoom.find(h => partial(h) && !current.includes(h) && perChild(h) >= EXTRA_PARENT_GAIN * best)
    return extra === undefined ? current : [...current, extra]
  }
  const chosen = withRoom.length > 0 ? withRoom : [...holders].sort((a, b) => load(a) - load(b))
  return chosen.slice(0, init.parents)
}
