/**
 * Errors as they cross a thread boundary (Node worker_threads, Web Workers):
 * structured clone keeps only built-in error classes and drops custom names,
 * codes and causes, so both sides send this plain form instead.
 */

export interface SerializedError {
  name: string
  message: string
  stack: string
  code?: string | number
  cause?: SerializedError
}

/** How deep a chain of causes is kept. */
const MAX_CAUSES = 4

function safeString (v: unknown): string {
  try {
    return String(v)
  } catch {
    return Object.prototype.toString.call(v)
  }
}

/** An error of another realm (a worker's vm context) fails `instanceof Error`; its tag does not. */
function isError (v: unknown): v is Error {
  return v instanceof Error || Object.prototype.toString.call(v) === '[object Error]'
}

export function serializeError (err: unknown, depth = 0): SerializedError {
  // In browsers DOMException is an Error too (QuotaExceededError, NotFoundError...).
  if (isError(err)) {
    const e = err as Error & { code?: unknown }
    const out: SerializedError = { name: safeString(e.name), message: safeString(e.message), stack: typeof e.stack === 'string' ? e.stack : '' }
    if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code
    if (e.cause !== undefined && depth < MAX_CAUSES) out.cause = serializeError(e.cause, depth + 1)
    return out
  }
  return { name: 'Error', message: safeString(err), stack: '' }
}

const ERROR_CLASSES: Record<string, ErrorConstructor> = {
  Error,
  RangeError,
  TypeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError
}

/** The worker's error, with its name, message and stack (a built-in class when the name is one). */
export function deserializeError (e: SerializedError): Error {
  const Ctor = Object.hasOwn(ERROR_CLASSES, e.name) ? ERROR_CLASSES[e.name] : Error
  const err = e.cause !== undefined ? new Ctor(e.message, { cause: deserializeError(e.cause) }) : new Ctor(e.message)
  if (err.name !== e.name) Object.defineProperty(err, 'name', { value: e.name, writable: true, configurable: true, enumerable: false })
  Object.defineProperty(err, 'stack', { value: e.stack !== '' ? e.stack : `${e.name}: ${e.message}`, writable: true, configurable: true, enumerable: false })
  if (e.code !== undefined) (err as Error & { code?: string | number }).code = e.code
  return err
}
