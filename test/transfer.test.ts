/** Transfer: large values stay where they were made and move straight to the peer that needs them, verified. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { spawnPeer, stopAll } from '../node/local-cluster.ts'
import { FIXTURES, startMesh, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

type Make = (n: number, seed?: number) => Uint8Array
type Checksum = (x: Uint8Array) => { length: number, checksum: number }

const MiB = 2 ** 20

test('x = f(); y = g(x) with x of 64 MiB: x moves from f\'s peer to g\'s, never through the caller', async () => {
  const t = await startMesh(2)
  try {
    const [p1, p2] = t.peers
    const before = t.caller.stats().traffic
    const x = t.caller.fn<Make>('make').options({ peer: p1.peer }).remote(64 * MiB, 3)
    const y = t.caller.fn<Checksum>('checksum').options({ peer: p2.peer }).remote(x)
    const result = await t.caller.get(y, { timeoutMs: 60_000 })
    assert.deepEqual(result, { length: 64 * MiB, checksum: checksum(pattern(64 * MiB, 3)) })

    const after = t.caller.stats().traffic
    const callerBytes = (after.controlIn + after.controlOut + after.chunkIn + after.chunkOut) -
      (before.controlIn + before.controlOut + before.chunkIn + before.chunkOut)
    assert.ok(callerBytes < 64 * 1024, `caller moved ${callerBytes} bytes; x is ${64 * MiB}`)
    assert.equal(after.chunkIn - before.chunkIn, 0)

    const s2 = await t.stats(p2.peer)
    assert.ok(s2.trafficByPeer[p1.peer].chunkIn >= 64 * MiB, 'g\'s peer pulled x from f\'s peer')
    const s1 = await t.stats(p1.peer)
    assert.equal(s1.trafficByPeer[t.caller.peerId]?.chunkOut ?? 0, 0, 'f\'s peer sent no chunk to the caller')

    x.release()
    y.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('a chunk corrupted in transit is detected, counted, and refetched from another holder', async () => {
  const t = await startMesh(1)
  const liar = await spawnPeer({ module: FIXTURES, entry: fileURLToPath(new URL('./fixtures/corrupting-peer.ts', import.meta.url)), bootstrap: [t.peers[0].addrs[0]] })
  const reader = await spawnPeer({ module: FIXTURES, bootstrap: [t.peers[0].addrs[0]] })
  try {
    const signal = AbortSignal.timeout(15_000)
    await t.caller.waitForPeer(liar.peer, { signal })
    await t.caller.waitForPeer(reader.peer, { signal })
    const [owner] = t.peers
    const expected = { length: 8 * MiB, checksum: checksum(pattern(8 * MiB, 9)) }
    const x = t.caller.fn<Make>('make').options({ peer: owner.peer }).remote(8 * MiB, 9)
    // The liar fetches an honest copy first, so it becomes a second holder.
    const first = t.caller.fn<Checksum>('checksum').options({ peer: liar.peer }).remote(x)
    assert.deepEqual(await t.caller.get(first, { timeoutMs: 30_000 }), expected)
    assert.equal((await t.stats(liar.peer)).transfer.badChunks, 0)

    const second = t.caller.fn<Checksum>('checksum').options({ peer: reader.peer }).remote(x)
    assert.deepEqual(await t.caller.get(second, { timeoutMs: 30_000 }), expected)
    const rs = await t.stats(reader.peer)
    assert.ok(rs.transfer.badChunks > 0, 'the reader pulled from the corrupting holder and noticed')
    assert.ok(rs.trafficByPeer[liar.peer].chunkIn > 0)
    assert.equal(rs.transfer.chunksFetched, 8, 'every chunk ended verified exactly once')

    for (const r of [x, first, second]) r.release()
    await waitForEmptyStores({ ...t, peers: [...t.peers, liar, reader] })
  } finally {
    await stopAll([liar, reader])
    await t.close()
  }
})
