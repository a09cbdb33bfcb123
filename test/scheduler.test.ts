/**
 * The gossip-based scheduler: calls run near their data, a joining peer is used,
 * a dead one is not, and a peer that cannot admit a call hands it back.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULTS } from '../node/index.ts'
import type { Ref } from '../node/index.ts'
import { spawnPeer } from '../node/local-cluster.ts'
import { FIXTURES, startMesh, waitFor, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

type Make = (n: number, seed?: number) => Uint8Array
type Checksum = (x: Uint8Array) => { length: number, checksum: number }
type Sleep = (ms: number) => number
const MiB = 2 ** 20

test('locality: calls over data spread on four peers run where their arguments are', async () => {
  const t = await startMesh(4)
  try {
    const make = t.caller.fn<Make>('make')
    const data: Ref<Uint8Array>[][] = t.peers.map(() => [])
    for (let j = 0; j < 4; j++) {
      t.peers.forEach((p, i) => data[i].push(make.options({ peer: p.peer }).remote(4 * MiB, i * 10 + j)))
    }
    await t.caller.wait(data.flat(), { timeoutMs: 60_000 })
    const sum = t.caller.fn<Checksum>('checksum')
    // Interleaved, as a real job would submit them; no placement hints from the user.
    const results: Array<[Ref<{ length: number, checksum: number }>, number]> = []
    for (let j = 0; j < 4; j++) t.peers.forEach((_p, i) => results.push([sum.remote(data[i][j]), i * 10 + j]))
    for (const [r, seed] of results) assert.deepEqual(await t.caller.get(r, { timeoutMs: 60_000 }), { length: 4 * MiB, checksum: checksum(pattern(4 * MiB, seed)) })

    const stats = await Promise.all(t.peers.map(async p => await t.stats(p.peer)))
    const local = stats.reduce((n, s) => n + s.args.localBytes, 0)
    const fetched = stats.reduce((n, s) => n + s.args.fetchedBytes, 0)
    assert.equal(local + fetched, 16 * 4 * MiB)
    assert.ok(local / (local + fetched) >= 0.9, `only ${(100 * local / (local + fetched)).toFixed(1)}% of argument bytes were read locally`)

    for (const [r] of results) r.release()
    for (const r of data.flat()) r.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('a joining peer is used for new calls; a peer killed with SIGKILL gets none once declared dead', async () => {
  const t = await startMesh(3)
  const joiner = await spawnPeer({ module: FIXTURES, bootstrap: [t.peers[1].addrs[0]] })
  try {
    const joinedAt = Date.now()
    await t.caller.waitForPeer(joiner.peer, { signal: AbortSignal.timeout(3 * DEFAULTS.heartbeatMs + 2_000) })
    assert.ok(Date.now() - joinedAt <= 3 * DEFAULTS.heartbeatMs + 2_000)

    const sleep = t.caller.fn<Sleep>('sleep')
    const burst = async (): Promise<void> => {
      const refs = Array.from({ length: 24 }, () => sleep.remote(100))
      for (const r of refs) assert.equal(await t.caller.get(r, { timeoutMs: 30_000 }), 100)
      for (const r of refs) r.release()
    }
    await burst()
    assert.ok((t.caller.stats().placed[joiner.peer] ?? 0) > 0, 'the new peer got calls')
    assert.ok((await t.stats(joiner.peer)).calls.executed > 0)

    const victim = t.peers[2]
    await victim.kill('SIGKILL')
    const killedAt = Date.now()
    const bound = (DEFAULTS.deadAfterBeats + 2) * DEFAULTS.heartbeatMs
    await waitFor('the killed peer to be declared dead', () => t.caller.peers().some(p => p.peer === victim.peer) ? undefined : true, bound + 2_000)
    assert.ok(Date.now() - killedAt <= bound + 2_000)
    const before = t.caller.stats().placed[victim.peer] ?? 0
    await burst()
    assert.equal(t.caller.stats().placed[victim.peer] ?? 0, before, 'no call went to the dead peer')
  } finally {
    await joiner.stop()
    await t.close()
  }
})

test('spillback: a peer with a tiny memory budget hands back calls whose arguments do not fit; they complete elsewhere', async () => {
  const t = await startMesh(1)
  const tiny = await spawnPeer({ module: FIXTURES, bootstrap: [t.peers[0].addrs[0]], storeCapacity: '1MiB' })
  try {
    await t.caller.waitForPeer(tiny.peer, { signal: AbortSignal.timeout(10_000) })
    const x = t.caller.put(pattern(4 * MiB, 3))
    const sum = t.caller.fn<Checksum>('checksum').options({ prefer: tiny.peer })
    const refs = Array.from({ length: 4 }, () => sum.remote(x))
    for (const r of refs) assert.deepEqual(await t.caller.get(r, { timeoutMs: 30_000 }), { length: 4 * MiB, checksum: checksum(pattern(4 * MiB, 3)) })
    const small = await t.stats(tiny.peer)
    assert.equal(small.calls.spilledBack, 4, 'the tiny peer handed every call back')
    assert.equal(small.calls.executed, 0)
    assert.equal(small.store.objects, 0, 'and never took the argument in')
    assert.equal((await t.stats(t.peers[0].peer)).calls.executed, 4)
    assert.equal(t.caller.stats().calls.spillbacksReceived, 4)
    for (const r of refs) r.release()
    x.release()
    await waitForEmptyStores({ ...t, peers: [...t.peers, tiny] })
  } finally {
    await tiny.stop()
    await t.close()
  }
})
