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
import { peerIdFromString } from '@libp2p/peer-id'
import { createMesh } from '../node/index.ts'
import type { Mesh, Ref } from '../node/index.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, ChunkStatus } from '../core/protocol/messages.ts'
import { FrameDecoder, decodeVarint, frame } from '../core/protocol/framing.ts'
import register, { checksum, pattern } from './fixtures/functions.ts'

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

test('one maker, six receivers: every receiver ends with the object, and the maker uploads about one copy (super-seeding)', async () => {
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
    // Super-seeding: a chunk the maker sent to one receiver, the others get from it (1.6 copies without).
    assert.ok(uploaded <= 1.25 * size, `the maker uploaded ${(uploaded / size).toFixed(2)} copies`)
    const servedByReceivers = await Promise.all(receivers.map(async r => await chunkOut(t, r.peer)))
    assert.ok(servedByReceivers.filter(n => n > 0).length >= 3, 'receivers served each other')
    // Every receiver is pointed at the maker (beside its parents in the tree), so its one copy
    // is spread over all of them, not over its two children only, who would then relay most of it.
    const fromMaker = await Promise.all(receivers.map(async r => (await t.stats(r.peer)).trafficByPeer[owner.peer]?.chunkIn ?? 0))
    assert.ok(fromMaker.every(n => n > 0), `MiB each receiver got from the maker: ${fromMaker.map(n => (n / MiB).toFixed(1)).join(', ')}`)
    // Second copies come only from the endgame, which asks a second holder for the last 2 chunks
    // at most: begun as soon as every chunk was asked, it took 3-4 MiB of 16 twice at 20 Mbit/s.
    const twice = await Promise.all(receivers.map(async r => (await t.stats(r.peer)).transfer.duplicateChunks))
    assert.ok(twice.every(n => n <= 2), `chunks each receiver got twice: ${twice.join(', ')}`)
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

/** Asks `holder` for chunks of `id` on a chunk stream of `from`'s; the status of each answer, and the peer a SPREAD names. */
async function askChunks (from: Mesh, holder: string, id: Uint8Array, indices: number[], spread: boolean): Promise<Array<{ index: number, status: number, via?: string }>> {
  const stream = await from.libp2p.dialProtocol(peerIdFromString(holder), CHUNK_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  const answers: Array<{ index: number, status: number, via?: string }> = []
  stream.send(frame(ChunkRequestCodec.encode({ id, indices, bitfield: false, ...(spread ? { spread: true } : {}) })))
  const decoder = new FrameDecoder(2 * MiB)
  const timer = setTimeout(() => { stream.abort(new Error('no answer to every chunk asked within 10 s')) }, 10_000)
  try {
    for await (const data of stream) {
      for (const f of decoder.push(data)) {
        const [headerLength, prefix] = decodeVarint(f) as [number, number]
        const { index, status } = ChunkHeaderCodec.decode(f.subarray(prefix, prefix + headerLength))
        answers.push({ index, status, ...(status === ChunkStatus.SPREAD ? { via: new TextDecoder().decode(f.subarray(prefix + headerLength)) } : {}) })
      }
      if (answers.length === indices.length) break
    }
  } finally {
    clearTimeout(timer)
    await stream.close().catch(() => {})
  }
  return answers
}

test('super-seeding: the maker of an object sends a chunk a second receiver asks for to it only when that one asks again; first it names the receiver it went to', async () => {
  const seed = await createMesh({})
  register(seed)
  const join = { bootstrap: seed.libp2p.getMultiaddrs().map(String) }
  const [a, b, old] = [await createMesh(join), await createMesh(join), await createMesh(join)]
  try {
    // Made on the seed: its copy is one it did not pull.
    using x = a.fn<Make>('make').options({ peer: seed.peerId }).remote(4 * MiB, 5)
    await a.wait([x], { timeoutMs: 20_000 })
    const { OK, SPREAD } = ChunkStatus
    assert.deepEqual(await askChunks(a, seed.peerId, x.id, [0, 1], true), [{ index: 0, status: OK }, { index: 1, status: OK }])
    // Chunks that went to a are got from a; the one that never left is sent.
    assert.deepEqual(await askChunks(b, seed.peerId, x.id, [0, 1, 2], true), [{ index: 0, status: SPREAD, via: a.peerId }, { index: 1, status: SPREAD, via: a.peerId }, { index: 2, status: OK }])
    // Asked again (it did not reach b from a): sent.
    assert.deepEqual(await askChunks(b, seed.peerId, x.id, [0], true), [{ index: 0, status: OK }])
    // A puller that did not say it takes SPREAD (a version-1.0 peer, or a star's) is always sent the chunk.
    assert.deepEqual(await askChunks(old, seed.peerId, x.id, [0, 1, 2], false), [{ index: 0, status: OK }, { index: 1, status: OK }, { index: 2, status: OK }])
    assert.equal(seed.stats().transfer.chunksSpread, 2)
  } finally {
    for (const m of [old, b, a, seed]) await m.stop()
  }
})
