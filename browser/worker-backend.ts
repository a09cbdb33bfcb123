/**
 * The executor backend of a browser peer: a pool of module Web Workers, one
 * per core by default, each loading the peer's function modules (every
 * exported function, by its export name) through worker-runtime.ts. Like
 * node/worker-pool.ts for Node peers, with what differs in a tab:
 *
 * - Functions come as module URLs the default entry (worker-entry.ts) imports,
 *   or bundled by Vite into an entry of the app's own (`createWorker`).
 * - Arguments belong to the caller (its store). Binary values in shared memory
 *   are shared; others are copied once, as tight copies transferred to the
 *   worker, or moved without a copy when the caller lists their buffers in
 *   `run(..., { transfer })`. Structured clone alone would copy them twice.
 *   Binary results move back (worker-runtime.ts transfers them).
 * - A call aborted while it runs ends its worker: a worker cannot be
 *   interrupted any other way, and a tab's few cores must not stay busy with
 *   calls nobody waits for. The worker is replaced.
 * - A worker that dies says nothing. Each holds a Web Lock for life, and the
 *   pool waits on it: the lock is granted to the pool when the worker is gone.
 *   An uncaught error or unhandled rejection in a worker ends it, as on Node.
 */
import { logger } from '@libp2p/logger'
import type { ExecutorBackend } from '../core/executor.ts'
import { FunctionNotFoundError, PeerDiedError, RefmeshError } from '../core/errors.ts'
import type { AbortOptions } from '../core/signals.ts'
import { deserializeError, detachableCopy } from './worker-wire.ts'
import type { FromWorker, ToWorker } from './worker-runtime.ts'

const log = logger('refmesh:web-workers')

export const WEB_WORKER_POOL_DEFAULTS = {
  /** when the browser does not say how many cores it has */
  size: 4,
  /** the name workers show in the browser's developer tools */
  name: 'refmesh-worker'
} as const

/** The worker running a call died (closed itself, failed, or was killed): the executor of the call is gone. */
export class WorkerCrashedError extends PeerDiedError {
  override name = 'WorkerCrashedError'
}

/** A function module could not be loaded by the workers, or exports a name another module exports too. */
export class WorkerModuleError extends RefmeshError {
  override name = 'WorkerModuleError'
  /** the module at fault (its URL, or its label in a bundled entry) */
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

export interface WebWorkerPoolInit {
  /** ES module URLs (relative ones against the page) whose exported functions the pool offers */
  modules?: Array<string | URL>
  /** workers; default: one per core (navigator.hardwareConcurrency) */
  size?: number
  /** starts one worker; default: worker-entry.ts (bundled by Vite), which imports only `modules` */
  createWorker?: () => Worker
}

export interface RunOptions extends AbortOptions {
  /** buffers (and other transferables) the caller gives up: they move to the worker instead of being copied */
  transfer?: Transferable[]
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
  worker: Worker
  state: 'starting' | 'idle' | 'busy' | 'gone'
  /** settles when the worker has loaded every module (rejects if it cannot) */
  ready: Promise<string[]>
  settleReady: { resolve: (names: string[]) => void, reject: (err: Error) => void }
  /** the module the worker is importing, while starting */
  loading?: string
  job?: Job
  jobId?: number
  /** stops waiting on the worker's lock once the pool has ended the worker itself */
  watch: AbortController
}

function defaultWorker (): Worker {
  return new Worker(new URL('./worker-entry.ts', import.meta.url), { type: 'module', name: WEB_WORKER_POOL_DEFAULTS.name })
}

function detachAbort (job: Job): void {
  if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort)
  job.onAbort = undefined
}

function pageUrl (): string | undefined {
  return globalThis.document?.baseURI ?? globalThis.location?.href
}

export class WebWorkerPool implements ExecutorBackend {
  readonly size: number
  private readonly modules: string[]
  private readonly createWorker: () => Worker
  private readonly slots: Slot[] = []
  private readonly queue: Job[] = []
  private functionNames: string[] = []
  private nameSet = new Set<string>()
  private nextId = 1
  private startPromise: Promise<string[]> | undefined
  private started = false
  private closed = false
  private closePromise: Promise<void> | undefined

  constructor (init: WebWorkerPoolInit = {}) {
    const size = init.size ?? (globalThis.navigator?.hardwareConcurrency || WEB_WORKER_POOL_DEFAULTS.size)
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a worker pool needs a whole number of workers from 1, not ${String(init.size)}`)
    this.size = size
    const modules = init.modules ?? []
    if (!Array.isArray(modules)) throw new TypeError('`modules` must be an array of module URLs')
    this.modules = [...new Set(modules.map(m => new URL(String(m), pageUrl()).href))]
    this.createWorker = init.createWorker ?? defaultWorker
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
      log('%d workers offer %d functions', this.size, first.length)
      this.dispatch()
      return [...first]
    } catch (err) {
      this.shutdown(err)
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
   * (same name, message and stack), a WorkerCrashedError when the worker dies
   * during the call, or `signal.reason` when `signal` fires (a running call's
   * worker is ended and replaced).
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
    this.closePromise ??= Promise.resolve().then(() => { this.shutdown(new WorkerPoolClosedError('the worker pool closed')) })
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
    const slot = this.slots.find(s => s.job === job)
    if (slot === undefined) return
    slot.job = undefined
    job.reject(reason)
    log('ending the worker running %s: the call was aborted', job.name)
    this.retire(slot, 'was ended: its call was aborted')
  }

  private shutdown (reason: unknown): void {
    this.closed = true
    const error = reason instanceof Error ? reason : new WorkerPoolClosedError('the worker pool closed')
    for (const job of this.queue.splice(0)) {
      detachAbort(job)
      job.reject(error instanceof WorkerPoolClosedError ? new WorkerPoolClosedError(`the worker pool closed before ${job.name} ran`) : error)
    }
    for (const slot of [...this.slots]) this.retire(slot, 'was stopped: the pool closed')
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
    let worker: Worker
    try {
      worker = this.createWorker()
    } catch (err) {
      // No slot to list: fail like a worker that died while starting.
      const failed: Slot = { worker: undefined as unknown as Worker, state: 'gone', ready, settleReady, watch: new AbortController() }
      settleReady.reject(new WorkerCrashedError(`cannot start a worker: ${(err as Error).message}`, { cause: err }))
      return failed
    }
    const slot: Slot = { worker, state: 'starting', ready, settleReady, watch: new AbortController() }
    this.slots.push(slot)
    worker.addEventListener('message', (event: MessageEvent<FromWorker>) => { this.onMessage(slot, event.data) })
    worker.addEventListener('error', event => {
      event.preventDefault()
      // An ErrorEvent for an uncaught error; a bare Event when the script could not be loaded.
      const message = (event as Partial<ErrorEvent>).message
      this.retire(slot, message !== undefined && message !== '' ? `failed: ${message}` : 'could not load its script')
    })
    worker.addEventListener('messageerror', () => {
      const job = slot.job
      if (job === undefined) return
      this.finish(slot)
      job.reject(new TypeError(`the result of ${job.name} could not be read`))
      this.dispatch()
    })
    return slot
  }

  private onMessage (slot: Slot, msg: FromWorker): void {
    switch (msg.type) {
      case 'hello':
        if (msg.lock !== undefined) this.watch(slot, msg.lock)
        this.post(slot, { type: 'init', modules: this.modules })
        return
      case 'loading':
        slot.loading = msg.module
        return
      case 'ready':
        if (slot.state !== 'starting') return
        slot.state = 'idle'
        slot.loading = undefined
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
        log.error('a worker failed: %e', err)
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

  /** Waits on the lock the worker holds for life: granted, the worker is gone. */
  private watch (slot: Slot, lock: string): void {
    navigator.locks.request(lock, { signal: slot.watch.signal }, () => {
      this.retire(slot, 'closed or was killed')
    }).catch(() => {})
  }

  private post (slot: Slot, msg: ToWorker, transfer: Transferable[] = []): void {
    slot.worker.postMessage(msg, transfer)
  }

  /** The slot's call is over: the worker is idle again. */
  private finish (slot: Slot): void {
    if (slot.job !== undefined) detachAbort(slot.job)
    slot.job = undefined
    slot.jobId = undefined
    slot.state = 'idle'
  }

  /** The worker is gone or must go: ends it, fails what it was doing, replaces it. */
  private retire (slot: Slot, how: string, crash?: Error): void {
    if (slot.state === 'gone') return
    const wasStarting = slot.state === 'starting'
    slot.state = 'gone'
    slot.worker.terminate()
    slot.watch.abort()
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
    const cause = crash !== undefined ? { cause: crash } : undefined
    if (wasStarting) {
      // no-op when the worker already reported a load error
      slot.settleReady.reject(this.closed
        ? new WorkerPoolClosedError('the worker pool closed while its workers started')
        : slot.loading !== undefined
          ? new WorkerModuleError(slot.loading, `a worker ${how} while loading the worker module ${slot.loading}`, cause)
          : new WorkerCrashedError(`a worker ${how} while starting`, cause))
    }
    const job = slot.job
    slot.job = undefined
    if (job !== undefined) {
      detachAbort(job)
      job.reject(this.closed
        ? new WorkerPoolClosedError(`the worker pool closed while ${job.name} ran`)
        : new WorkerCrashedError(`the worker running ${job.name} ${how}`, cause))
    }
    if (this.closed) return
    // A failed replacement is not replaced again at once: the next run() tries.
    if (!wasStarting) {
      log('replacing a worker that %s', how)
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
        log.error('cannot replace a worker: %e', err)
        this.retire(slot, 'could not start')
      })
      if (slot.state === 'gone') {
        // The browser refused to start a worker: try again on the next run().
        this.failQueueIfNoWorkers(new Error('the browser refused to start a worker'))
        return
      }
    }
  }

  /** With no worker left or starting, queued calls could wait forever: they fail instead. */
  private failQueueIfNoWorkers (cause: Error): void {
    if (this.slots.length > 0 || this.queue.length === 0) return
    for (const job of this.queue.splice(0)) {
      detachAbort(job)
      job.reject(new WorkerCrashedError(`no worker could be started to run ${job.name}: ${cause.message}`, { cause }))
    }
  }

  private dispatch (): void {
    if (!this.started || this.closed) return
    while (this.queue.length > 0) {
      const slot = this.slots.find(s => s.state === 'idle')
      if (slot === undefined) return
      const job = this.queue.shift()!
      if (!this.nameSet.has(job.name)) {
        detachAbort(job)
        job.reject(this.notFound(job.name))
        continue
      }
      const id = this.nextId++
      try {
        const keep = new Set(job.transfer.filter((t): t is ArrayBuffer => t instanceof ArrayBuffer))
        const { value, transfer } = detachableCopy(job.args, keep)
        const others = job.transfer.filter(t => !(t instanceof ArrayBuffer))
        this.post(slot, { type: 'call', id, name: job.name, args: value as unknown[] }, [...transfer, ...others])
      } catch (err) {
        // An argument that cannot be cloned: the worker never saw the call.
        detachAbort(job)
        job.reject(err)
        continue
      }
      slot.job = job
      slot.jobId = id
      slot.state = 'busy'
    }
  }
}
