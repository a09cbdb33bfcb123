/** Executors: registered modules run in a worker_threads pool, one call per worker at a time. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WorkerPool, WorkerCrashedError, WorkerModuleError, WorkerPoolClosedError } from '../node/worker-pool.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

const MODULE = fileURLToPath(new URL('./fixtures/worker-functions.ts', import.meta.url))
const POOL_URL = new URL('../node/worker-pool.ts', import.meta.url).href

async function withPool<T> (size: number, fn: (pool: WorkerPool) => Promise<T>): Promise<T> {
  const pool = new WorkerPool({ modules: [MODULE], size })
  try {
    await pool.start()
    return await fn(pool)
  } finally {
    await pool.close()
  }
}

/** Writes throwaway function modules; returns their paths. */
async function tempModules (files: Record<string, string>): Promise<{ paths: Record<string, string>, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-workers-'))
  const paths: Record<string, string> = {}
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name)
    await writeFile(paths[name], text)
  }
  return { paths, cleanup: async () => { await rm(dir, { recursive: true, force: true }) } }
}

/** Runs an ES module script in a fresh Node; resolves with its exit code and output. */
async function runScript (script: string, timeoutMs = 20_000): Promise<{ code: number | null, stdout: string, stderr: string, ms: number }> {
  const started = performance.now()
  return await new Promise(resolve => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stdout, stderr, ms: performance.now() - started })
    })
  })
}

test('start() lists the exported functions; run() returns their results', async () => {
  await withPool(2, async pool => {
    assert.equal(pool.size, 2)
    assert.equal(pool.busy, 0)
    const names = pool.names()
    for (const n of ['burn', 'wsum', 'wfill', 'wfail', 'wcrash', 'wmark', 'wsharedSum']) assert.ok(names.includes(n), n)
    assert.equal(await pool.run('wsum', [2, 3]), 5)
    const filled = await pool.run('wfill', [1000, 7]) as Uint8Array
    assert.ok(filled instanceof Uint8Array)
    assert.equal(filled.length, 1000)
    assert.ok(filled.every(b => b === 7))
    assert.deepEqual(await pool.run('wsleep', [5, { a: [1, 'x'] }]), { a: [1, 'x'] }, 'a promise result is awaited')
    await assert.rejects(pool.run('nope', []), { name: 'FunctionNotFoundError' })
  })
})

test('a pool of two runs two calls in parallel and queues the rest in order', async () => {
  await withPool(2, async pool => {
    const both = Promise.all([pool.run('burnSpan', [200]), pool.run('burnSpan', [200])])
    assert.equal(pool.busy, 2)
    const [a, b] = await both as Array<{ start: number, end: number }>
    // Their run times overlap: they ran at once (a wall-clock bound would depend on the machine's load).
    assert.ok(a.start < b.end && b.start < a.end, 'the two calls did not run at the same time')
    assert.equal(pool.busy, 0)

    const order: number[] = []
    const calls = [0, 1, 2, 3].map(async i => { await pool.run('burn', [50]); order.push(i) })
    assert.equal(pool.busy, 2)
    assert.equal(pool.queued, 2)
    await Promise.all(calls)
    assert.deepEqual(order.slice(0, 2).sort(), [0, 1])
    assert.deepEqual(order.slice(2).sort(), [2, 3])
  })
})

test('errors keep their name, message, stack, code and cause', async () => {
  await withPool(1, async pool => {
    await assert.rejects(pool.run('wfail', ['bad']), (err: Error) => {
      assert.ok(err instanceof RangeError)
      assert.equal(err.name, 'RangeError')
      assert.equal(err.message, 'bad')
      assert.match(err.stack ?? '', /worker-functions\.ts/)
      return true
    })
    await assert.rejects(pool.run('wcustom', ['invalid']), (err: Error & { code?: string }) => {
      assert.equal(err.name, 'ValidationError')
      assert.equal(err.message, 'invalid')
      assert.equal(err.code, 'E_INVALID')
      assert.match(err.stack ?? '', /ValidationError: invalid[\s\S]*worker-functions\.ts/)
      assert.equal((err.cause as Error).name, 'SyntaxError')
      return true
    })
    await assert.rejects(pool.run('wreject', ['late']), { name: 'TypeError', message: 'late' })
    await assert.rejects(pool.run('wunclonable', []), { name: 'DataCloneError' })
    await assert.rejects(pool.run('wsum', [() => 1, 2]), { name: 'DataCloneError' })
    assert.equal(await pool.run('wsum', [1, 2]), 3, 'the worker is still usable')
  })
})

test('a crashed worker fails its call with WorkerCrashedError and is replaced', async () => {
  await withPool(2, async pool => {
    const other = pool.run('burn', [200])
    await assert.rejects(pool.run('wcrash', []), (err: Error) => {
      assert.ok(err instanceof WorkerCrashedError)
      assert.equal(err.name, 'WorkerCrashedError')
      assert.match(err.message, /wcrash/)
      return true
    })
    assert.equal(await other, 200, 'a call on another worker is unaffected')
    assert.equal(await pool.run('wsum', [1, 1]), 2)
    await assert.rejects(pool.run('wuncaught', ['thrown from a timer']), (err: Error) => {
      assert.equal(err.name, 'WorkerCrashedError')
      assert.match(err.message, /TypeError: thrown from a timer/)
      return true
    })
    assert.equal(await pool.run('wsum', [2, 2]), 4)
    // Back to two workers: two calls run side by side again (once the replacement has loaded).
    let overlapped = false
    for (let attempt = 0; attempt < 5 && !overlapped; attempt++) {
      const [a, b] = await Promise.all([pool.run('burnSpan', [200]), pool.run('burnSpan', [200])]) as Array<{ start: number, end: number }>
      overlapped = a.start < b.end && b.start < a.end
    }
    assert.ok(overlapped, 'the pool is back to its size')
  })
})

test('SharedArrayBuffer arguments are shared; plain ones are copied and not taken', async () => {
  await withPool(2, async pool => {
    const shared = new Uint8Array(new SharedArrayBuffer(16))
    shared.set([1, 2, 3])
    assert.equal(await pool.run('wsharedSum', [shared]), 6)
    assert.equal(await pool.run('wmark', [shared]), 16)
    assert.equal(shared[0], 42, 'the worker wrote into the same memory')

    const plain = new Uint8Array(16).fill(1)
    assert.equal(await pool.run('wmark', [plain]), 16)
    assert.equal(plain.byteLength, 16, 'the argument buffer was not transferred away')
    assert.equal(plain[0], 1, 'the worker wrote into its own copy')
  })
})

test('binary results in plain buffers are transferred, not copied', async () => {
  await withPool(1, async pool => {
    const buf = await pool.run('wbuffer', [64, 9]) as ArrayBuffer
    assert.ok(buf instanceof ArrayBuffer)
    assert.deepEqual([...new Uint8Array(buf)], new Array(64).fill(9))
    assert.deepEqual(await pool.run('wlastDetached', []), [true])

    const parts = await pool.run('wparts', [8]) as { a: Uint8Array, b: Float64Array, list: Uint16Array[], label: string }
    assert.deepEqual([...parts.a], new Array(8).fill(1))
    assert.deepEqual([...parts.b], new Array(8).fill(2.5))
    assert.deepEqual([...parts.list[0]], new Array(8).fill(3))
    assert.equal(parts.label, 'parts')
    assert.deepEqual(await pool.run('wlastDetached', []), [true, true, false], 'top-level typed arrays move; deeper ones are copied')

    const plain = Uint8Array.from([1, 2, 3, 4])
    assert.deepEqual([...await pool.run('wslice', [plain, 2]) as Uint8Array], [3, 4])
    assert.deepEqual(await pool.run('wlastDetached', []), [true], 'the worker\'s copy of the argument moved back')
    assert.deepEqual([...plain], [1, 2, 3, 4])

    const shared = new Uint8Array(new SharedArrayBuffer(4))
    shared.set([5, 6, 7, 8])
    const view = await pool.run('wslice', [shared, 1]) as Uint8Array
    assert.ok(view.buffer instanceof SharedArrayBuffer)
    assert.deepEqual([...view], [6, 7, 8])
    view[0] = 60
    assert.equal(shared[1], 60, 'a shared result is the same memory')
    assert.deepEqual(await pool.run('wlastDetached', []), [false])

    assert.equal(Buffer.from(await pool.run('wpooled', ['hello']) as Uint8Array).toString(), 'hello', 'untransferable buffers are copied')
  })
})

test('an aborted queued call rejects with the signal reason and leaves the queue', async () => {
  await withPool(1, async pool => {
    const running = pool.run('burn', [200])
    const controller = new AbortController()
    const queued = pool.run('wsum', [1, 2], { signal: controller.signal })
    const after = pool.run('wsum', [3, 4])
    assert.equal(pool.queued, 2)
    const reason = new Error('not wanted any more')
    controller.abort(reason)
    await assert.rejects(queued, (err: unknown) => err === reason)
    assert.equal(pool.queued, 1)
    assert.equal(await running, 200)
    assert.equal(await after, 7)

    const plainAbort = new AbortController()
    const p = pool.run('wsleep', [1, 1], { signal: plainAbort.signal })
    const q = pool.run('wsum', [1, 1], { signal: plainAbort.signal })
    plainAbort.abort()
    await assert.rejects(q, { name: 'AbortError' })
    assert.equal(await p, 1, 'a running call runs to its end')

    await assert.rejects(pool.run('wsum', [1, 1], { signal: AbortSignal.abort(reason) }), (err: unknown) => err === reason)
    assert.equal(await pool.run('wsum', [5, 5]), 10)
    assert.equal(pool.busy, 0)
    assert.equal(pool.queued, 0)
  })
})

test('start() fails with WorkerModuleError naming the module, and honours its signal', async () => {
  const { paths, cleanup } = await tempModules({
    'a.mjs': 'export function dup () { return 1 }\nexport const notAFunction = 1\nexport default function ignored () {}\n',
    'b.mjs': 'export function dup () { return 2 }\n',
    'broken.mjs': 'throw new TypeError("broken at load")\n',
    'exits.mjs': 'process.exit(4)\n',
    'slow.mjs': 'await new Promise(resolve => setTimeout(resolve, 5000))\nexport function slow () {}\n'
  })
  try {
    const ok = new WorkerPool({ modules: [paths['a.mjs'], MODULE], size: 1 })
    try {
      const names = await ok.start()
      assert.ok(names.includes('dup') && names.includes('wsum'))
      assert.ok(!names.includes('default') && !names.includes('notAFunction'))
      assert.equal(await ok.run('dup', []), 1)
    } finally {
      await ok.close()
    }

    const cases: Array<[string[], string, RegExp]> = [
      [[paths['a.mjs'], paths['b.mjs']], paths['b.mjs'], /"dup"/],
      [[MODULE, paths['broken.mjs']], paths['broken.mjs'], /broken at load/],
      [[join(tmpdir(), 'refmesh-no-such-module.mjs')], join(tmpdir(), 'refmesh-no-such-module.mjs'), /cannot load/],
      [[paths['exits.mjs']], paths['exits.mjs'], /code 4/]
    ]
    for (const [modules, culprit, message] of cases) {
      const pool = new WorkerPool({ modules, size: 2 })
      await assert.rejects(pool.start(), (err: Error) => {
        assert.ok(err instanceof WorkerModuleError, `${err.name}: ${err.message}`)
        assert.equal(err.module, culprit)
        assert.ok(err.message.includes(culprit), err.message)
        assert.match(err.message, message)
        return true
      })
      await pool.close()
    }

    const slow = new WorkerPool({ modules: [paths['slow.mjs']], size: 2 })
    const controller = new AbortController()
    const reason = new Error('gave up starting')
    setTimeout(() => { controller.abort(reason) }, 100)
    const t0 = performance.now()
    await assert.rejects(slow.start({ signal: controller.signal }), (err: unknown) => err === reason)
    assert.ok(performance.now() - t0 < 2000)
    await assert.rejects(slow.run('slow', []), WorkerPoolClosedError)
    await slow.close()
  } finally {
    await cleanup()
  }
})

test('close() fails queued and running calls, and lets the process exit', async () => {
  const pool = new WorkerPool({ modules: [MODULE], size: 1 })
  await pool.start()
  const running = assert.rejects(pool.run('wsleep', [60_000, 1]), WorkerPoolClosedError)
  const queued = assert.rejects(pool.run('wsum', [1, 2]), WorkerPoolClosedError)
  await pool.close()
  await running
  await queued
  await assert.rejects(pool.run('wsum', [1, 2]), WorkerPoolClosedError)
  await pool.close()

  const closed = await runScript(`
    import { WorkerPool } from ${JSON.stringify(POOL_URL)}
    const pool = new WorkerPool({ modules: [${JSON.stringify(MODULE)}], size: 2 })
    await pool.start()
    console.log(await pool.run('wsum', [1, 2]))
    const pending = pool.run('wsleep', [60000, 1]).catch(err => console.log(err.name))
    await pool.close()
    await pending
  `)
  assert.equal(closed.code, 0, closed.stderr)
  assert.equal(closed.stdout, '3\nWorkerPoolClosedError\n')

  // An idle pool does not hold the process either (a busy one does, until its call ends).
  const idle = await runScript(`
    import { WorkerPool } from ${JSON.stringify(POOL_URL)}
    const pool = new WorkerPool({ modules: [${JSON.stringify(MODULE)}], size: 2 })
    await pool.start()
    console.log(await pool.run('wsleep', [200, 'slept']))
  `)
  assert.equal(idle.code, 0, idle.stderr)
  assert.equal(idle.stdout, 'slept\n')
  assert.ok(idle.ms < 15_000)
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
    // Multiple return values from a worker: one Ref per buffer, the large ones stored on the worker's peer.
    const parts = t.caller.fn<(n: number, size: number) => Uint8Array[]>('wsplit').options({ peer: worker.peer, returns: 3 }).remote(3, 100_000)
    for (const [i, p] of parts.entries()) assert.deepEqual(await t.caller.get(p, { timeoutMs: 30_000 }), new Uint8Array(100_000).fill(i))
    for (const ref of [x, r, ...burns, ...parts]) ref.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})
