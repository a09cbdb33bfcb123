/**
 * Ownership: the owner frees every copy once no handle, call or borrower needs
 * an object (liveness), and never frees one that is still referenced (safety).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { shared } from '../node/index.ts'
import type { Ref } from '../node/index.ts'
import { startMesh, waitFor, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

type Checksum = (x: Uint8Array) => { length: number, checksum: number }
type Delegate = (r: Ref<Uint8Array>, peer?: string) => Ref<{ length: number, checksum: number }>
type Wrap = (r: Ref<unknown>) => { inner: Ref<unknown>, note: string }
type PutOwn = (n: number) => { made: Ref<Uint8Array> }
type SumNested = (items: Array<{ v: Ref<number> }>) => number
type Noop = (x: unknown) => unknown
const MiB = 2 ** 20

test('delegation: a callee passes a SharedRef on to another call without fetching the value', async () => {
  const t = await startMesh(2)
  try {
    const [middle, worker] = t.peers
    const x = t.caller.put(pattern(8 * MiB, 5))
    const outer = t.caller.fn<Delegate>('delegate').options({ peer: middle.peer }).remote(shared(x), worker.peer)
    const inner = await t.caller.get(outer, { timeoutMs: 30_000 })
    assert.equal(inner.owner, middle.peer, 'the nested call\'s result is owned by the peer that made the call')
    assert.deepEqual(await t.caller.get(inner, { timeoutMs: 30_000 }), { length: 8 * MiB, checksum: checksum(pattern(8 * MiB, 5)) })

    const m = await t.stats(middle.peer)
    assert.equal(m.traffic.chunkIn, 0, 'the delegating peer received no chunk')
    assert.equal(m.transfer.objectsPulled, 0)
    const w = await t.stats(worker.peer)
    assert.ok(w.trafficByPeer[t.caller.peerId].chunkIn >= 8 * MiB, 'the worker pulled x from its owner')

    inner.release()
    outer.release()
    x.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('reclamation: after 1,000+ calls mixing put, nested Refs, SharedRefs and dropped handles, every store is empty; held Refs survive', async () => {
  const t = await startMesh(3)
  try {
    const { caller } = t
    const noop = caller.fn<Noop>('noop')
    const wrap = caller.fn<Wrap>('wrap')
    const putOwn = caller.fn<PutOwn>('putOwn')
    const sumNested = caller.fn<SumNested>('sumNested')
    const sum = caller.fn<Checksum>('checksum')
    const delegate = caller.fn<Delegate>('delegate')

    // Held through the whole workload: must survive while everything around it is freed.
    const keptBig = caller.put(pattern(2 * MiB, 11))
    const keptNested = noop.remote({ list: [keptBig.dup(), caller.put(123)] })
    const keptRemote = putOwn.remote(300 * 1024)

    // One round per function call, so a dropped round's handles are unreachable once it returns.
    const runRound = async (round: number): Promise<number> => {
      const refs: Ref[] = []
      const small = Array.from({ length: 4 }, (_, i) => caller.put(round * 10 + i))
      const big = caller.put(pattern(200 * 1024 + round, round))
      refs.push(...small, big)
      const batch: Array<Ref<unknown>> = [
        noop.remote({ nested: small[0], deeper: [{ ref: small[1] }] }),
        wrap.remote(shared(big)),
        wrap.remote(shared(small[2])),
        putOwn.remote(100 * 1024),
        putOwn.remote(10),
        sumNested.remote(small.map(v => ({ v }))),
        sum.remote(big),
        sum.remote(pattern(100 * 1024, round)),
        delegate.remote(shared(big)),
        noop.remote(small[3]),
        noop.remote([keptBig, round]),
        sum.remote(keptBig),
        noop.remote('x'.repeat(70 * 1024)),
        sumNested.remote([{ v: small[0] }, { v: small[0] }]),
        wrap.remote(shared(keptBig)),
        noop.remote(round),
        noop.remote({ round }),
        noop.remote(null),
        wrap.remote(shared(small[1])),
        noop.remote(new Float64Array([round, 1.5]))
      ]
      refs.push(...batch)
      const { ready } = await caller.wait(batch, { timeoutMs: 60_000 })
      assert.equal(ready.length, batch.length)
      // Read some results, including nested Refs, and drop what we read.
      const wrapped = await caller.get(batch[1] as Ref<{ inner: Ref<Uint8Array> }>)
      assert.equal((await caller.get(wrapped.inner)).length, 200 * 1024 + round)
      const own = await caller.get(batch[3] as Ref<{ made: Ref<Uint8Array> }>)
      assert.equal((await caller.get(own.made)).length, 100 * 1024)
      assert.equal(await caller.get(batch[5] as Ref<number>), small.reduce((a, _v, i) => a + round * 10 + i, 0))
      const delegated = await caller.get(batch[8] as Ref<Ref<{ checksum: number }>>)
      assert.equal((await caller.get(delegated)).checksum, checksum(pattern(200 * 1024 + round, round)))
      // Half the rounds release explicitly; the others drop the handles for the GC backstop.
      if (round % 2 === 0) {
        for (const r of [...refs, wrapped.inner, own.made, delegated]) r.release()
      }
      return batch.length
    }
    let calls = 0
    for (let round = 0; round < 50; round++) calls += await runRound(round)
    assert.ok(calls >= 1000, `${calls} calls`)

    // Only the held objects (and copies of them) may remain anywhere.
    const nestedHeld = await caller.get(keptNested as Ref<{ list: [Ref<Uint8Array>, Ref<number>] }>)
    const remoteHeld = await caller.get(keptRemote)
    const keptKeys = new Set([keptBig, keptNested, keptRemote, nestedHeld.list[1], remoteHeld.made].map(r => r.key))
    await waitFor('only the held objects to remain', async () => {
      gc()
      const all = [caller.stats(), ...await Promise.all(t.peers.map(async p => await t.stats(p.peer)))]
      const stray = all.flatMap(s => s.store.keys.filter(k => !keptKeys.has(k)))
      return stray.length === 0 ? true : undefined
    }, 30_000, 200)
    for (const r of [...nestedHeld.list, remoteHeld.made]) r.release()

    // Safety: everything held still reads back.
    assert.equal((await caller.get(keptBig)).length, 2 * MiB)
    const nested = await caller.get(keptNested as Ref<{ list: [Ref<Uint8Array>, Ref<number>] }>)
    assert.equal((await caller.get(nested.list[0])).length, 2 * MiB)
    assert.equal(await caller.get(nested.list[1]), 123)
    const remote = await caller.get(keptRemote)
    assert.equal(checksum(await caller.get(remote.made)), checksum(pattern(300 * 1024, 7)))

    for (const r of [keptBig, keptNested, keptRemote, nested.list[0], nested.list[1], remote.made]) r.release()
    await waitFor('reclamation', () => { gc(); return true }, 1000)
    await waitForEmptyStores(t, 30_000)
  } finally {
    await t.close()
  }
})

// Nothing keeps a dropped handle from the GC backstop: not the TimeoutError of a get
// or wait, which outlives them (until its timer fires) and must not pin the closures
// on its stack that hold their Refs (the regression since 09547e5), nor the codec's
// Ref sink of the last value it encoded (here x, the call's argument).
test('GC backstop: Refs dropped after a get and a wait with long timeouts are collected before those timeouts end', async () => {
  const t = await startMesh(1)
  try {
    // One function call, so its handles are unreachable once it returns.
    const readAndDrop = async (): Promise<void> => {
      const x = t.caller.put(pattern(200 * 1024, 3))
      const sum = t.caller.fn<Checksum>('checksum').remote(x)
      const { ready } = await t.caller.wait([sum, x], { timeoutMs: 600_000 })
      assert.equal(ready.length, 2)
      assert.equal((await t.caller.get(sum, { timeoutMs: 600_000 })).checksum, checksum(pattern(200 * 1024, 3)))
    }
    await readAndDrop()
    await waitFor('the dropped handles to be collected and their objects freed', async () => {
      gc()
      const all = [t.caller.stats(), await t.stats(t.peers[0].peer)]
      return all.every(s => s.store.objects === 0 && s.refs.owned === 0 && s.refs.borrowed === 0) ? true : undefined
    }, 10_000, 100)
  } finally {
    await t.close()
  }
})

test('a released Ref cannot be read', async () => {
  const t = await startMesh(1)
  try {
    const r = t.caller.put(42)
    assert.equal(await t.caller.get(r), 42)
    r.release()
    await assert.rejects(t.caller.get(r), { name: 'ReleasedRefError' })
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

type PutFor = (owner: string, n: number) => { made: Ref<Uint8Array> }

test('durable put: an object put with another peer as owner outlives its maker (SIGKILL), and is freed when no Ref is left', async () => {
  const t = await startMesh(3)
  try {
    const [maker, owner, reader] = t.peers
    const out = t.caller.fn<PutFor>('putFor').options({ peer: maker.peer }).remote(owner.peer, 6 * MiB)
    const { made } = await t.caller.get(out, { timeoutMs: 30_000 })
    out.release()
    assert.equal(made.owner, owner.peer, 'the Ref names the owner it was handed to')
    const o = await t.stats(owner.peer)
    assert.ok(o.store.objects >= 1 && o.trafficByPeer[maker.peer].chunkIn >= 6 * MiB, 'the owner copied the object from its maker')

    await maker.kill('SIGKILL')
    const sum = await t.caller.get(t.caller.fn<Checksum>('checksum').options({ peer: reader.peer }).remote(made), { timeoutMs: 30_000 })
    assert.deepEqual(sum, { length: 6 * MiB, checksum: checksum(pattern(6 * MiB, 9)) }, 'readable after its maker died')
    assert.deepEqual(await t.caller.get(made, { timeoutMs: 30_000 }), pattern(6 * MiB, 9))

    made.release()
    await waitFor('the owner frees the object once the last Ref is dropped', async () =>
      (await t.stats(owner.peer)).store.objects === 0 && (await t.stats(reader.peer)).store.objects === 0 ? true : undefined, 20_000)
  } finally {
    await t.close()
  }
})

test('durable put to a peer that does not exist: the Ref fails with OwnerDiedError and nothing is left behind', async () => {
  const t = await startMesh(1)
  try {
    const ghost = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
    const r = t.caller.put(pattern(2 * MiB, 3), { owner: ghost, timeoutMs: 5_000 })
    await assert.rejects(t.caller.get(r, { timeoutMs: 20_000 }), (err: Error) => err.name === 'OwnerDiedError')
    r.release()
    assert.equal(t.caller.stats().store.objects, 0)
  } finally {
    await t.close()
  }
})
