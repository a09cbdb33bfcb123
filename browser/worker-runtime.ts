/**
 * The worker side of a WebWorkerPool (worker-backend.ts): loads the function
 * modules, reports the functions they export, then runs the calls posted to
 * it, one at a time. Like node/worker-entry.ts for Node peers.
 *
 * A worker's entry script calls `serveFunctions()`. The default entry
 * (worker-entry.ts) bundles no functions and imports only the module URLs the
 * pool hands it; an app built with Vite bundles its functions into an entry of
 * its own:
 *
 *   // functions-worker.ts
 *   import { serveFunctions } from 'refmesh/browser/worker-runtime'
 *   import * as stats from './stats.ts'
 *   serveFunctions({ './stats.ts': stats })
 *
 *   new WebWorkerPool({ createWorker: () => new Worker(new URL('./functions-worker.ts', import.meta.url), { type: 'module' }) })
 *
 * Every exported function is offered by its export name (default exports are
 * not), as on Node.
 */
import { serializeError, transferablesOf } from './worker-wire.ts'
import type { FromWorker, ToWorker } from '../core/worker-pool.ts'

// The wire between the pool and its workers is core/worker-pool.ts.
export type { FromWorker, ToWorker } from '../core/worker-pool.ts'

type Fn = (...args: unknown[]) => unknown

interface WorkerScope {
  postMessage: (message: FromWorker, transfer?: Transferable[]) => void
  addEventListener: ((type: 'message', listener: (event: MessageEvent<ToWorker>) => void) => void) &
  ((type: 'error', listener: (event: ErrorEvent) => void) => void) &
  ((type: 'unhandledrejection', listener: (event: PromiseRejectionEvent) => void) => void)
}

const scope = globalThis as unknown as WorkerScope

function post (msg: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(msg, transfer)
}

/** Adds a module's exported functions to `functions`; false (and a loadError sent) on a name taken by another module. */
function offer (module: string, exports: Record<string, unknown>, functions: Map<string, Fn>, from: Map<string, string>): boolean {
  for (const [name, fn] of Object.entries(exports)) {
    if (name === 'default' || typeof fn !== 'function') continue
    const other = from.get(name)
    if (other !== undefined) {
      post({ type: 'loadError', module, message: `the worker module ${module} exports a function named "${name}", as ${other} does` })
      return false
    }
    from.set(name, module)
    functions.set(name, fn as Fn)
  }
  return true
}

async function load (bundled: Record<string, object>, urls: string[], functions: Map<string, Fn>): Promise<boolean> {
  const from = new Map<string, string>()
  for (const [label, exports] of Object.entries(bundled)) {
    if (!offer(label, exports as Record<string, unknown>, functions, from)) return false
  }
  for (const url of urls) {
    post({ type: 'loading', module: url })
    let mod: Record<string, unknown>
    try {
      mod = await import(/* @vite-ignore */ url) as Record<string, unknown>
    } catch (err) {
      const e = serializeError(err)
      post({ type: 'loadError', module: url, message: `cannot load the worker module ${url}: ${e.name}: ${e.message}`, error: e })
      return false
    }
    if (!offer(url, mod, functions, from)) return false
  }
  return true
}

async function call (functions: Map<string, Fn>, msg: Extract<ToWorker, { type: 'call' }>): Promise<void> {
  let value: unknown
  try {
    const fn = functions.get(msg.name)
    if (fn === undefined) throw new Error(`no function "${msg.name}" in this worker`)
    value = await fn(...msg.args)
  } catch (err) {
    post({ type: 'error', id: msg.id, error: serializeError(err) })
    return
  }
  // Binary results move to the caller: the function gave them up by returning them.
  const transfer = transferablesOf(value)
  try {
    post({ type: 'result', id: msg.id, value }, transfer)
    return
  } catch (err) {
    // Some buffers cannot move (a WebAssembly memory's): copy those.
    if (transfer.length === 0) {
      // A result that cannot be cloned (a function, a symbol...).
      post({ type: 'error', id: msg.id, error: serializeError(err) })
      return
    }
  }
  try {
    post({ type: 'result', id: msg.id, value })
  } catch (err) {
    post({ type: 'error', id: msg.id, error: serializeError(err) })
  }
}

/** A name no other worker of this origin (in any tab) holds. */
function lockName (): string {
  return `refmesh-worker:${crypto.randomUUID()}`
}

/**
 * Serves calls in this worker: `bundled` maps a label (for messages) to a
 * module namespace built into the entry; the pool adds module URLs to import.
 * Call once, synchronously, from the worker's entry script.
 */
export function serveFunctions (bundled: Record<string, object> = {}): void {
  const functions = new Map<string, Fn>()
  let initialised = false
  scope.addEventListener('message', event => {
    const msg = event.data
    if (msg.type === 'init' && !initialised) {
      initialised = true
      load(bundled, msg.modules, functions).then(ok => {
        if (ok) post({ type: 'ready', names: [...functions.keys()] })
      }, (err: unknown) => {
        post({ type: 'loadError', module: '', message: `cannot load the worker modules: ${String(err)}`, error: serializeError(err) })
      })
    } else if (msg.type === 'call') {
      void call(functions, msg)
    }
  })
  scope.addEventListener('error', event => {
    event.preventDefault()
    post({ type: 'fatal', error: serializeError(event.error ?? new Error(event.message)) })
  })
  scope.addEventListener('unhandledrejection', event => {
    event.preventDefault()
    post({ type: 'fatal', error: serializeError(event.reason) })
  })
  // A worker that closes itself or is killed sends nothing: its pool learns it
  // is gone when the lock it holds for life is released.
  if (typeof navigator.locks?.request !== 'function') {
    post({ type: 'hello' })
    return
  }
  const lock = lockName()
  navigator.locks.request(lock, async () => {
    post({ type: 'hello', lock })
    await new Promise(() => {})
  }).catch((err: unknown) => {
    post({ type: 'fatal', error: serializeError(err) })
  })
}
