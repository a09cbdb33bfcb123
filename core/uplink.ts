/**
 * This peer's upload rate, measured from the chunks it serves: the bytes of each busy
 * period (chunks handed out less than GAP_MS apart, cut every WINDOW_MS) over its span.
 * The peak is kept, fading (as tree.ts's holders' rates), since an idle uplink is not a
 * slow one. Chunk sizes follow it (chunks.ts chunkSizeFor).
 */
import { logger } from '@libp2p/logger'

const log = logger('refmesh:uplink')

/** a pause this long between chunks ends a busy period */
const GAP_MS = 500
/** a busy period is measured at least this often */
const WINDOW_MS = 2_000
/** shorter or smaller periods measure latency and kernel buffers, not the link (1.25 MiB in 224 ms read 5.7 MiB/s over a 20 Mbit/s uplink) */
const MIN_SPAN_MS = 500
const MIN_BYTES = 1024 * 1024
/** how fast the remembered peak fades (half-life) */
const PEAK_HALF_LIFE_MS = 60_000

export class UplinkMeter {
  private first = -Infinity
  private last = -Infinity
  private bytes = 0
  private peak?: { rate: number, at: number }

  /** `bytes` of chunks handed to streams now. */
  add (bytes: number, now = performance.now()): void {
    if (now - this.last > GAP_MS || now - this.first > WINDOW_MS) {
      this.fold()
      this.first = now
      this.bytes = 0
    }
    this.bytes += bytes
    this.last = now
  }

  /** Bytes per second this peer's uplink carried at its peak, faded by age; undefined before it has served a measurable period. */
  rate (now = performance.now()): number | undefined {
    this.fold()
    const p = this.peak
    return p === undefined ? undefined : p.rate * 0.5 ** ((now - p.at) / PEAK_HALF_LIFE_MS)
  }

  private fold (): void {
    const span = this.last - this.first
    if (this.bytes < MIN_BYTES || span < MIN_SPAN_MS) return
    const rate = this.bytes / (span / 1000)
    const known = this.peak === undefined ? undefined : this.peak.rate * 0.5 ** ((this.last - this.peak.at) / PEAK_HALF_LIFE_MS)
    if (known === undefined || rate >= known) {
      if (known === undefined || rate > known * 1.1) log('uplink measured at %d KiB/s (%d KiB in %d ms)', Math.round(rate / 1024), Math.round(this.bytes / 1024), Math.round(span))
      this.peak = { rate, at: this.last }
    }
  }
}
