/**
 * The executor backend of a Node peer: a worker_threads pool, one worker per
 * core by default, each importing the peer's function modules (every exported
 * function, by its export name; default exports are not offered).
 *
 * One call runs per worker at a time; the others wait in order. Values reach
 * workers by structured clone, with no transfer list: arguments belong to the
 * caller (its store), and those in SharedArrayBuffers are shared, not copied.
 * Binary results in plain ArrayBuffers are transferred back (see
 * worker-entry.ts), so they are not copied either.
 *
 * Idle workers are unref'd (an idle pool does not keep the process alive);
 * starting and busy ones are ref'd. close() terminates them all.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { logger } from '@libp2p/logger'
import type { ExecutorBackend } from '../core/executor.ts'
import { deserializeError } from '../core/thread-errors.ts'
import type { SerializedError } from '../core/thread-errors.ts'
import { FunctionNotFoundError, RefmeshError } from '../core/errors.ts'

const log = logger('refmesh:workers')
const ENTRY = new URL('./worker-entry.ts', import.meta.url)

/**
 * Under `node --input-type=... -e`, which workers inherit, Node refuses a file
 * as a worker's main module; the entry is then imported from a one-line script.
 */
function workerMain (): { main: URL | string, eval: boolean } {
  const inputType = process.execArgv.some(a => a === '--input-type' || a.startsWith('--input-type='))
  return inputType ? { main: `import(${JSON.stringify(ENTRY.href)})`, eval: true } : { main: ENTRY, eval: false }
}

export class WorkerCrashedError extends RefmeshError {
  override name = 'WorkerCrashedError'
}

/** A function module could not be loaded by the workers, or exports a name another module exports too. */
export class WorkerModuleError extends RefmeshError {
  override name = 'WorkerModuleError'
  /** the module at fault (absolute path) */
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

export interface WorkerPoolInit {
  /** ESM modules (absolute paths) whose exported functions the pool offers */
  modules: string[]
  /** workers; default: one per core (os.availableParallelism()) */
  size?: number
}

// ---- wire between the pool and its workers (worker-entry.ts) ----

export type ToWorker = { type: 'call', id: number, name: string, args: unknown[] }

export type FromWorker =
  | { type: 'loading', module: string }
  | { type: 'ready', names: string[] }
  | { type: 'loadError', module: string, message: string, error?: SerializedError }
  | { type: 'result', id: number, value: unknown }
  | { type: 'error', id: number, error: SerializedError }

// ---- the pool ----

interface Job {
  name: string
  args: unknown[]
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
  /** the last uncaught error the worker reported */
  crash?: Error
}

function detachAbort (job: Job): void {
  if (job.onAbort !== undefined) job.signal?.removeEventListener('abort', job.onAbort)
  job.onAbort = undefined
}

export class WorkerPool implements ExecutorBackend {
  readonly size: number
  private readonly modules: string[]
  private readonly slots: Slot[] = []
  private readonly queue: Job[] = []
  private functionNames: string[] = []
  private nameSet = new Set<string>()
  private nextId = 1
  private startPromise: Promise<string[]> | undefined
  private started = false
  private closed = false
  private closePromise: Promise<void> | undefined

  constructor (init: WorkerPoolInit) {
    if (!Array.isArray(init.modules)) throw new TypeError('WorkerPool needs `modules`, an array of module paths')
    const size = init.size ?? availableParallelism()
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a worker pool needs a whole number of workers from 1, not ${String(init.size)}`)
    this.size = size
    const paths = init.modules.map(m => resolve(m.startsWith('file:') ? fileURLToPath(m) : m))
    this.modules = [...new Set(paths)]
  }

  /**
   * Starts the workers, each importing every module; resolves with the
   * functions they offer. Rejects (and stops the workers) with a
   * WorkerModuleError when a module fails to load or two modules export the
   * same name, or with `signal.reason` when `signal` fires first. A second call
   * returns the first one's promise.
   */
  async start (options: { signal?: AbortSignal } = {}): Promise<string[]> {
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
   * (same name, message and stack), a WorkerCrashedError when the worker dies
   * during the call, or `signal.reason` when `signal` fires while the call is
   * still queued. Once running, a call runs to its end.
   */
  async run (name: string, args: unknown[], options: { signal?: AbortSignal } = {}): Promise<unknown> {
    if (this.closed) throw new WorkerPoolClosedError(`the worker pool is closed (calling ${name})`)
    if (this.startPromise === undefined) throw new Error(`start() the worker pool before calling ${name}`)
    if (this.started && !this.nameSet.has(name)) throw this.notFound(name)
    if (!Array.isArray(args)) throw new TypeError(`the arguments of ${name} must be an array`)
    const signal = options.signal
    if (signal?.aborted === true) throw signal.reason
    return await new Promise<unknown>((resolve, reject) => {
      const job: Job = { name, args, resolve, reject, signal }
      if (signal !== undefined) {
        job.onAbort = () => {
          const i = this.queue.indexOf(job)
          if (i < 0) return
          this.queue.splice(i, 1)
          job.onAbort = undefined
          reject(signal.reason)
        }
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

  private async shutdown (reason: unknown): Promise<void> {
    this.closed = true
    const error = reason instanceof Error ? reason : new WorkerPoolClosedError('the worker pool closed')
    for (const job of this.queue.splice(0)) {
      detachAbort(job)
      job.reject(error instanceof WorkerPoolClosedError ? new WorkerPoolClosedError(`the worker pool closed before ${job.name} ran`) : error)
    }
    for (const slot of this.slots) {
      const job = slot.job
      if (job === undefined) continue
      slot.job = undefined
      slot.state = 'gone'
      job.reject(new WorkerPoolClosedError(`the worker pool closed while ${job.name} ran`))
    }
    await Promise.all(this.slots.map(async s => { await s.worker.terminate() }))
  }

  private notFound (name: string): FunctionNotFoundError {
    const err = new FunctionNotFoundError(name)
    err.message = `the worker pool offers no function "${name}"`
    err.stack = `${err.name}: ${err.message}`
    return err
  }

  /** Starts a worker and lists it at once, so close() terminates workers that are still starting. */
  private spawn (): Slot {
    const { main, eval: isEval } = workerMain()
    const worker = new Worker(main, { eval: isEval, workerData: { modules: this.modules }, name: 'refmesh-worker' })
    let settleReady!: Slot['settleReady']
    const ready = new Promise<string[]>((resolve, reject) => { settleReady = { resolve, reject } })
    ready.catch(() => {})
    const slot: Slot = { worker, state: 'starting', ready, settleReady }
    this.slots.push(slot)
    worker.on('message', (msg: FromWorker) => { this.onMessage(slot, msg) })
    worker.on('error', (err: Error) => {
      log.error('a worker failed: %e', err)
      slot.crash = err
    })
    worker.on('messageerror', (err: Error) => {
      const job = slot.job
      if (job === undefined) return
      this.finish(slot)
      job.reject(err)
      this.dispatch()
    })
    worker.on('exit', (code: number) => { this.onExit(slot, code) })
    return slot
  }

  private onMessage (slot: Slot, msg: FromWorker): void {
    switch (msg.type) {
      case 'loading':
        slot.loading = msg.module
        return
      case 'ready':
        if (slot.state !== 'starting') return
        slot.state = 'idle'
        slot.loading = undefined
        slot.worker.unref()
        slot.settleReady.resolve(msg.names)
        this.dispatch()
        return
      case 'loadError': {
        if (slot.state !== 'starting') return
        const cause = msg.error !== undefined ? deserializeError(msg.error) : undefined
        slot.settleReady.reject(new WorkerModuleError(msg.module, msg.message, cause !== undefined ? { cause } : undefined))
        void slot.worker.terminate()
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
    slot.job = undefined
    slot.jobId = undefined
    slot.state = 'idle'
    slot.worker.unref()
  }

  private onExit (slot: Slot, code: number): void {
    const wasStarting = slot.state === 'starting'
    slot.state = 'gone'
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
    const detail = slot.crash !== undefined ? `: ${slot.crash.name}: ${slot.crash.message}` : ''
    const cause = slot.crash !== undefined ? { cause: slot.crash } : undefined
    if (wasStarting) {
      // no-op when the worker already reported a load error, or was ready
      slot.settleReady.reject(this.closed
        ? new WorkerPoolClosedError('the worker pool closed while its workers started')
        : slot.loading !== undefined
          ? new WorkerModuleError(slot.loading, `a worker exited with code ${code} while loading the worker module ${slot.loading}${detail}`, cause)
          : new WorkerCrashedError(`a worker exited with code ${code} while starting${detail}`, cause))
    }
    const job = slot.job
    slot.job = undefined
    if (job !== undefined) {
      job.reject(this.closed
        ? new WorkerPoolClosedError(`the worker pool closed while ${job.name} ran`)
        : new WorkerCrashedError(`the worker running ${job.name} exited with code ${code}${detail}`, cause))
    }
    if (this.closed) return
    // A failed replacement is not replaced again at once: the next run() tries.
    if (!wasStarting) {
      log('replacing a worker that exited with code %d', code)
      this.replenish()
    }
    this.failQueueIfNoWorkers(slot.crash ?? new Error(`a worker exited with code ${code}`))
  }

  /** Brings the pool back to its size after crashes (only once it has started). */
  private replenish (): void {
    if (!this.started || this.closed) return
    while (this.slots.length < this.size) {
      const slot = this.spawn()
      slot.ready.then(() => { this.dispatch() }, (err: Error) => {
        log.error('cannot replace a worker: %e', err)
        void slot.worker.terminate()
      })
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
      detachAbort(job)
      if (!this.nameSet.has(job.name)) {
        job.reject(this.notFound(job.name))
        continue
      }
      const id = this.nextId++
      slot.job = job
      slot.jobId = id
      slot.state = 'busy'
      slot.worker.ref()
      try {
        const msg: ToWorker = { type: 'call', id, name: job.name, args: job.args }
        slot.worker.postMessage(msg)
      } catch (err) {
        // An argument that cannot be cloned: the worker never saw the call.
        this.finish(slot)
        job.reject(err)
      }
    }
  }
}
