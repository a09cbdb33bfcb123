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
 *
 * The pool itself (slots, queue, the messages with workers) is core/worker-pool.ts;
 * this is its adapter to Web Workers.
 */
import { logger } from '@libp2p/logger'
import { PeerDiedError } from '../core/errors.ts'
import { SlotPool, WorkerModuleError, WorkerPoolClosedError } from '../core/worker-pool.ts'
import type { FromWorker, PoolWorker, PoolWorkerEvents, RunOptions } from '../core/worker-pool.ts'
import { detachableCopy } from './worker-wire.ts'

export { WorkerModuleError, WorkerPoolClosedError }
export type { RunOptions }

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

export interface WebWorkerPoolInit {
  /** ES module URLs (relative ones against the page) whose exported functions the pool offers */
  modules?: Array<string | URL>
  /** workers; default: one per core (navigator.hardwareConcurrency) */
  size?: number
  /** starts one worker; default: worker-entry.ts (bundled by Vite), which imports only `modules` */
  createWorker?: () => Worker
}

function defaultWorker (): Worker {
  return new Worker(new URL('./worker-entry.ts', import.meta.url), { type: 'module', name: WEB_WORKER_POOL_DEFAULTS.name })
}

function pageUrl (): string | undefined {
  return globalThis.document?.baseURI ?? globalThis.location?.href
}

/** One Web Worker: it asks for its modules (hello), and is gone when the lock it holds for life is granted to us. */
function startWorker (createWorker: () => Worker, modules: string[], events: PoolWorkerEvents): PoolWorker {
  const worker = createWorker()
  /** stops waiting on the worker's lock once the pool has ended the worker itself */
  const watch = new AbortController()
  worker.addEventListener('message', (event: MessageEvent<FromWorker>) => {
    const msg = event.data
    if (msg.type === 'hello') {
      if (msg.lock !== undefined) {
        navigator.locks.request(msg.lock, { signal: watch.signal }, () => {
          events.gone('closed or was killed')
        }).catch(() => {})
      }
      worker.postMessage({ type: 'init', modules })
      return
    }
    events.message(msg)
  })
  worker.addEventListener('error', event => {
    event.preventDefault()
    // An ErrorEvent for an uncaught error; a bare Event when the script could not be loaded.
    const message = (event as Partial<ErrorEvent>).message
    events.gone(message !== undefined && message !== '' ? `failed: ${message}` : 'could not load its script')
  })
  worker.addEventListener('messageerror', () => {
    events.unreadable(fn => new TypeError(`the result of ${fn} could not be read`))
  })
  return {
    post: (msg, transfer = []) => { worker.postMessage(msg, transfer) },
    terminate: () => {
      worker.terminate()
      watch.abort()
    }
  }
}

/**
 * Arguments belong to the caller: binary values in shared memory are shared,
 * the caller's `transfer` buffers move, the others go as tight copies moved to
 * the worker (structured clone alone would copy them twice).
 */
function prepare (args: unknown[], transfer: Transferable[]): { args: unknown[], transfer: Transferable[] } {
  const keep = new Set(transfer.filter((t): t is ArrayBuffer => t instanceof ArrayBuffer))
  const copy = detachableCopy(args, keep)
  const others = transfer.filter(t => !(t instanceof ArrayBuffer))
  return { args: copy.value as unknown[], transfer: [...copy.transfer, ...others] }
}

export class WebWorkerPool extends SlotPool {
  constructor (init: WebWorkerPoolInit = {}) {
    const size = init.size ?? (globalThis.navigator?.hardwareConcurrency || WEB_WORKER_POOL_DEFAULTS.size)
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a worker pool needs a whole number of workers from 1, not ${String(init.size)}`)
    const list = init.modules ?? []
    if (!Array.isArray(list)) throw new TypeError('`modules` must be an array of module URLs')
    const modules = [...new Set(list.map(m => new URL(String(m), pageUrl()).href))]
    const createWorker = init.createWorker ?? defaultWorker
    super({
      size,
      log,
      crashed: (message, options) => new WorkerCrashedError(message, options),
      spawn: events => startWorker(createWorker, modules, events),
      prepare,
      endAbortedCalls: true
    })
  }
}
