/**
 * Memory pressure (DESIGN.md section 5): a workload four times the memory of
 * every store completes inside it, spilled objects come back byte-identical,
 * their files go when they are freed or the peer restarts, and a put that
 * cannot fit waits for room instead of crashing the peer.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createMesh, OutOfMemoryError, TimeoutError } from '../node/index.ts'
import type { Ref } from '../node/index.ts'
import { spawnPeer } from '../node/local-cluster.ts'
import { FIXTURES, startMesh, waitFor } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

const MiB = 2 ** 20

test('a workload of 4x every store\'s capacity completes; memory in use never exceeds capacity; spilled objects read back identical and their files go', async () => {
  const capacity = 24 * MiB
  const dirs = await Promise.all([0, 1, 2].map(async () => await mkdtemp(join(tmpdir(), 'refmesh-spill-test-'))))
  // Each peer spills into a directory of the test's, to watch its files.
  const peers = [await spawnPeer({ module: FIXTURES, storeCapacity: '24MiB', args: ['--spill-dir', dirs[0]] })]
  peers.push(...await Promise.all([1, 2].map(async i => await spawnPeer({ module: FIXTURES, storeCapacity: '24MiB', args: ['--spill-dir', dirs[i]], bootstrap: [peers[0].addrs[0]] }))))
  const caller = await createMesh({ bootstrap: [peers[0].addrs[0]] })
  const stats = async (peer: string): Promise<Awaited<ReturnType<typeof caller.peerStats>>> => await caller.peerStats(peer, { timeoutMs: 10_000 })
  let sampling = true
  let samples = 0
  let worst = 0
  const sampler = (async () => {
    while (sampling) {
      for (const p of peers) {
        const s = await stats(p.peer).catch(() => undefined)
        if (s === undefined) continue
        samples++
        worst = Math.max(worst, s.store.bytes)
      }
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  })()
  try {
    for (const p of peers) await caller.waitForPeer(p.peer, { signal: AbortSignal.timeout(15_000) })
    // 24 objects of 4 MiB on each peer: 96 MiB live per 24 MiB store.
    const perPeer = 24
    const make = caller.fn<(n: number, seed: number) => Uint8Array>('make')
    const data: Array<{ ref: Ref<Uint8Array>, seed: number }> = []
    for (let j = 0; j < perPeer; j++) {
      peers.forEach((p, i) => {
        const seed = i * 100 + j
        data.push({ ref: make.options({ peer: p.peer, timeoutMs: 120_000 }).remote(4 * MiB, seed), seed })
      })
    }
    const made = await caller.wait(data.map(d => d.ref), { timeoutMs: 180_000 })
    assert.equal(made.ready.length, data.length, 'every object was made')
    // Every object is used again: the spilled ones are restored on demand.
    const sum = caller.fn<(x: Uint8Array) => { length: number, checksum: number }>('checksum').options({ timeoutMs: 120_000 })
    const sums = data.map(d => sum.remote(d.ref))
    for (let i = 0; i < data.length; i++) {
      const r = await caller.get(sums[i], { timeoutMs: 180_000 })
      assert.deepEqual(r, { length: 4 * MiB, checksum: checksum(pattern(4 * MiB, data[i].seed)) }, `object ${i}`)
      sums[i].release()
    }
    // A few read back whole, byte for byte (from disk or memory, wherever they are now).
    for (const d of data.slice(0, 6)) assert.deepEqual(await caller.get(d.ref, { timeoutMs: 60_000 }), pattern(4 * MiB, d.seed))
    const during = await Promise.all(peers.map(async p => await stats(p.peer)))
    for (const s of during) {
      assert.ok(s.store.peakBytes <= capacity, `a store peaked at ${s.store.peakBytes} bytes, over its ${capacity}`)
      assert.ok(s.store.spills > 0, 'the store spilled')
      assert.ok(s.store.spilledBytes > 0, 'the store holds spilled objects')
      assert.ok(s.store.restores > 0, 'spilled objects were restored on demand')
    }
    assert.ok((await Promise.all(dirs.map(async d => (await readdir(d)).length))).every(n => n > 0), 'every spill directory has files')
    for (const d of data) d.ref.release()
    await waitFor('stores and spill directories to empty', async () => {
      const all = await Promise.all(peers.map(async p => await stats(p.peer)))
      const files = await Promise.all(dirs.map(async d => (await readdir(d)).length))
      return all.every(s => s.store.objects === 0 && s.store.bytes === 0 && s.store.spilledBytes === 0) && files.every(n => n === 0) ? true : undefined
    }, 20_000, 100)
  } finally {
    sampling = false
    await sampler
    await caller.stop()
    await Promise.all(peers.map(async p => await p.stop()))
    await Promise.all(dirs.map(async d => await rm(d, { recursive: true, force: true })))
  }
  assert.ok(samples > 20, `only ${samples} samples of the stores were taken`)
  assert.ok(worst <= capacity, `a store held ${worst} bytes in memory, over its ${capacity}`)
})

test('a peer killed with spilled files leaves them; restarted on the same directory, it starts with it empty', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-spill-test-'))
  try {
    const peer = await spawnPeer({ module: FIXTURES, storeCapacity: '8MiB', args: ['--spill-dir', dir] })
    const caller = await createMesh({ bootstrap: [peer.addrs[0]] })
    try {
      const make = caller.fn<(n: number, seed: number) => Uint8Array>('make').options({ peer: peer.peer })
      const refs = [1, 2, 3, 4].map(seed => make.remote(2 * MiB, seed))
      await caller.wait(refs, { timeoutMs: 60_000 })
      await waitFor('a spill file', async () => (await readdir(dir)).length > 0 ? true : undefined, 10_000)
      await peer.kill('SIGKILL')
      assert.ok((await readdir(dir)).length > 0, 'the killed peer left its files')
      await writeFile(join(dir, 'stray'), 'left by someone')
    } finally {
      await caller.stop()
      await peer.kill()
    }
    const restarted = await spawnPeer({ module: FIXTURES, storeCapacity: '8MiB', args: ['--spill-dir', dir] })
    try {
      assert.deepEqual(await readdir(dir), [], 'the restarted peer emptied its spill directory')
    } finally {
      await restarted.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('with no room and no disk, a put waits until Refs are released, then succeeds; one that can never fit fails with OutOfMemoryError', async () => {
  const mesh = await createMesh({ store: { capacity: 8 * MiB }, spillDir: false })
  try {
    const first = mesh.put(pattern(5 * MiB, 1))
    await mesh.wait([first], { timeoutMs: 10_000 })
    const second = mesh.put(pattern(5 * MiB, 2))
    const early = await mesh.wait([second], { timeoutMs: 500 })
    assert.equal(early.ready.length, 0, 'the second put waits while the first holds the memory')
    // A put with a deadline gives up at it with the caller's timeout.
    const impatient = mesh.put(pattern(5 * MiB, 3), { timeoutMs: 200 })
    await assert.rejects(mesh.get(impatient, { timeoutMs: 10_000 }), TimeoutError)
    impatient.release()
    first.release()
    assert.deepEqual(await mesh.get(second, { timeoutMs: 10_000 }), pattern(5 * MiB, 2))
    assert.ok(mesh.stats().store.peakBytes <= 8 * MiB)
    const huge = mesh.put(pattern(9 * MiB, 4))
    await assert.rejects(mesh.get(huge, { timeoutMs: 10_000 }), (err: Error) => {
      assert.ok(err instanceof OutOfMemoryError, `${err.name}: ${err.message}`)
      assert.match(err.message, /9437184 bytes/)
      assert.match(err.message, /8388608/)
      return true
    })
    huge.release()
    second.release()
    await waitFor('the store to empty', () => mesh.stats().store.bytes === 0 ? true : undefined, 5_000)
  } finally {
    await mesh.stop()
  }
})

test('an object larger than a peer\'s memory streams to its disk chunk by chunk and is served from there', async () => {
  const t = await startMesh(2, { storeCapacity: '4MiB' })
  try {
    const [owner, other] = t.peers
    const make = t.caller.fn<(n: number, seed: number) => Uint8Array>('make')
    // 12 MiB made on `owner` goes straight to its disk; `other` pulls it to its own disk for a call.
    using big = make.options({ peer: owner.peer }).remote(12 * MiB, 5)
    using sum = t.caller.fn<(x: Uint8Array) => { length: number, checksum: number }>('checksum').options({ peer: other.peer }).remote(big)
    assert.deepEqual(await t.caller.get(sum, { timeoutMs: 60_000 }), { length: 12 * MiB, checksum: checksum(pattern(12 * MiB, 5)) })
    for (const p of [owner, other]) {
      const s = await t.stats(p.peer)
      assert.ok(s.store.peakBytes <= 4 * MiB, `${p.peer} peaked at ${s.store.peakBytes}`)
      assert.ok(s.store.spilledBytes >= 12 * MiB, `${p.peer} holds the object on disk`)
    }
    assert.deepEqual(await t.caller.get(big, { timeoutMs: 60_000 }), pattern(12 * MiB, 5))
  } finally {
    await t.close()
  }
})
