/** A pool worker: imports the function modules, then runs calls posted to it. */
import { parentPort, workerData } from 'node:worker_threads'
import { pathToFileURL } from 'node:url'

type Fn = (...args: unknown[]) => unknown
interface Call { id: number, name: string, args: unknown[] }

const functions = new Map<string, Fn>()
const { modules } = workerData as { modules: string[] }

function transferablesOf (value: unknown): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>()
  const add = (v: unknown): void => {
    if (v instanceof ArrayBuffer) out.add(v)
    else if (ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer && v.byteLength === v.buffer.byteLength) out.add(v.buffer)
  }
  add(value)
  if (Array.isArray(value)) value.forEach(add)
  else if (value !== null && typeof value === 'object' && !ArrayBuffer.isView(value)) Object.values(value).forEach(add)
  return [...out]
}

try {
  for (const file of modules) {
    const mod = await import(pathToFileURL(file).href) as Record<string, unknown>
    for (const [name, fn] of Object.entries(mod)) {
      if (name === 'default' || typeof fn !== 'function') continue
      if (functions.has(name)) throw new Error(`two modules export a function named "${name}" (the second is ${file})`)
      functions.set(name, fn as Fn)
    }
  }
  parentPort!.postMessage({ ready: [...functions.keys()] })
} catch (err) {
  parentPort!.postMessage({ loadError: { message: (err as Error).message, stack: (err as Error).stack } })
}

parentPort!.on('message', (call: Call) => {
  void (async () => {
    try {
      const fn = functions.get(call.name)
      if (fn === undefined) throw new Error(`no function "${call.name}" in this worker`)
      const value = await fn(...call.args)
      // Whole, unshared buffers move back without a copy.
      parentPort!.postMessage({ id: call.id, value }, transferablesOf(value))
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      parentPort!.postMessage({ id: call.id, error: { name: e.name, message: e.message, stack: e.stack ?? '' } })
    }
  })()
})
