/** Timeouts are AbortSignals; these helpers turn them into the typed errors refmesh promises. */
import { AbortError, TimeoutError } from './errors.ts'

export interface AbortOptions {
  signal?: AbortSignal
}

/** A signal that fires on the caller's signal or after `timeoutMs` (0 or undefined: never). */
export function withTimeout (signal: AbortSignal | undefined, timeoutMs: number | undefined, what: string): AbortSignal | undefined {
  if (timeoutMs === undefined || timeoutMs <= 0 || !Number.isFinite(timeoutMs)) return signal
  const timeout = AbortSignal.timeout(timeoutMs)
  const timeoutError = new TimeoutError(`${what} timed out after ${timeoutMs} ms`)
  // The error lives as long as the timer, past the operation it bounds. Until
  // its stack is read, V8 keeps the functions on it, and a closure there keeps
  // what it captured (the Refs of a mesh.get or mesh.wait, which wrap theirs
  // in one for executor.blocked) from the GC backstop for the whole timeout:
  // formatted now, the stack is a string and holds nothing.
  void timeoutError.stack
  const timed = new AbortController()
  timeout.addEventListener('abort', () => timed.abort(timeoutError), { once: true })
  return signal === undefined ? timed.signal : AbortSignal.any([signal, timed.signal])
}

export function abortReason (signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason
  if (reason instanceof TimeoutError || reason instanceof AbortError) return reason
  if (reason instanceof Error && reason.name === 'TimeoutError') return new TimeoutError(`${what}: ${reason.message}`)
  return new AbortError(`${what} was aborted`)
}

/** Resolves with `promise`, or rejects with the typed reason when `signal` fires first. */
export async function raceSignal<T> (promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (signal === undefined) return await promise
  if (signal.aborted) {
    // The loser may still reject; nobody else will handle it.
    promise.catch(() => {})
    throw abortReason(signal, what)
  }
  // One promise settled by whichever comes first (not Promise.race over a second one):
  // this runs several times per call.
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(abortReason(signal, what)) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(value => {
      signal.removeEventListener('abort', onAbort)
      resolve(value)
    }, (err: unknown) => {
      signal.removeEventListener('abort', onAbort)
      reject(err)
    })
  })
}
