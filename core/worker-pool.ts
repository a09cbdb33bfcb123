/**
 * The worker-pool protocol, for every runtime: a pool of workers (worker_threads
 * on Node, Web Workers in a tab), each loading the peer's function modules, one
 * call per worker at a time, the rest waiting in order. node/worker-pool.ts and
 * browser/worker-backend.ts are thin adapters: they start a worker, carry its
 * messages, and say when it is gone; the slots, the queue and what each message
 * means are here.
 *
 * The wire between a pool and its workers (node/worker-entry.ts,
 * browser/worker-runtime.ts):
 *   to a worker:   `init` (the modules, where the worker asks with `hello`), `call`
 *   from a worker: `hello`, `loading` (a module), `ready` (the functions offered),
 *                  `loadError`, `result`, `error` (the call threw), `fatal` (an
 *                  uncaught error: the pool ends the worker)
 * Values travel by structured clone; the adapter names what is transferred
 * (moved without a copy) each way.
 *
 * A worker that dies fails its call with the adapter's crash error and is
 * replaced; with no worker left or starting, queued calls fail rather than wait.
 */
import type { Logger } from '@libp2p/logger'
import type { ExecutorBackend } from './executor.ts'
import { FunctionNotFoundError, RefmeshError } from './errors.ts'
import type { AbortOptions } from './signals.ts'
import { deserializeError } from './thread-errors.ts'
import type { SerializedError } from './thread-errors.ts'

export type ToWorker =
  | { type: 'init', modules: string[] }
  | { type: 'call', id: number, name: string, args: unknown[] }

export type FromWorker =
  /** listening; `lock` is held until the worker is gone (a Web Lock its pool waits on) */
  | { type: 'hello', lock?: string }
  | { type: 'loading', module: string }
  | { type: 'ready', names: string[] }
  | { type: 'loadError', module: string, message: string, error?: SerializedError }
  | { type: 'result', id: number, value: unknown }
  | { type: 'error', id: number, error: SerializedError }
  /** an uncaught error or unhandled rejection that did not end the worker: the pool ends it */
  | { type: 'fatal', error: SerializedError }

/** A function module could not be loaded by the workers, or exports a name another module exports too. */
export class WorkerModuleError extends RefmeshError {
  override name = 'WorkerModuleError'
  /** the module at fault (a path, a URL, or its label in a bundled entry) */
  readonly module: string
  constructor (module: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.module = module
  }
}

/** The pool was closed before (or while) the call ran. */
export class WorkerPoolClosedError extends RefmeshError {
  override name = 'WorkerPoolClosedError'
}

export interface RunOptions extends AbortOptions {
  /** buffers (and other transferables) the caller gives up: they move to the worker instead of being copied */
  transfer?: Transferable[]
}

/** One worker, as its adapter drives it. */
export interface PoolWorker {
  post: (msg: ToWorker, transfer?: Transferable[]) => void
  terminate: () => Promise<unknown> | void
  /** a call runs on it now (Node: a busy worker keeps the process alive, an idle one does not) */
  setBusy?: (busy: boolean) => void
}

/** What an adapter tells the pool about one worker. */
export interface PoolWorkerEvents {
  message: (msg: FromWorker) => void
  /** the worker is gone, or must go: `how` reads after "a worker", `detail` after the message */
  gone: (how: string, crash?: Error, detail?: string) => void
  /** a result that could not be read: the call fails with this error */
  unreadable: (error: (fn: string) => Error) => void
}

export interface SlotPoolInit {
  size: number
  log: Logger
  /** the runtime's error for a call whose worker died */
  crashed: (message: string, options?: ErrorOptions) => Error
  /** starts one worker (may throw: the runtime refused) */
  spawn: (events: PoolWorkerEvents) => PoolWorker
  /** how a call's arguments go to the worker: the values posted and what is transferred */
  prepare?: (args: unknown[], transfer: Transferable[]) => { args: unknown[], transfer: Transferable[] }
  /**
   * A call aborted while it runs: true ends its worker (a Web Worker cannot be
   * interrupted any other way, and a tab's few cores must not stay busy with calls
   * nobody waits for); false lets it run to its end.
   */
  endAbortedCalls: boolean
}

interface Job {
  name: string
  args: unknown[]
  transfer: Transferable[]
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
  signal?: AbortSignal
  onAbort?: () => void
}

interface Slot {
  worker: PoolWorker
  state: 'starting' | 'idle' | 'busy' | 'gone'
  /** settles when the worker has loaded every module (rejects if it cannot) */
  ready: Promise<string[]>
  settleReady: { resolve: (names: string[]) => void, reject: (err: Error) => void }
  /** the module the worker is importing, while starting */
  loading?: string
  job?: Job
  jobId?: number
  terminated?: Promise<unknown>
}

function detachAbort (job: Job): void {
  if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort)
  job.onAbort = undefined
}

/** The pool: slots, a queue in order, and the protocol with each worker. */
export class SlotPool implements ExecutorBackend {
  readonly size: number
  private readonly pool: SlotPoolInit
  private readonly slots: Slot[] = []
  private readonly queue: Job[] = []
  private functionNames: string[] = []
  private nameSet = new Set<string>()
  private nextId = 1
  private startPromise: Promise<string[]> | undefined
  private started = false
  private closed = false
  private closePromise: Promise<void> | undefined

  constructor (init: SlotPoolInit) {
    this.size = init.size
    this.pool = init
  }

  /**
   * Starts the workers, each loading every module; resolves with the
   * functions they offer. Rejects (and stops the workers) with a
   * WorkerModuleError when a module fails to load or two modules export the
   * same name, or with `signal.reason` when `signal` fires first. A second call
   * returns the first one's promise.
   */
  async start (options: AbortOptions = {}): Promise<string[]> {
    if (this.closed) throw new WorkerPoolClosedError('the worker pool is closed')
    this.startPromise ??= this.doStart(options.signal)
    return await this.startPromise
  }

  private async doStart (signal: AbortSignal | undefined): Promise<string[]> {
    if (signal?.aborted === true) throw signal.reason
    const slots = Array.from({ length: this.size }, () => this.spawn())
    let onAbort: (() => void) | undefined
    try {
      const all = Promise.all(slots.map(async s => await s.ready))
      const names = signal === undefined
        ? await all
        : await Promise.race([all, new Promise<never>((_resolve, reject) => {
          onAbort = () => { reject(signal.reason) }
          signal.addEventListener('abort', onAbort, { once: true })
        })])
      const first = names[0]
      for (const n of names) {
        if (n.join('\n') !== first.join('\n')) throw new Error('the workers disagree on the functions they offer')
      }
      if (this.closed) throw new WorkerPoolClosedError('the worker pool closed while it was starting')
      this.functionNames = first
      this.nameSet = new Set(first)
      this.started = true
      this.pool.log('%d workers offer %d functions', this.size, first.length)
      this.dispatch()
      return [...first]
    } catch (err) {
      await this.shutdown(err)
      throw err
    } finally {
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort)
    }
  }

  /** Functions the pool offers (empty until start() resolves). */
  names (): string[] {
    return [...this.functionNames]
  }

  /** Calls running now. */
  get busy (): number {
    return this.slots.reduce((n, s) => s.state === 'busy' ? n + 1 : n, 0)
  }

  /** Calls waiting for a worker. */
  get queued (): number {
    return this.queue.length
  }

  /**
   * Runs `name(...args)` on an idle worker, or once one is free (in order).
   * Resolves with its (awaited) return value; rejects with the worker's error
   * (same name, message and stack), the crash error when the worker dies during
   * the call, or `signal.reason` when `signal` fires while the call is queued
   * (or, with `endAbortedCalls`, while it runs: its worker is ended and replaced).
   */
  async run (name: string, args: unknown[], options: RunOptions = {}): Promise<unknown> {
    if (this.closed) throw new WorkerPoolClosedError(`the worker pool is closed (calling ${name})`)
    if (this.startPromise === undefined) throw new Error(`start() the worker pool before calling ${name}`)
    if (this.started && !this.nameSet.has(name)) throw this.notFound(name)
    if (!Array.isArray(args)) throw new TypeError(`the arguments of ${name} must be an array`)
    const signal = options.signal
    if (signal?.aborted === true) throw signal.reason
    return await new Promise<unknown>((resolve, reject) => {
      const job: Job = { name, args, transfer: options.transfer ?? [], resolve, reject, signal }
      if (signal !== undefined) {
        job.onAbort = () => { this.abort(job) }
        signal.addEventListener('abort', job.onAbort, { once: true })
      }
      this.queue.push(job)
      this.replenish()
      this.dispatch()
    })
  }

  /** Stops every worker; queued and running calls reject with WorkerPoolClosedError. */
  async close (): Promise<void> {
    this.closePromise ??= this.shutdown(new WorkerPoolClosedError('the worker pool closed'))
    await this.closePromise
  }

  private abort (job: Job): void {
    const reason: unknown = job.signal?.reason
    detachAbort(job)
    const i = this.queue.indexOf(job)
    if (i >= 0) {
      this.queue.splice(i, 1)
      job.reject(reason)
      return
    }
    if (!this.pool.endAbortedCalls) return
    const slot = this.slots.find(s => s.job === job)
    if (slot === undefined) return
    slot.job = undefined
    job.reject(reason)
    this.pool.log('ending the worker running %s: the call was aborted', job.name)
    this.retire(slot, 'was ended: its call was aborted')
  }

  private async shutdown (reason: unknown): Promise<void> {
    this.closed = true
    const error = reason instanceof Error ? reason : new WorkerPoolClosedError('the worker pool closed')
    for (const job of this.queue.splice(0)) {
      detachAbort(job)
      job.reject(error instanceof WorkerPoolClosedError ? new WorkerPoolClosedError(`the worker pool closed before ${job.name} ran`) : error)
    }
    const slots = [...this.slots]
    for (const slot of slots) this.retire(slot, 'was stopped: the pool closed')
    await Promise.all(slots.map(async s => { await s.terminated }))
  }

  private notFound (name: string): FunctionNotFoundError {
    const err = new FunctionNotFoundError(name)
    err.message = `the worker pool offers no function "${name}"`
    err.stack = `${err.name}: ${err.message}`
    return err
  }

  /** Starts a worker and lists it at once, so close() ends workers that are still starting. */
  private spawn (): Slot {
    let settleReady!: Slot['settleReady']
    const ready = new Promise<string[]>((resolve, reject) => { settleReady = { resolve, reject } })
    ready.catch(() => {})
    // The adapter reports events of the slot it is starting: they refer to it through this holder.
    const holder: { slot?: Slot } = {}
    let worker: PoolWorker
    try {
      worker = this.pool.spawn({
        message: msg => { if (holder.slot !== undefined) this.onMessage(holder.slot, msg) },
        gone: (how, crash, detail) => { if (holder.slot !== undefined) this.retire(holder.slot, how, crash, detail) },
        unreadable: error => {
          const slot = holder.slot
          const job = slot?.job
          if (slot === undefined || job === undefined) return
          this.finish(slot)
          job.reject(error(job.name))
          this.dispatch()
        }
      })
    } catch (err) {
      // No slot to list: fail like a worker that died while starting.
      const failed: Slot = { worker: { post: () => {}, terminate: () => {} }, state: 'gone', ready, settleReady }
      settleReady.reject(this.pool.crashed(`cannot start a worker: ${(err as Error).message}`, { cause: err }))
      return failed
    }
    const slot: Slot = { worker, state: 'starting', ready, settleReady }
    holder.slot = slot
    this.slots.push(slot)
    return slot
  }

  private onMessage (slot: Slot, msg: FromWorker): void {
    switch (msg.type) {
      case 'hello':
        return
      case 'loading':
        slot.loading = msg.module
        return
      case 'ready':
        if (slot.state !== 'starting') return
        slot.state = 'idle'
        slot.loading = undefined
        slot.worker.setBusy?.(false)
        slot.settleReady.resolve(msg.names)
        this.dispatch()
        return
      case 'loadError': {
        if (slot.state !== 'starting') return
        const cause = msg.error !== undefined ? deserializeError(msg.error) : undefined
        slot.settleReady.reject(new WorkerModuleError(msg.module, msg.message, cause !== undefined ? { cause } : undefined))
        this.retire(slot, 'could not load its modules')
        return
      }
      case 'fatal': {
        const err = deserializeError(msg.error)
        this.pool.log.error('a worker failed: %e', err)
        this.retire(slot, `failed: ${err.name}: ${err.message}`, err)
        return
      }
      case 'result':
      case 'error': {
        const job = slot.job
        if (job === undefined || slot.jobId !== msg.id) return
        this.finish(slot)
        if (msg.type === 'result') job.resolve(msg.value)
        else job.reject(deserializeError(msg.error))
        this.dispatch()
      }
    }
  }

  /** The slot's call is over: the worker is idle again. */
  private finish (slot: Slot): void {
    if (slot.job !== undefined) detachAbort(slot.job)
    slot.job = undefined
    slot.jobId = undefined
    slot.state = 'idle'
    slot.worker.setBusy?.(false)
  }

  /** The worker is gone or must go: ends it, fails what it was doing, replaces it. */
  private retire (slot: Slot, how: string, crash?: Error, detail = ''): void {
    if (slot.state === 'gone') return
    const wasStarting = slot.state === 'starting'
    slot.state = 'gone'
    slot.terminated = Promise.resolve(slot.worker.terminate()).catch(() => {})
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
    const cause = crash !== undefined ? { cause: crash } : undefined
    if (wasStarting) {
      // no-op when the worker already reported a load error
      slot.settleReady.reject(this.closed
        ? new WorkerPoolClosedError('the worker pool closed while its workers started')
        : slot.loading !== undefined
          ? new WorkerModuleError(slot.loading, `a worker ${how} while loading the worker module ${slot.loading}${detail}`, cause)
          : this.pool.crashed(`a worker ${how} while starting${detail}`, cause))
    }
    const job = slot.job
    slot.job = undefined
    if (job !== undefined) {
      detachAbort(job)
      job.reject(this.closed
        ? new WorkerPoolClosedError(`the worker pool closed while ${job.name} ran`)
        : this.pool.crashed(`the worker running ${job.name} ${how}${detail}`, cause))
    }
    if (this.closed) return
    // A failed replacement is not replaced again at once: the next run() tries.
    if (!wasStarting) {
      this.pool.log('replacing a worker that %s', how)
      this.replenish()
    }
    this.failQueueIfNoWorkers(crash ?? new Error(`a worker ${how}`))
  }

  /** Brings the pool back to its size after crashes (only once it has started). */
  private replenish (): void {
    if (!this.started || this.closed) return
    while (this.slots.length < this.size) {
      const slot = this.spawn()
      slot.ready.then(() => { this.dispatch() }, (err: Error) => {
        this.pool.log.error('cannot replace a worker: %e', err)
        this.retire(slot, 'could not start')
      })
      if (slot.state === 'gone') {
        // The runtime refused to start a worker: try again on the next run().
        this.failQueueIfNoWorkers(new Error('the runtime refused to start a worker'))
        return
      }
    }
  }

  /** With no worker left or starting, queued calls could wait forever: they fail instead. */
  private failQueueIfNoWorkers (cause: Error): void {
    if (this.slots.length > 0 || this.queue.length === 0) return
    for (const job of this.queue.splice(0)) {
      detachAbort(job)
      job.reject(this.pool.crashed(`no worker could be started to run ${job.name}: ${cause.message}`, { cause }))
    }
  }

  private dispatch (): void {
    if (!this.started || this.closed) return
    while (this.queue.length > 0) {
      const slot = this.slots.find(s => s.state === 'idle')
      if (slot === undefined) return
      const job = this.queue.shift()!
      // A call that runs to its end cannot be aborted once it runs.
      if (!this.pool.endAbortedCalls) detachAbort(job)
      if (!this.nameSet.has(job.name)) {
        detachAbort(job)
        job.reject(this.notFound(job.name))
        continue
      }
      const id = this.nextId++
      try {
        const { args, transfer } = this.pool.prepare?.(job.args, job.transfer) ?? { args: job.args, transfer: job.transfer }
        slot.worker.post({ type: 'call', id, name: job.name, args }, transfer)
      } catch (err) {
        // An argument that cannot be cloned: the worker never saw the call.
        detachAbort(job)
        job.reject(err)
        continue
      }
      slot.job = job
      slot.jobId = id
      slot.state = 'busy'
      slot.worker.setBusy?.(true)
    }
  }
}
