/**
 * Multiple return values (`options({ returns: n })`): n Refs per call, each an
 * object of its own owned by the caller; a wrong count fails all n; lineage runs
 * the call once for every lost sibling. Real peer processes, one SIGKILLed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Ref } from '../node/index.ts'
import { ReturnCountError } from '../node/index.ts'
import { splitReturns } from '../core/returns.ts'
import { startMesh } from './helpers.ts'
import { pattern } from './fixtures/functions.ts'
import type { Counter } from './fixtures/functions.ts'

type Split = (n: number, size: number, seed: number) => Uint8Array[]
const KiB = 1024

test('splitReturns: an array or a generator of exactly n values; anything else is ReturnCountError', async () => {
  assert.deepEqual(await splitReturns([1, 2, 3], 3, 'f'), [1, 2, 3])
  assert.deepEqual(await splitReturns((function * () { yield 'a'; yield 'b' })(), 2, 'f'), ['a', 'b'])
  assert.deepEqual(await splitReturns((async function * () { yield 1; yield 2 })(), 2, 'f'), [1, 2])
  let closed = false
  const endless = (function * () { try { for (let i = 0; ; i++) yield i } finally { closed = true } })()
  await assert.rejects(splitReturns(endless, 3, 'f'), ReturnCountError)
  assert.ok(closed, 'a generator that gives too many is closed')
  await assert.rejects(splitReturns([1, 2], 3, 'f'), /returned 2 values/)
  await assert.rejects(splitReturns('abc', 3, 'f'), /returned a string/)
  await assert.rejects(splitReturns(new Uint8Array(3), 3, 'f'), /returned a Uint8Array/)
  await assert.rejects(splitReturns({ 0: 1, 1: 2, 2: 3 }, 3, 'f'), ReturnCountError)
})

test('returns: n Refs per call, each pulled on its own; a wrong count fails all n; actors too; lost siblings rebuilt by one re-execution of the call', async () => {
  const t = await startMesh(3)
  try {
    const [a] = t.peers
    const { caller } = t
    // The tuple type follows the function's return type.
    const pair: [Ref<number>, Ref<number>] = caller.fn<(made: number) => [number, number]>('returnsCount').options({ returns: 2 }).remote(2)
    const [x, y] = pair
    assert.deepEqual([await caller.get(x, { timeoutMs: 30_000 }), await caller.get(y, { timeoutMs: 30_000 })], [0, 1])
    assert.equal(x.owner, caller.peerId, 'the caller owns every result')
    const gen = caller.fn<(n: number) => Generator<string>>('splitGenerator').options({ returns: 3 }).remote(3)
    assert.equal(gen.length, 3)
    assert.deepEqual(await Promise.all(gen.map(async r => await caller.get(r, { timeoutMs: 30_000 }))), ['part 0', 'part 1', 'part 2'])
    const [one] = caller.fn<(made: number) => number[]>('returnsCount').options({ returns: 1 }).remote(1)
    assert.equal(await caller.get(one, { timeoutMs: 30_000 }), 0, 'returns: 1 gives one Ref to the only value, not to an array')

    // Three values asked for, four made: every Ref fails with the typed error.
    const wrong = caller.fn<(made: number) => number[]>('returnsCount').options({ returns: 3 }).remote(4)
    for (const r of wrong) await assert.rejects(caller.get(r, { timeoutMs: 30_000 }), (err: Error) => err instanceof ReturnCountError && /returned 4 values/.test(err.message))
    assert.throws(() => caller.fn('returnsCount').options({ returns: 0 }), RangeError)

    const counter = await caller.actor<Counter>('Counter').create(10)
    const [c0, c1, c2] = counter.range.options({ returns: 3 }).remote(3)
    assert.deepEqual([await caller.get(c0), await caller.get(c1), await caller.get(c2)], [10, 11, 12])
    counter.release()

    // Four 256 KiB results (each stored on the mapper, not inline) made on a, which dies
    // after the call finished and before any is read: one re-execution makes all four.
    const runsElsewhere = async (): Promise<number> => {
      let n = 0
      for (const p of t.peers.slice(1)) n += await caller.get(caller.fn<() => number>('splitRuns').options({ peer: p.peer }).remote(), { timeoutMs: 30_000 })
      return n
    }
    assert.equal(await runsElsewhere(), 0)
    const parts = caller.fn<Split>('split').options({ returns: 4, peer: a.peer }).remote(4, 256 * KiB, 40)
    const { ready } = await caller.wait(parts, { timeoutMs: 30_000 })
    assert.equal(ready.length, 4)
    assert.ok(parts.every(p => caller.stats().store.keys.includes(p.key) === false), 'the values stayed on the mapper')
    const before = caller.stats().calls.reconstructions
    await a.kill('SIGKILL')
    // Read one by one: the first read finds all four lost and rebuilds them at once.
    for (const [i, p] of parts.entries()) assert.deepEqual(await caller.get(p, { timeoutMs: 60_000 }), pattern(256 * KiB, 40 + i))
    assert.equal(caller.stats().calls.reconstructions - before, 1, 'one reconstruction for the four siblings')
    assert.equal(await runsElsewhere(), 1, 'the map ran exactly once more')

    for (const r of [x, y, one, ...gen, ...wrong, c0, c1, c2, ...parts]) r.release()
  } finally {
    await t.close()
  }
})
