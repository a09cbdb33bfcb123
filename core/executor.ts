/**
 * The functions this peer offers, and running them. Only functions registered
 * here can run here: the wire names a function, it never carries code.
 *
 * Two kinds: `register(name, fn)` runs on the peer's own thread, as many at once
 * as are called (they interleave at their awaits); functions of a backend (a
 * worker pool: worker_threads on Node, Web Workers in a browser) run in its
 * slots, one call per slot, the rest waiting in order.
 *
 * A running call that blocks in `mesh.get` or `mesh.wait` lends its share of the
 * peer (its admission, core/admission.ts) until it resumes (`blocked`), so the
 * nested calls it waits on never wait on it. That needs to know which running
 * call a `get` belongs to, across the call's awaits. JavaScript has no portable
 * way yet (AsyncContext is a proposal; AsyncLocalStorage is Node's), so the
 * runtime supplies a `CallContext`: node/ gives one on AsyncLocalStorage, exact
 * across awaits; without one (a browser tab) `SyncCallContext` knows the call
 * only in its synchronous part, which covers a function's first `get` or `wait`
 * (the `await mesh.get(...)` a recursive function makes) but not one after an
 * earlier await, which then keeps the share, as before, bounded by the admission
 * wait. The mesh handle a function closes over could not tell: one mesh serves
 * many calls at once. Functions in worker slots have no mesh and cannot block on
 * one; functions on the peer's thread hold no slot; so only admission is lent.
 */
import { FunctionNotFoundError } from './errors.ts'
import { Semaphore } from './semaphore.ts'
import { BUILTIN_FUNCTIONS } from './constants.ts'

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

/** What a running call lends while it blocks: `lend()` gives it back, and returns the function that takes it again. */
export interface CallShare {
  lend: () => () => void
}

/** Which running call the code running now belongs to (see the header). */
export interface CallContext {
  run: <T>(share: CallShare, fn: () => T) => T
  current: () => CallShare | undefined
}

/** Knows the running call only during its synchronous part: portable, and exact for a function's first await. */
export class SyncCallContext implements CallContext {
  private active: CallShare | undefined

  run <T>(share: CallShare, fn: () => T): T {
    const outer = this.active
    this.active = share
    try {
      return fn()
    } finally {
      this.active = outer
    }
  }

  current (): CallShare | undefined {
    return this.active
  }
}

export class Executor {
  private readonly context: CallContext

  constructor (context: CallContext = new SyncCallContext()) {
    this.context = context
  }

  /** Runs `waiting` (a get or a wait); the running call it belongs to, if any, lends its share meanwhile. */
  blocked <T>(waiting: () => Promise<T>): Promise<T> {
    const share = this.context.current()
    // Outside a call (a driver's get): no wrapper, no extra promise on every get.
    if (share === undefined) return waiting()
    return this.lending(share, waiting)
  }

  private async lending <T>(share: CallShare, waiting: () => Promise<T>): Promise<T> {
    const takeBack = share.lend()
    try {
      return await waiting()
    } finally {
      takeBack()
    }
  }

  private readonly functions = new Map<string, AnyFunction>()
  private backend: ExecutorBackend | undefined
  private backendNames = new Set<string>()
  private slotPermits: Semaphore | undefined
  private fetchPermits: Semaphore | undefined
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
    this.slotPermits = undefined
    this.fetchPermits = undefined
  }

  /** Functions that run in the backend's slots. */
  pooledNames (): string[] {
    return this.names().filter(n => this.usesSlots(n))
  }

  offers (name: string): boolean {
    return this.functions.has(name) || this.backendNames.has(name)
  }

  /** The functions this peer offers by registration (built-ins are offered by every peer and not listed). */
  names (): string[] {
    return [...new Set([...this.functions.keys(), ...this.backendNames])].filter(n => !BUILTIN_FUNCTIONS.has(n))
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
    this.slotPermits ??= new Semaphore(this.slots)
    return await this.slotPermits.acquire(signal, `a slot for ${name}`)
  }

  /**
   * Waits for a turn to fetch the arguments of a call of `name`. Calls waiting
   * for a slot fetch in order, a slot's worth ahead, so the next call's
   * arguments arrive while the current one runs instead of every queued call
   * sharing the link at once.
   */
  async acquireFetch (name: string, signal?: AbortSignal): Promise<() => void> {
    if (!this.usesSlots(name)) return () => {}
    this.fetchPermits ??= new Semaphore(this.slots + 1)
    return await this.fetchPermits.acquire(signal, `an argument fetch for ${name}`)
  }

  /** Runs a call; for a backend function the caller must hold a slot from acquire(). */
  async run (name: string, args: unknown[], signal?: AbortSignal, share?: CallShare): Promise<unknown> {
    const fn = this.functions.get(name)
    if (fn === undefined && !this.backendNames.has(name)) throw new FunctionNotFoundError(name)
    this.running++
    try {
      if (fn === undefined) return await this.backend!.run(name, args, { signal })
      return await (share === undefined ? fn(...args) : this.context.run(share, () => fn(...args)))
    } finally {
      this.running--
      this.executed++
    }
  }

  async close (): Promise<void> {
    await this.backend?.close()
  }
}
