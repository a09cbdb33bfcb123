/**
 * Multicast (DESIGN.md section 3): one object to many receivers, all real
 * processes. Receivers pull from each other as well as from the owner, so the
 * owner uploads far less than one copy per receiver, and a holder killed
 * mid-broadcast costs only its chunks in flight.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startMesh, waitForEmptyStores } from './helpers.ts'
import type { TestMesh } from './helpers.ts'
import type { Ref } from '../node/index.ts'
import { checksum, pattern } from './fixtures/functions.ts'

const MiB = 2 ** 20
type Make = (n: number, seed: number) => Uint8Array
type Checksum = (x: Uint8Array) => { length: number, checksum: number }

async function chunkOut (t: TestMesh, peer: string): Promise<number> {
  return (await t.stats(peer)).traffic.chunkOut
}

/** Each peer in `peers` holds the object: a checksum call required there reads it locally, and is right. */
async function assertHeldEverywhere (t: TestMesh, x: Ref<Uint8Array>, peers: string[], size: number, seed: number): Promise<void> {
  const expected = { length: size, checksum: checksum(pattern(size, seed)) }
  for (const peer of peers) {
    const before = (await t.stats(peer)).args.fetchedBytes
    using sum = t.caller.fn<Checksum>('checksum').options({ peer, timeoutMs: 60_000 }).remote(x)
    assert.deepEqual(await t.caller.get(sum, { timeoutMs: 60_000 }), expected, `the copy on ${peer}`)
    assert.equal((await t.stats(peer)).args.fetchedBytes, before, `${peer} already held the object`)
  }
}

test('one owner, six receivers: every receiver ends with the object, and the owner uploads at most 3 copies', async () => {
  const t = await startMesh(7)
  try {
    const [owner, ...receivers] = t.peers
    const size = 32 * MiB
    const x = t.caller.fn<Make>('make').options({ peer: owner.peer }).remote(size, 3)
    await t.caller.wait([x], { timeoutMs: 30_000 })
    const before = await chunkOut(t, owner.peer)
    const progress: string[] = []
    const { ready, failed } = await t.caller.broadcast(x, {
      peers: receivers.map(r => r.peer),
      timeoutMs: 120_000,
      onProgress: p => { progress.push(p.peer) }
    })
    assert.deepEqual(failed, [])
    assert.deepEqual(new Set(ready), new Set(receivers.map(r => r.peer)))
    assert.equal(progress.length, 6, 'progress was reported for every receiver')
    const uploaded = await chunkOut(t, owner.peer) - before
    assert.ok(uploaded <= 3 * size, `the owner uploaded ${(uploaded / size).toFixed(2)} copies`)
    const servedByReceivers = await Promise.all(receivers.map(async r => await chunkOut(t, r.peer)))
    assert.ok(servedByReceivers.filter(n => n > 0).length >= 3, 'receivers served each other')
    await assertHeldEverywhere(t, x, receivers.map(r => r.peer), size, 3)
    x.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('a holder killed with SIGKILL mid-broadcast: every surviving receiver still completes', async () => {
  const t = await startMesh(7)
  try {
    const [owner, ...receivers] = t.peers
    const size = 48 * MiB
    const x = t.caller.fn<Make>('make').options({ peer: owner.peer }).remote(size, 4)
    await t.caller.wait([x], { timeoutMs: 30_000 })
    const broadcast = t.caller.broadcast(x, { peers: receivers.map(r => r.peer), timeoutMs: 120_000 })
    // The first receiver seen part-way (it holds some chunks and serves them) is the victim.
    let victim: (typeof receivers)[number] | undefined
    const deadline = Date.now() + 60_000
    while (victim === undefined && Date.now() < deadline) {
      for (const r of receivers) {
        const s = await t.stats(r.peer)
        if (s.traffic.chunkIn >= size / 8 && s.traffic.chunkIn <= size / 2) { victim = r; break }
      }
    }
    assert.ok(victim !== undefined, 'a receiver was caught part-way')
    await victim.kill('SIGKILL')
    const { ready, failed } = await broadcast
    const survivors = receivers.filter(r => r !== victim).map(r => r.peer)
    assert.deepEqual(new Set(ready), new Set(survivors))
    assert.deepEqual(failed.map(f => f.peer), [victim.peer])
    await assertHeldEverywhere(t, x, survivors, size, 4)
    x.release()
  } finally {
    await t.close()
  }
})
