/**
 * The functions this peer offers, and running them. Only functions registered
 * here can run here: the wire names a function, it never carries code.
 *
 * Two kinds: `register(name, fn)` runs on the peer's own thread, as many at once
 * as are called (they interleave at their awaits); functions of a backend (a
 * worker pool: worker_threads on Node, Web Workers in a browser) run in its
 * slots, one call per slot, the rest waiting in order.
 */
import { FunctionNotFoundError } from './errors.ts'
import { raceSignal } from './signals.ts'

export type AnyFunction = (...args: any[]) => unknown

/** Runs functions outside the peer's thread. */
export interface ExecutorBackend {
  /** functions it offers */
  names(): string[]
  /** calls it runs at once */
  readonly size: number
  run(name: string, args: unknown[], options?: { signal?: AbortSignal }): Promise<unknown>
  close(): Promise<void>
}

export class Executor {
  private readonly functions = new Map<string, AnyFunction>()
  private backend: ExecutorBackend | undefined
  private backendNames = new Set<string>()
  private readonly waiting: Array<() => void> = []
  private slotsInUse = 0
  executed = 0
  running = 0
  /** calls of slot-bound functions admitted and not yet finished (waiting for arguments, a slot, or running) */
  admitted = 0

  register (name: string, fn: AnyFunction): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw new TypeError('a function name must be a non-empty string of at most 256 characters')
    if (typeof fn !== 'function') throw new TypeError(`register("${name}") needs a function`)
    this.functions.set(name, fn)
  }

  unregister (name: string): boolean {
    return this.functions.delete(name)
  }

  setBackend (backend: ExecutorBackend): void {
    this.backend = backend
    this.backendNames = new Set(backend.names())
  }

  offers (name: string): boolean {
    return this.functions.has(name) || this.backendNames.has(name)
  }

  names (): string[] {
    return [...new Set([...this.functions.keys(), ...this.backendNames])]
  }

  /** Calls that run at once: the backend's slots, or 1 for a peer that runs everything on its own thread. */
  get slots (): number {
    return this.backend?.size ?? 1
  }

  get queued (): number {
    return Math.max(0, this.admitted - this.running)
  }

  /** Whether calls of `name` run in the backend's slots (rather than on the peer's own thread). */
  usesSlots (name: string): boolean {
    return this.backendNames.has(name) && !this.functions.has(name)
  }

  /** Waits for a slot for `name` (none needed for functions on the peer's own thread); returns its release. */
  async acquire (name: string, signal?: AbortSignal): Promise<() => void> {
    if (!this.usesSlots(name)) return () => {}
    if (this.slotsInUse >= this.slots) {
      let ready!: () => void
      const turn = new Promise<void>(resolve => { ready = resolve })
      this.waiting.push(ready)
      try {
        await raceSignal(turn, signal, `waiting for a slot for ${name}`)
      } catch (err) {
        const i = this.waiting.indexOf(ready)
        if (i >= 0) this.waiting.splice(i, 1)
        else this.releaseSlot()
        throw err
      }
    } else {
      this.slotsInUse++
    }
    let released = false
    return () => {
      if (released) return
      released = true
      this.releaseSlot()
    }
  }

  private releaseSlot (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.slotsInUse--
  }

  /** Runs a call; for a backend function the caller must hold a slot from acquire(). */
  async run (name: string, args: unknown[], signal?: AbortSignal): Promise<unknown> {
    const fn = this.functions.get(name)
    if (fn === undefined && !this.backendNames.has(name)) throw new FunctionNotFoundError(name)
    this.running++
    try {
      return fn !== undefined ? await fn(...args) : await this.backend!.run(name, args, { signal })
    } finally {
      this.running--
      this.executed++
    }
  }

  async close (): Promise<void> {
    await this.backend?.close()
  }
}
