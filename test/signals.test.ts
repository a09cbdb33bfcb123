/** core/signals.ts: raceSignal on a long-lived (shared) signal keeps a Set entry per waiter, not an abort listener, and still rejects with the typed reason. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { raceSignal, shareSignal } from '../core/signals.ts'
import { AbortError } from '../core/errors.ts'

test('raceSignal on a shared signal: one listener for many waiters; all reject on abort, settled ones do not', async () => {
  const controller = new AbortController()
  const signal = controller.signal
  shareSignal(signal)
  const listeners = getEventListeners(signal, 'abort').length
  const never = new Promise<never>(() => {})
  const waiting = Array.from({ length: 100 }, async () => await raceSignal(never, signal, 'a wait'))
  // A race whose promise settles first resolves, and leaves nothing behind.
  assert.equal(await raceSignal(Promise.resolve(7), signal, 'a quick wait'), 7)
  assert.equal(getEventListeners(signal, 'abort').length, listeners, 'each wait added an abort listener')
  controller.abort()
  const outcomes = await Promise.allSettled(waiting)
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected')
    assert.ok((o as PromiseRejectedResult).reason instanceof AbortError, `rejected with ${String((o as PromiseRejectedResult).reason)}`)
  }
  // Aborted already: the race rejects at once.
  await assert.rejects(raceSignal(never, signal, 'a late wait'), AbortError)
})

test('raceSignal on an unshared signal still rejects on abort', async () => {
  const controller = new AbortController()
  const waiting = raceSignal(new Promise<never>(() => {}), controller.signal, 'a wait')
  controller.abort()
  await assert.rejects(waiting, AbortError)
})
