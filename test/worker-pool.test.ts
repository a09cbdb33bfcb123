/** Executors: registered modules run in a worker_threads pool, one call per worker at a time. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { WorkerPool, WorkerCrashedError } from '../node/worker-pool.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

const MODULE = fileURLToPath(new URL('./fixtures/worker-functions.ts', import.meta.url))

test('the pool runs calls in parallel, keeps errors typed, survives a crash, and shares memory', async () => {
  const pool = new WorkerPool({ modules: [MODULE], size: 2 })
  try {
    const names = await pool.start()
    assert.ok(names.includes('burn') && names.includes('wsum'))
    assert.equal(await pool.run('wsum', [2, 3]), 5)
    const [a, b] = await Promise.all([pool.run('burnSpan', [200]), pool.run('burnSpan', [200])]) as Array<{ start: number, end: number }>
    assert.ok(a.start < b.end && b.start < a.end, 'two calls on two workers ran at the same time')
    await assert.rejects(pool.run('wfail', ['bad']), (err: Error) => err.name === 'RangeError' && err.message === 'bad' && /worker-functions\.ts/.test(err.stack ?? ''))
    await assert.rejects(pool.run('wcrash', []), WorkerCrashedError)
    assert.equal(await pool.run('wsum', [1, 1]), 2, 'the pool replaced the crashed worker')
    const shared = new Uint8Array(new SharedArrayBuffer(16))
    assert.equal(await pool.run('wmark', [shared]), 16)
    assert.equal(shared[0], 42, 'the worker wrote into the same memory')
    const filled = await pool.run('wfill', [1000, 7]) as Uint8Array
    assert.equal(filled.length, 1000)
    const aborted = new AbortController()
    const queued = Promise.all([pool.run('burn', [100]), pool.run('burn', [100]), pool.run('wsum', [1, 2], { signal: aborted.signal })])
    aborted.abort()
    await assert.rejects(queued, { name: 'AbortError' })
  } finally {
    await pool.close()
  }
})

test('a peer runs worker-module functions in its pool; fetched arguments arrive in shared memory', async () => {
  const t = await startMesh(2, { workerModules: [MODULE], workers: 2 })
  try {
    const [holder, worker] = t.peers
    const x = t.caller.fn<(n: number, seed: number) => Uint8Array>('make').options({ peer: holder.peer }).remote(8 * 2 ** 20, 4)
    const r = t.caller.fn<(x: Uint8Array) => { length: number, checksum: number, shared: boolean }>('wchecksum').options({ peer: worker.peer }).remote(x)
    assert.deepEqual(await t.caller.get(r, { timeoutMs: 30_000 }), { length: 8 * 2 ** 20, checksum: checksum(pattern(8 * 2 ** 20, 4)), shared: true })
    const s = await t.stats(worker.peer)
    assert.equal(s.calls.slots, 2)
    const burns = Array.from({ length: 4 }, () => t.caller.fn<(ms: number) => number>('burn').options({ peer: worker.peer }).remote(200))
    for (const b of burns) assert.equal(await t.caller.get(b, { timeoutMs: 30_000 }), 200)
    for (const ref of [x, r, ...burns]) ref.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})
