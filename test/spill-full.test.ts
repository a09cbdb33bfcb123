/**
 * A full spill disk is a full store: the Node spill backend turns ENOSPC into
 * OutOfMemoryError, and a store whose spill failed for want of room stops
 * spilling for a while and keeps every object in memory, readable. The disk is
 * real: each object's file is a symlink to /dev/full, which fails writes with ENOSPC.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FileSpill } from '../node/spill.ts'
import { ObjectStore } from '../core/store.ts'
import { OutOfMemoryError } from '../core/errors.ts'
import { waitFor } from '../node/local-cluster.ts'

const KiB = 1024

test('a spill disk with no room: writes fail with OutOfMemoryError, the store stops spilling and keeps its objects', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-spill-full-'))
  const spill = await FileSpill.open(dir)
  try {
    for (const key of ['aa', 'bb', 'cc', 'dd']) await symlink('/dev/full', join(dir, key))
    const full = (err: Error): boolean => err instanceof OutOfMemoryError && /spill disk is full \(ENOSPC\)/.test(err.message)
    await assert.rejects(spill.write('aa', new Uint8Array(8 * KiB).fill(1)), full)
    await assert.rejects(spill.writeAt('bb', 0, new Uint8Array(8 * KiB).fill(2)), full)

    // The store: above 60% it spills the least recently used primary, which fails.
    const store = new ObjectStore({ capacity: 100 * KiB, spill })
    assert.equal(store.diskHasRoom(KiB), true)
    for (const [key, fill] of [['cc', 3], ['dd', 4]] as const) {
      await store.reserve(40 * KiB, key)
      store.putComplete(key, new Uint8Array([fill]), 'me', { size: 40 * KiB, chunkSize: 4 * KiB, hashes: [], encoding: 0 }, new Uint8Array(40 * KiB).fill(fill), true)
    }
    // The spill is written on libuv's thread pool: wait for its failure.
    await waitFor('the spill to fail for want of room', () => store.diskHasRoom(KiB) ? undefined : true, 10_000)
    assert.equal(store.stats().spills, 0)
    for (const [key, fill] of [['cc', 3], ['dd', 4]] as const) {
      const held = await store.read(key, 'test')
      assert.ok(held !== undefined, `${key} is still held`)
      assert.ok(held.bytes.every(b => b === fill), `${key} reads back whole`)
      held.release()
    }
  } finally {
    await spill.close()
    await rm(dir, { recursive: true, force: true })
  }
})
