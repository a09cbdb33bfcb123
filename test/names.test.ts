/**
 * Named datasets and streams: publish/lookup (the finder becomes a borrower, so
 * the object is freed after unpublish once readers let go), and objects that
 * enter and leave the mesh chunk by chunk (putStream/getStream), larger than
 * the store's memory.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../node/index.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

const MiB = 2 ** 20
type LookupChecksum = (name: string, timeoutMs?: number) => { length: number, checksum: number }

test('a published object is found by name on another peer; after unpublish it is freed everywhere', async () => {
  const t = await startMesh(2)
  try {
    const [a] = t.peers
    const data = pattern(6 * MiB, 21)
    const x = t.caller.put(data)
    t.caller.publish('weights-v1', x)
    x.release()
    const other = t.caller.put(1)
    assert.throws(() => { t.caller.publish('weights-v1', other) }, RangeError)
    other.release()
    const found = t.caller.fn<LookupChecksum>('lookupChecksum').options({ peer: a.peer }).remote('weights-v1')
    assert.deepEqual(await t.caller.get(found, { timeoutMs: 30_000 }), { length: 6 * MiB, checksum: checksum(data) })
    found.release()
    const missing = t.caller.fn<LookupChecksum>('lookupChecksum').options({ peer: a.peer }).remote('no-such-name', 2_000)
    await assert.rejects(t.caller.get(missing, { timeoutMs: 30_000 }), (err: Error & { remoteName?: string }) => err.name === 'NameNotFoundError' || err.remoteName === 'NameNotFoundError')
    missing.release()
    assert.ok(t.caller.unpublish('weights-v1'))
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('putStream and getStream move an object larger than the store\'s memory chunk by chunk, byte-identical', async () => {
  const t = await startMesh(1)
  const small = await createMesh({ bootstrap: [t.peers[0].addrs[0]], store: { capacity: '4MiB' } })
  try {
    const size = 12 * MiB + 12345
    const data = pattern(size, 4)
    async function * pieces (): AsyncGenerator<Uint8Array> {
      for (let at = 0; at < size; at += 700_000) yield data.subarray(at, Math.min(size, at + 700_000))
    }
    const x = await small.putStream(pieces(), size)
    assert.equal(small.stats().store.bytes, 0, 'nothing of it in memory: it went straight to disk')
    assert.ok(small.stats().store.spilledBytes >= size)
    // Another peer reads it whole; the caller finds it by name and streams it out.
    const sum = small.fn<(x: Uint8Array) => { length: number, checksum: number }>('checksum').options({ peer: t.peers[0].peer }).remote(x)
    assert.deepEqual(await small.get(sum, { timeoutMs: 30_000 }), { length: size, checksum: checksum(data) })
    sum.release()
    small.publish('big', x)
    const y = await t.caller.lookup<Uint8Array>('big', { timeoutMs: 15_000 })
    const seen: number[] = []
    const out = new Uint8Array(size)
    let at = 0
    for await (const chunk of t.caller.getStream(y, { timeoutMs: 30_000, onProgress: bytes => seen.push(bytes) })) {
      out.set(chunk, at)
      at += chunk.byteLength
    }
    assert.equal(at, size)
    assert.deepEqual(out, data)
    assert.equal(seen.at(-1), size)
    await assert.rejects(small.putStream(pieces(), size - 1), RangeError)
    y.release()
    small.unpublish('big')
    x.release()
  } finally {
    await small.stop()
    await t.close()
  }
})
