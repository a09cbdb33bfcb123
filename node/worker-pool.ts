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
 *
 * The pool itself (slots, queue, the messages with workers) is core/worker-pool.ts;
 * this is its adapter to worker_threads. A call runs to its end once started
 * (`run(..., { transfer })` is not used here: arguments are never moved).
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { logger } from '@libp2p/logger'
import { RefmeshError } from '../core/errors.ts'
import { SlotPool, WorkerModuleError, WorkerPoolClosedError } from '../core/worker-pool.ts'
import type { FromWorker, PoolWorker, PoolWorkerEvents } from '../core/worker-pool.ts'

export { WorkerModuleError, WorkerPoolClosedError }
export type { FromWorker, ToWorker } from '../core/worker-pool.ts'

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

export interface WorkerPoolInit {
  /** ESM modules (absolute paths) whose exported functions the pool offers */
  modules: string[]
  /** workers; default: one per core (os.availableParallelism()) */
  size?: number
}

/** One worker thread: its messages go to the pool; its exit (with the last error it reported) is its end. */
function startWorker (modules: string[], events: PoolWorkerEvents): PoolWorker {
  const { main, eval: isEval } = workerMain()
  const worker = new Worker(main, { eval: isEval, workerData: { modules }, name: 'refmesh-worker' })
  let crash: Error | undefined
  worker.on('message', (msg: FromWorker) => { events.message(msg) })
  worker.on('error', (err: Error) => {
    log.error('a worker failed: %e', err)
    crash = err
  })
  worker.on('messageerror', (err: Error) => { events.unreadable(() => err) })
  worker.on('exit', (code: number) => {
    events.gone(`exited with code ${code}`, crash, crash !== undefined ? `: ${crash.name}: ${crash.message}` : '')
  })
  return {
    post: msg => { worker.postMessage(msg) },
    terminate: async () => await worker.terminate(),
    setBusy: busy => { if (busy) worker.ref(); else worker.unref() }
  }
}

export class WorkerPool extends SlotPool {
  constructor (init: WorkerPoolInit) {
    if (!Array.isArray(init.modules)) throw new TypeError('WorkerPool needs `modules`, an array of module paths')
    const size = init.size ?? availableParallelism()
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`a worker pool needs a whole number of workers from 1, not ${String(init.size)}`)
    const paths = init.modules.map(m => resolve(m.startsWith('file:') ? fileURLToPath(m) : m))
    const modules = [...new Set(paths)]
    super({
      size,
      log,
      crashed: (message, options) => new WorkerCrashedError(message, options),
      spawn: events => startWorker(modules, events),
      endAbortedCalls: false
    })
  }
}
