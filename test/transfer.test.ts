/** Transfer: large values stay where they were made and move straight to the peer that needs them, verified. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { spawnPeer, stopAll, waitFor } from '../node/local-cluster.ts'
import { createMesh } from '../node/index.ts'
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
    // Enough chunks that the reader hears from both holders before it is done.
    const expected = { length: 32 * MiB, checksum: checksum(pattern(32 * MiB, 9)) }
    const x = t.caller.fn<Make>('make').options({ peer: owner.peer }).remote(32 * MiB, 9)
    // The liar fetches an honest copy first, so it becomes a second holder.
    const first = t.caller.fn<Checksum>('checksum').options({ peer: liar.peer }).remote(x)
    assert.deepEqual(await t.caller.get(first, { timeoutMs: 30_000 }), expected)
    assert.equal((await t.stats(liar.peer)).transfer.badChunks, 0)

    const second = t.caller.fn<Checksum>('checksum').options({ peer: reader.peer }).remote(x)
    assert.deepEqual(await t.caller.get(second, { timeoutMs: 30_000 }), expected)
    const rs = await t.stats(reader.peer)
    assert.ok(rs.transfer.badChunks > 0, `the reader pulled from the corrupting holder and noticed: ${JSON.stringify({ transfer: rs.transfer, suspects: rs.suspects, traffic: rs.trafficByPeer })}`)
    assert.ok(rs.trafficByPeer[liar.peer].chunkIn > 0)
    assert.equal(rs.transfer.chunksFetched, 32, 'every chunk ended verified exactly once')
    assert.ok((rs.suspects[liar.peer]?.badChunks ?? 0) > 0, 'the reader reports the liar')
    assert.equal(rs.suspects[owner.peer], undefined, 'and nobody else')

    // Caught once, the liar is left out of the reader's next pulls, though it holds the object.
    const liarBytes = rs.trafficByPeer[liar.peer].chunkIn
    const z = t.caller.fn<Make>('make').options({ peer: owner.peer }).remote(8 * MiB, 10)
    const zLiar = t.caller.fn<Checksum>('checksum').options({ peer: liar.peer }).remote(z)
    const zExpected = { length: 8 * MiB, checksum: checksum(pattern(8 * MiB, 10)) }
    assert.deepEqual(await t.caller.get(zLiar, { timeoutMs: 30_000 }), zExpected)
    const zReader = t.caller.fn<Checksum>('checksum').options({ peer: reader.peer }).remote(z)
    assert.deepEqual(await t.caller.get(zReader, { timeoutMs: 30_000 }), zExpected)
    const after = await t.stats(reader.peer)
    assert.equal(after.trafficByPeer[liar.peer].chunkIn, liarBytes, 'not one byte more was asked of the liar')
    assert.equal(after.transfer.chunksFetched, 40)

    for (const r of [x, first, second, z, zLiar, zReader]) r.release()
    await waitForEmptyStores({ ...t, peers: [...t.peers, liar, reader] })
  } finally {
    await stopAll([liar, reader])
    await t.close()
  }
})

test('a holder that denies an object it is said to hold is not asked for it again', async () => {
  const t = await startMesh(1)
  const withholder = await spawnPeer({ module: FIXTURES, entry: fileURLToPath(new URL('./fixtures/withholding-peer.ts', import.meta.url)), bootstrap: [t.peers[0].addrs[0]] })
  // The reader is a peer of this process with a store too small to keep two copies: the first is dropped for the second.
  const reader = await createMesh({ bootstrap: [t.peers[0].addrs[0]], store: { capacity: 48 * MiB }, spillDir: false })
  try {
    const signal = AbortSignal.timeout(15_000)
    await reader.waitForPeer(withholder.peer, { signal })
    await reader.waitForPeer(t.peers[0].peer, { signal })
    const [owner] = t.peers
    const x = reader.fn<Make>('make').options({ peer: owner.peer }).remote(32 * MiB, 11)
    // The withholder pulls a copy, so the owner names it as a holder.
    const held = reader.fn<Checksum>('checksum').options({ peer: withholder.peer }).remote(x)
    await reader.get(held, { timeoutMs: 30_000 })

    assert.deepEqual(await reader.get(x, { timeoutMs: 30_000 }), pattern(32 * MiB, 11))
    const denied = reader.stats().suspects[withholder.peer]
    assert.equal(denied?.falseClaims, 1, `the withholder denied x once (${JSON.stringify(reader.stats().suspects)})`)
    // What the withholder answered the reader (its denials), as it counts it.
    const answered = async (): Promise<number> => (await reader.peerStats(withholder.peer, { timeoutMs: 10_000 })).trafficByPeer[reader.peerId]?.chunkOut ?? 0
    const asked = await answered()
    assert.ok(asked > 0, 'the reader asked it')

    // Another object pushes x's copy out of the reader's store; reading x again pulls it again.
    const y = reader.fn<Make>('make').options({ peer: owner.peer }).remote(32 * MiB, 12)
    assert.deepEqual(await reader.get(y, { timeoutMs: 30_000 }), pattern(32 * MiB, 12))
    await waitFor('x to leave the reader\'s store', () => reader.stats().store.keys.includes(x.key) ? undefined : true, 10_000)
    assert.deepEqual(await reader.get(x, { timeoutMs: 30_000 }), pattern(32 * MiB, 11))
    assert.equal(await answered(), asked, 'the second pull did not ask the withholder')
    assert.equal(reader.stats().suspects[withholder.peer]?.falseClaims, 1)
    for (const r of [x, held, y]) r.release()
  } finally {
    await reader.stop()
    await stopAll([withholder])
    await t.close()
  }
})
