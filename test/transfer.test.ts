/** Transfer: large values stay where they were made and move straight to the peer that needs them, verified. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { spawnPeer, stopAll, waitFor } from '../node/local-cluster.ts'
import { DEFAULTS, createMesh } from '../node/index.ts'
import type { Ref } from '../node/index.ts'
import { FIXTURES, startMesh, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'
import { DEFAULT_CHUNK_SIZE, chunkSizeFor } from '../core/chunks.ts'

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

/** A shortened window, so the test sees a caught peer asked again (the default is 10 minutes, as README says). */
const AVOID_BAD_SOURCE_MS = 20_000
assert.equal(DEFAULTS.avoidBadSourceMs, 10 * 60_000)

test('a chunk corrupted in transit is detected, counted, and refetched from another holder; the liar is left out of pulls for its window, then asked again', async () => {
  const t = await startMesh(1)
  const liar = await spawnPeer({ module: FIXTURES, entry: fileURLToPath(new URL('./fixtures/corrupting-peer.ts', import.meta.url)), bootstrap: [t.peers[0].addrs[0]] })
  // The reader is a mesh of this process, with its window shortened.
  const reader = await createMesh({ bootstrap: [t.peers[0].addrs[0]], avoid: { badSourceMs: AVOID_BAD_SOURCE_MS } })
  try {
    const signal = AbortSignal.timeout(15_000)
    await reader.waitForPeer(liar.peer, { signal })
    const [owner] = t.peers
    await reader.waitForPeer(owner.peer, { signal })
    const make = reader.fn<Make>('make').options({ peer: owner.peer })
    const checksumOnLiar = reader.fn<Checksum>('checksum').options({ peer: liar.peer })
    /** a fresh object on the owner, copied to the liar first, so it has two holders */
    const twoHolders = async (n: number, seed: number): Promise<[Ref<Uint8Array>, Ref<unknown>]> => {
      const made = make.remote(n, seed)
      const copied = checksumOnLiar.remote(made)
      assert.deepEqual(await reader.get(copied, { timeoutMs: 30_000 }), { length: n, checksum: checksum(pattern(n, seed)) })
      return [made, copied]
    }
    // Enough chunks that the reader hears from both holders before it is done.
    const [x, first] = await twoHolders(32 * MiB, 9)
    const chunks = 32 * MiB / chunkSizeFor(32 * MiB, DEFAULT_CHUNK_SIZE)
    assert.equal((await reader.peerStats(liar.peer)).transfer.badChunks, 0)

    // The catch happens during this pull: the window opens between these two times.
    const pullStarted = performance.now()
    assert.deepEqual(await reader.get(x, { timeoutMs: 30_000 }), pattern(32 * MiB, 9))
    const caughtAt = performance.now()
    const rs = reader.stats()
    assert.ok(rs.transfer.badChunks > 0, `the reader pulled from the corrupting holder and noticed: ${JSON.stringify({ transfer: rs.transfer, suspects: rs.suspects, traffic: rs.trafficByPeer })}`)
    assert.ok(rs.trafficByPeer[liar.peer].chunkIn > 0)
    assert.equal(rs.transfer.chunksFetched, chunks, 'every chunk ended verified exactly once')
    assert.ok((rs.suspects[liar.peer]?.badChunks ?? 0) > 0, 'the reader reports the liar')
    assert.equal(rs.suspects[owner.peer], undefined, 'and nobody else')

    // Caught once, the liar is left out of the reader's next pulls, though it holds the object.
    const liarBytes = rs.trafficByPeer[liar.peer].chunkIn
    const [z, zLiar] = await twoHolders(32 * MiB, 10)
    assert.deepEqual(await reader.get(z, { timeoutMs: 30_000 }), pattern(32 * MiB, 10))
    assert.ok(performance.now() - pullStarted < AVOID_BAD_SOURCE_MS, 'this pull ran inside the window')
    const after = reader.stats()
    assert.equal(after.trafficByPeer[liar.peer].chunkIn, liarBytes, 'not one byte more was asked of the liar')
    assert.equal(after.transfer.chunksFetched, 2 * chunks)

    // Past the window, it is asked again (and caught again).
    await waitFor('the bad-source window to pass', () => performance.now() - caughtAt > AVOID_BAD_SOURCE_MS ? true : undefined, AVOID_BAD_SOURCE_MS + 5_000, 200)
    const [w, wLiar] = await twoHolders(32 * MiB, 11)
    assert.deepEqual(await reader.get(w, { timeoutMs: 30_000 }), pattern(32 * MiB, 11))
    const later = reader.stats()
    assert.ok(later.trafficByPeer[liar.peer].chunkIn > liarBytes, 'the liar was asked again once its window passed')
    assert.ok(later.transfer.badChunks > rs.transfer.badChunks, 'and caught again')

    for (const r of [x, first, z, zLiar, w, wLiar]) r.release()
    await waitForEmptyStores({ ...t, caller: reader, peers: [...t.peers, liar] })
  } finally {
    await reader.stop()
    await stopAll([liar])
    await t.close()
  }
})

/** A shortened denial window, so the test sees the holder asked again (the default is a minute, as README says). */
const AVOID_DENIED_MS = 10_000
assert.equal(DEFAULTS.avoidDeniedMs, 60_000)

test('a holder that denies an object it is said to hold is not asked for it again within its window, and is asked again after it', async () => {
  const t = await startMesh(1)
  const withholder = await spawnPeer({ module: FIXTURES, entry: fileURLToPath(new URL('./fixtures/withholding-peer.ts', import.meta.url)), bootstrap: [t.peers[0].addrs[0]] })
  // The reader is a peer of this process with a store too small to keep two copies: the first is dropped for the second.
  const reader = await createMesh({ bootstrap: [t.peers[0].addrs[0]], store: { capacity: 48 * MiB }, spillDir: false, avoid: { deniedMs: AVOID_DENIED_MS } })
  try {
    const signal = AbortSignal.timeout(15_000)
    await reader.waitForPeer(withholder.peer, { signal })
    await reader.waitForPeer(t.peers[0].peer, { signal })
    const [owner] = t.peers
    const x = reader.fn<Make>('make').options({ peer: owner.peer }).remote(32 * MiB, 11)
    // The withholder pulls a copy, so the owner names it as a holder.
    const held = reader.fn<Checksum>('checksum').options({ peer: withholder.peer }).remote(x)
    await reader.get(held, { timeoutMs: 30_000 })

    // The denial happens during this pull: the window opens between these two times.
    const pullStarted = performance.now()
    assert.deepEqual(await reader.get(x, { timeoutMs: 30_000 }), pattern(32 * MiB, 11))
    const deniedBy = performance.now()
    const denied = reader.stats().suspects[withholder.peer]
    assert.equal(denied?.falseClaims, 1, `the withholder denied x once (${JSON.stringify(reader.stats().suspects)})`)
    // What the withholder answered the reader (its denials), as it counts it.
    const answered = async (): Promise<number> => (await reader.peerStats(withholder.peer, { timeoutMs: 10_000 })).trafficByPeer[reader.peerId]?.chunkOut ?? 0
    const asked = await answered()
    assert.ok(asked > 0, 'the reader asked it')

    // Another object pushes x's copy out of the reader's store; reading x again pulls it again.
    const y = reader.fn<Make>('make').options({ peer: owner.peer }).remote(32 * MiB, 12)
    /** reads y, then x: x's copy was pushed out by y's, so x is pulled again */
    const pullXAgain = async (): Promise<void> => {
      assert.deepEqual(await reader.get(y, { timeoutMs: 30_000 }), pattern(32 * MiB, 12))
      await waitFor('x to leave the reader\'s store', () => reader.stats().store.keys.includes(x.key) ? undefined : true, 10_000)
      assert.deepEqual(await reader.get(x, { timeoutMs: 30_000 }), pattern(32 * MiB, 11))
    }
    await pullXAgain()
    assert.ok(performance.now() - pullStarted < AVOID_DENIED_MS, 'this pull ran inside the window')
    assert.equal(await answered(), asked, 'the second pull did not ask the withholder')
    assert.equal(reader.stats().suspects[withholder.peer]?.falseClaims, 1)

    // Past the window, it is asked again (and denies again).
    await waitFor('the denial window to pass', () => performance.now() - deniedBy > AVOID_DENIED_MS ? true : undefined, AVOID_DENIED_MS + 5_000, 200)
    await pullXAgain()
    assert.ok(await answered() > asked, 'the withholder was asked for x again once its window passed')
    assert.equal(reader.stats().suspects[withholder.peer]?.falseClaims, 2, 'and denied it again')
    for (const r of [x, held, y]) r.release()
  } finally {
    await reader.stop()
    await stopAll([withholder])
    await t.close()
  }
})

test('when the only holders left deny the object, its owner stops naming them and computes it again', async () => {
  const t = await startMesh(2)
  // It holds copies (and tells their owners so) but serves none, and cannot make the value itself.
  const withholder = await spawnPeer({ module: fileURLToPath(new URL('./fixtures/checksum-only.ts', import.meta.url)), entry: fileURLToPath(new URL('./fixtures/withholding-peer.ts', import.meta.url)), bootstrap: [t.peers[0].addrs[0]] })
  try {
    const { caller } = t
    const [maker, standIn] = t.peers
    await caller.waitForPeer(withholder.peer, { signal: AbortSignal.timeout(15_000) })
    const x = caller.fn<Make>('make').options({ peer: maker.peer }).remote(8 * MiB, 21)
    // The withholder pulls a copy: the owner (the caller) names it as a holder from now on.
    const held = caller.fn<Checksum>('checksum').options({ peer: withholder.peer }).remote(x)
    assert.deepEqual(await caller.get(held, { timeoutMs: 30_000 }), { length: 8 * MiB, checksum: checksum(pattern(8 * MiB, 21)) })
    await maker.kill('SIGKILL')
    await waitFor('the maker to be declared dead', () => caller.stats().deaths.refused + caller.stats().deaths.silent > 0 ? true : undefined, 20_000, 100)

    // The withholder is the only holder left, and denies x: the owner must compute it again (on the stand-in).
    assert.deepEqual(await caller.get(x, { timeoutMs: 30_000 }), pattern(8 * MiB, 21))
    assert.equal(caller.stats().calls.reconstructions, 1)
    assert.ok((caller.stats().suspects[withholder.peer]?.falseClaims ?? 0) >= 1, 'the withholder denied x')
    assert.ok((await t.stats(standIn.peer)).store.keys.includes(x.key) || caller.stats().store.keys.includes(x.key), 'x was made again')
    x.release()
    held.release()
  } finally {
    await stopAll([withholder])
    await t.close()
  }
})

