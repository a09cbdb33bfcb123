/**
 * Multiple return values (Ray's `num_returns`): a call made with
 * `options({ returns: n })` gives its caller n Refs at once, one per value the
 * function returns (an array of n, or a generator of n). Each is an object of
 * its own, owned by the caller, stored and pulled on its own; all n share one
 * lineage record, so when some are lost the owner runs the call once for all
 * of the lost ones (the others' values are discarded by the executor).
 */
import { ReturnCountError } from './errors.ts'
import type { Ref } from './ref.ts'

/** The Refs a call with `returns` gives: a tuple of Refs for a tuple type, an array of Refs for an array or a generator. */
export type RefsOf<R> = R extends readonly unknown[]
  ? { -readonly [K in keyof R]: Ref<R[K]> }
  : R extends Iterable<infer E> ? Array<Ref<E>>
    : R extends AsyncIterable<infer E> ? Array<Ref<E>> : Array<Ref<unknown>>

/** Checks a `returns` option: a whole number from 1 to `max`. */
export function checkReturns (returns: number, max: number): void {
  if (!Number.isSafeInteger(returns) || returns < 1 || returns > max) {
    throw new RangeError(`returns must be a whole number from 1 to ${max}, not ${String(returns)}`)
  }
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (typeof value !== 'object') return typeof value
  return (value as object).constructor?.name ?? 'object'
}

/**
 * Executor side: the n values a function made with `returns: n` returned.
 * An array is taken as it is; an iterator (a generator) or async iterator is
 * read until it has given n + 1 values at most. Any other count, or any other
 * kind of value (a string, a typed array, a plain object), is ReturnCountError.
 */
export async function splitReturns (value: unknown, n: number, fn: string): Promise<unknown[]> {
  let values: unknown[]
  if (Array.isArray(value)) {
    values = value
  } else if (value !== null && typeof value === 'object' && typeof (value as Iterator<unknown>).next === 'function' &&
    (Symbol.iterator in value || Symbol.asyncIterator in value)) {
    values = []
    const it = value as unknown as Iterator<unknown> | AsyncIterator<unknown>
    try {
      while (values.length <= n) {
        const step = await it.next()
        if (step.done === true) break
        values.push(step.value)
      }
    } finally {
      // A generator that would give more is closed (its finally blocks run).
      if (values.length > n) await it.return?.()
    }
    if (values.length > n) throw new ReturnCountError(`${fn} was called with returns: ${n} and its generator gave more than ${n} values`)
  } else {
    throw new ReturnCountError(`${fn} was called with returns: ${n} and returned a ${describe(value)}, not an array or generator of ${n} values`)
  }
  if (values.length !== n) throw new ReturnCountError(`${fn} was called with returns: ${n} and returned ${values.length} value${values.length === 1 ? '' : 's'}`)
  return values
}
