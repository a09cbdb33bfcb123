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

/**
 * Waiters of long-lived signals (a mesh's stop signal): one abort listener per
 * signal calls them all. Adding and removing an AbortSignal listener costs
 * a few us (Node tracks listeners for the GC), and raceSignal on the stop
 * signal runs at least once per call; a Set entry costs next to nothing. Only
 * for signals that live as long as their owner: the one listener stays until
 * the signal fires, which would keep a timeout or composite signal alive.
 */
const sharedWaiters = new WeakMap<AbortSignal, Set<() => void>>()

/** Marks `signal` as long-lived (see sharedWaiters): raceSignal on it keeps a Set entry, not a listener. */
export function shareSignal (signal: AbortSignal): void {
  if (signal.aborted || sharedWaiters.has(signal)) return
  const waiters = new Set<() => void>()
  sharedWaiters.set(signal, waiters)
  signal.addEventListener('abort', () => {
    sharedWaiters.delete(signal)
    for (const w of waiters) w()
    waiters.clear()
  }, { once: true })
}

/** Resolves with `promise`, or rejects with the typed reason when `signal` fires first. */
export function raceSignal<T> (promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  // Not an async function: that would wrap every race, several per call, in one more promise.
  if (signal === undefined) return promise
  if (signal.aborted) {
    // The loser may still reject; nobody else will handle it.
    promise.catch(() => {})
    return Promise.reject(abortReason(signal, what))
  }
  const waiters = sharedWaiters.get(signal)
  // One promise settled by whichever comes first (not Promise.race over a second one):
  // this runs several times per call.
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(abortReason(signal, what)) }
    if (waiters !== undefined) waiters.add(onAbort)
    else signal.addEventListener('abort', onAbort, { once: true })
    const done = (): void => {
      if (waiters !== undefined) waiters.delete(onAbort)
      else signal.removeEventListener('abort', onAbort)
    }
    promise.then(value => { done(); resolve(value) }, (err: unknown) => { done(); reject(err) })
  })
}
