/**
 * A pool worker (see worker-pool.ts): imports the function modules, reports
 * the functions they export, then runs the calls posted to it, one at a time.
 */
import { parentPort, workerData, isMarkedAsUntransferable } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'
import type { FromWorker, ToWorker } from '../core/worker-pool.ts'
import { serializeError } from '../core/thread-errors.ts'

type Fn = (...args: unknown[]) => unknown

const port = parentPort!
const { modules } = workerData as { modules: string[] }
const functions = new Map<string, Fn>()

function post (msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer)
}

/**
 * The plain (unshared) ArrayBuffers of a result: the result itself, or the
 * values directly inside it (array items, object properties, Map values, Set
 * items). They move to the caller instead of being copied; the function gives
 * them up by returning them. Shared memory is shared anyway; buffers Node marks
 * untransferable (its Buffer pool) are copied.
 */
function transferablesOf (value: unknown): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>()
  const add = (v: unknown): void => {
    const buf = v instanceof ArrayBuffer ? v : ArrayBuffer.isView(v) ? v.buffer : undefined
    if (!(buf instanceof ArrayBuffer) || buf.detached || isMarkedAsUntransferable(buf)) return
    out.add(buf)
  }
  if (value === null || typeof value !== 'object') return []
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) add(value)
  else if (Array.isArray(value)) value.forEach(add)
  else if (value instanceof Map) value.forEach(add)
  else if (value instanceof Set) value.forEach(add)
  else Object.values(value).forEach(add)
  return [...out]
}

async function load (): Promise<boolean> {
  const from = new Map<string, string>()
  for (const file of modules) {
    post({ type: 'loading', module: file })
    let mod: Record<string, unknown>
    try {
      mod = await import(pathToFileURL(file).href) as Record<string, unknown>
    } catch (err) {
      const e = serializeError(err)
      post({ type: 'loadError', module: file, message: `cannot load the worker module ${file}: ${e.name}: ${e.message}`, error: e })
      return false
    }
    for (const [name, fn] of Object.entries(mod)) {
      if (name === 'default' || typeof fn !== 'function') continue
      const other = from.get(name)
      if (other !== undefined) {
        post({ type: 'loadError', module: file, message: `the worker module ${file} exports a function named "${name}", as ${other} does` })
        return false
      }
      from.set(name, file)
      functions.set(name, fn as Fn)
    }
  }
  return true
}

async function call (msg: Extract<ToWorker, { type: 'call' }>): Promise<void> {
  let value: unknown
  try {
    const fn = functions.get(msg.name)
    if (fn === undefined) throw new Error(`no function "${msg.name}" in this worker`)
    value = await fn(...msg.args)
  } catch (err) {
    post({ type: 'error', id: msg.id, error: serializeError(err) })
    return
  }
  try {
    post({ type: 'result', id: msg.id, value }, transferablesOf(value))
  } catch (err) {
    // A result that cannot be cloned (a function, a symbol...).
    post({ type: 'error', id: msg.id, error: serializeError(err) })
  }
}

if (await load()) {
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'call') void call(msg)
  })
  post({ type: 'ready', names: [...functions.keys()] })
}
