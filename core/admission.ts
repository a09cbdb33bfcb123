/**
 * Memory-aware admission of calls on an executor (DESIGN.md section 5): a call
 * starts only when the store has room, below its admission mark, for what
 * the calls already started will bring into memory plus its own: their
 * results (sizes learned per function) and the arguments they restore or
 * fetch. Without this, a burst of calls to a function that makes large
 * values would make them all before any could be stored. Until one call of a
 * function has finished, its calls start one at a time (the first one
 * measures); with nothing running, any call starts, so the executor always
 * makes progress. The wait is bounded (`maxWaitMs`): a started call may be
 * waiting on a nested call that waits here, and it must not wait for it
 * forever; calls past their bound start one per `maxWaitMs / 4`, so a queue
 * that waited long does not start all at once, and only while the store is not
 * already freeing memory (spill writes in flight): then room is on its way.
 *
 * A started call that blocks in `get` or `wait` lends its share back
 * (`Admitted.lend`, through core/executor.ts's call context) until it resumes,
 * as Ray releases a task's resources while it waits in `ray.get`: its nested
 * calls, of the same function or not, then never wait on their parent's
 * admission, and the bound above is for memory only, not for nested calls.
 */
import { logger } from '@libp2p/logger'
import { raceSignal } from './signals.ts'

const log = logger('refmesh:admission')

export interface AdmissionInit {
  /** bytes the store can still take below its admission mark */
  room: () => number
  /** the longest a call waits for room before it starts anyway */
  maxWaitMs: number
  /** whether memory is being freed now (room is on its way without forcing a start) */
  freeing: () => boolean
  /** false: every call starts at once, as if memory were unlimited (default true; for comparison) */
  enabled?: boolean
}

/** A started call's admission: `done` when its result is stored; `lend` while it blocks. */
export interface Admitted {
  /** call with the bytes its result took in the store (0 when it went inline), or with nothing when the call failed */
  (resultBytes?: number): void
  /** gives the call's share back while it waits on something; returns the function that takes it back (at once: the call is running) */
  lend: () => () => void
}

export class MemoryAdmission {
  private readonly init: AdmissionInit
  private readonly meanResult = new Map<string, number>()
  /** result bytes expected from started calls */
  private expected = 0
  private started = 0
  /** started calls per function whose result size is not known yet */
  private readonly measuring = new Map<string, number>()
  private waiters: Array<() => void> = []
  private lastForced = -Infinity

  constructor (init: AdmissionInit) {
    this.init = init
  }

  /**
   * Whether a call of `fn` that brings `argBytes` of arguments into memory may
   * start now; `full`: not before memory is freed (a caller may place it elsewhere).
   */
  check (fn: string, argBytes = 0): 'start' | 'wait' | 'full' {
    if (this.init.enabled === false) return 'start'
    // Nothing running and nothing being freed: start, or nothing ever will.
    if (this.started === 0 && !this.init.freeing()) return 'start'
    const mean = this.meanResult.get(fn)
    if (mean === undefined) return (this.measuring.get(fn) ?? 0) === 0 ? 'start' : 'wait'
    return this.expected + mean + argBytes <= this.init.room() ? 'start' : 'full'
  }

  /**
   * Waits until a call of `fn` may start, and counts it as started. Call the
   * returned function with the bytes its result took in the store (0 when it
   * went inline) once it is stored, or with nothing when the call failed.
   */
  async start (fn: string, argBytes: number, signal?: AbortSignal): Promise<Admitted> {
    const deadline = performance.now() + this.init.maxWaitMs
    const forceEvery = this.init.maxWaitMs / 4
    while (this.check(fn, argBytes) !== 'start') {
      const now = performance.now()
      if (now >= deadline && now - this.lastForced >= forceEvery && !this.init.freeing()) {
        log('a call of %s waited its bound: starting it (%d started)', fn, this.started)
        this.lastForced = now
        break
      }
      const left = Math.max(deadline - now, this.lastForced + forceEvery - now, 1)
      let wake!: () => void
      const woken = new Promise<void>(resolve => { wake = resolve })
      this.waiters.push(wake)
      const timer = setTimeout(wake, left)
      try {
        await raceSignal(woken, signal, `room in memory for a call of ${fn}`)
      } finally {
        clearTimeout(timer)
        this.waiters = this.waiters.filter(w => w !== wake)
      }
    }
    return this.admit(fn, argBytes)
  }

  /** start() when the call may start now, without a wait (and a turn of the promise queue); undefined otherwise. */
  startNow (fn: string, argBytes: number): Admitted | undefined {
    return this.check(fn, argBytes) === 'start' ? this.admit(fn, argBytes) : undefined
  }

  /** Counts a call of `fn` as started; see start(). */
  private admit (fn: string, argBytes: number): Admitted {
    const mean = this.meanResult.get(fn)
    // Arguments count until the call ends: they stay pinned while it runs.
    const expected = (mean ?? 0) + argBytes
    const take = (): void => {
      this.expected += expected
      this.started++
      if (mean === undefined) this.measuring.set(fn, (this.measuring.get(fn) ?? 0) + 1)
    }
    const give = (): void => {
      this.expected -= expected
      this.started--
      if (mean === undefined) {
        const n = (this.measuring.get(fn) ?? 1) - 1
        if (n <= 0) this.measuring.delete(fn)
        else this.measuring.set(fn, n)
      }
    }
    take()
    let done = false
    /** gets and waits in progress that lent the share: it is given back on the first, taken on the last */
    let lent = 0
    const admitted = (resultBytes?: number): void => {
      if (done) return
      done = true
      if (lent === 0) give()
      if (resultBytes === undefined) {
        this.recheck()
        return
      }
      const old = this.meanResult.get(fn)
      this.meanResult.set(fn, old === undefined ? resultBytes : old * 0.7 + resultBytes * 0.3)
      if (this.meanResult.size > 4096) this.meanResult.delete(this.meanResult.keys().next().value as string)
      this.recheck()
    }
    admitted.lend = () => {
      if (lent++ === 0 && !done) {
        give()
        this.recheck()
      }
      let back = false
      return () => {
        if (back) return
        back = true
        if (--lent === 0 && !done) take()
      }
    }
    return admitted
  }

  /** Memory was freed or a call finished: waiting calls look again. */
  recheck (): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }
}
