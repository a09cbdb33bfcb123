/** Memory-aware call admission (core/admission.ts), one module alone. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryAdmission } from '../core/admission.ts'

const MiB = 2 ** 20

async function settled (): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
}

test('a new function\'s calls start one at a time until one has measured its result; then as many as the room holds', async () => {
  let room = 10 * MiB
  const admission = new MemoryAdmission({ room: () => room, maxWaitMs: 60_000, freeing: () => false })
  const first = await admission.start('make', 0)
  const second: { done?: (bytes?: number) => void } = {}
  const pending = admission.start('make', 0).then(done => { second.done = done })
  await settled()
  assert.equal(second.done === undefined, true, 'the second call waits while the first measures')
  first(4 * MiB)
  await pending
  assert.ok(second.done !== undefined)
  // 4 MiB expected from the started call: one more fits in 10 MiB, a third does not.
  assert.equal(admission.check('make'), 'start')
  const third = await admission.start('make', 0)
  assert.equal(admission.check('make'), 'full')
  // Arguments a call brings in count too: 4 MiB expected (the second call) + 4 MiB + its arguments.
  third(4 * MiB)
  assert.equal(admission.check('make', 2 * MiB), 'start')
  assert.equal(admission.check('make', 3 * MiB), 'full')
  room = 20 * MiB
  assert.equal(admission.check('make', 7 * MiB), 'start')
  second.done?.(4 * MiB)
})

test('past its wait bound a call starts anyway, unless memory is being freed; an abort ends the wait', async () => {
  let freeing = true
  const admission = new MemoryAdmission({ room: () => 0, maxWaitMs: 100, freeing: () => freeing })
  const measured = await admission.start('make', 0)
  measured(4 * MiB)
  const running = await admission.start('other', 0)
  const started = performance.now()
  let forced = false
  const waiting = admission.start('make', 0).then(done => { forced = true; return done })
  await new Promise(resolve => setTimeout(resolve, 250))
  assert.equal(forced, false, 'no forced start while spills are in flight')
  freeing = false
  admission.recheck()
  const done = await waiting
  assert.ok(performance.now() - started >= 100)
  done(4 * MiB)
  const controller = new AbortController()
  freeing = true
  const aborted = admission.start('make', 0, controller.signal)
  controller.abort(new Error('caller gave up'))
  await assert.rejects(aborted, { name: 'AbortError' })
  running()
})

test('admission off (`admission: false`, `refmesh peer --no-admission`, for comparison): every call starts at once, whatever the room', async () => {
  const admission = new MemoryAdmission({ room: () => 0, maxWaitMs: 60_000, freeing: () => true, enabled: false })
  const started = await Promise.all(Array.from({ length: 8 }, async () => await admission.start('make', 64 * MiB)))
  assert.equal(started.length, 8)
  assert.equal(admission.check('make', 64 * MiB), 'start')
  // The same with admission on: once one call has started, the next waits.
  const on = new MemoryAdmission({ room: () => 0, maxWaitMs: 60_000, freeing: () => true })
  await on.start('make', 64 * MiB)
  assert.equal(on.check('make', 64 * MiB), 'wait')
})

test('a started call that blocks lends its share: a call of the same function starts meanwhile, and it takes the share back when it resumes', async () => {
  const admission = new MemoryAdmission({ room: () => 0, maxWaitMs: 60_000, freeing: () => false })
  const parent = await admission.start('tree', 0)
  let started = false
  const childStarted = admission.start('tree', 0).then(done => { started = true; return done })
  await settled()
  assert.equal(started, false, 'a second call of a function being measured waits')
  // The parent blocks on its child (get or wait): the child starts.
  const takeBack = parent.lend()
  const child = await childStarted
  // Two gets at once lend once; the share comes back with the last.
  const takeBackToo = parent.lend()
  child(0)
  takeBack()
  assert.equal(admission.check('tree', 1), 'start', 'still lent: nothing is counted as started')
  takeBackToo()
  // Resumed, it counts again: with its result's size known (0 bytes) and no room, another call must wait.
  assert.equal(admission.check('tree', 1), 'full')
  parent(0)
  assert.equal(admission.check('tree', 1), 'start')
  // A call that finished while lent is not given back twice.
  const late = await admission.start('tree', 0)
  const lateBack = late.lend()
  late(0)
  lateBack()
  assert.equal(admission.check('tree', 1), 'start')
})
