/** The API of DESIGN.md section 1: calls, wait, errors, timeouts, nested calls, a single-peer mesh. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createMesh, shared, DEFAULTS, FunctionNotFoundError, RemoteError, TimeoutError } from '../node/index.ts'
import type { Ref } from '../node/index.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'

type Sleep = (ms: number) => number
type Boom = (message: string) => never
type Add = (a: number, b: number) => number

test('createMesh() with no options is a working single-peer mesh', async () => {
  const mesh = await createMesh()
  try {
    mesh.register('double', (x: number) => x * 2)
    mesh.register('concat', (a: Uint8Array, b: Uint8Array) => new Uint8Array([...a, ...b]))
    const double = mesh.fn<(x: number) => number>('double')
    const r = double.remote(21)
    assert.equal(await mesh.get(r), 42)
    // A Ref argument is dereferenced: the callee receives the value.
    const again = double.remote(r)
    assert.equal(await mesh.get(again), 84)
    const big = mesh.put(new Uint8Array(3 * 2 ** 20).fill(1))
    const joined = mesh.fn<(a: Uint8Array, b: Uint8Array) => Uint8Array>('concat').remote(new Uint8Array([9]), big)
    assert.equal((await mesh.get(joined)).length, 3 * 2 ** 20 + 1)
    for (const x of [r, again, big, joined]) x.release()
    assert.equal(mesh.stats().store.objects, 0)
  } finally {
    await mesh.stop()
  }
})

test('using releases a Ref at the end of its scope', async () => {
  const mesh = await createMesh()
  try {
    {
      using r = mesh.put({ a: 1 })
      assert.deepEqual(await mesh.get(r), { a: 1 })
      assert.equal(mesh.stats().store.objects, 1)
    }
    assert.equal(mesh.stats().store.objects, 0)
  } finally {
    await mesh.stop()
  }
})

test('wait returns exactly count ready Refs, in the order given, and leaves the rest pending', async () => {
  const t = await startMesh(2)
  const dir = mkdtempSync(join(tmpdir(), 'refmesh-wait-'))
  try {
    // Each call finishes when the test creates its file: the order is the test's, not a race of sleeps.
    const until = t.caller.fn<(path: string) => string>('untilFile')
    const gate = (name: string): string => join(dir, name)
    const slow = until.remote(gate('slow'))
    const fast = until.remote(gate('fast'))
    const medium = until.remote(gate('medium'))
    writeFileSync(gate('fast'), '')
    const { ready, pending } = await t.caller.wait([slow, fast, medium], { count: 1, timeoutMs: 10_000 })
    assert.deepEqual(ready, [fast])
    assert.deepEqual(pending, [slow, medium])
    writeFileSync(gate('medium'), '')
    const two = await t.caller.wait([slow, fast, medium], { count: 2, timeoutMs: 10_000 })
    assert.deepEqual(two.ready, [fast, medium])
    assert.deepEqual(two.pending, [slow])
    // A timeout returns what is ready so far instead of throwing.
    const timed = await t.caller.wait([slow], { timeoutMs: 100 })
    assert.deepEqual(timed, { ready: [], pending: [slow] })
    writeFileSync(gate('slow'), '')
    assert.equal(await t.caller.get(slow, { timeoutMs: 10_000 }), 'slow')
    for (const r of [slow, fast, medium]) r.release()

    // Exactly `count` ready (Ray's num_returns), in the order given, even when more are ready.
    const puts = Array.from({ length: 10 }, (_, i) => t.caller.put(i))
    const some = await t.caller.wait(puts, { count: 2, timeoutMs: 10_000 })
    assert.deepEqual(some.ready, puts.slice(0, 2))
    assert.deepEqual(some.pending, puts.slice(2))
    for (const r of puts) r.release()

    // `while pending: ready, pending = wait(pending, count=1)` sees each Ref exactly once.
    const sleep = t.caller.fn<Sleep>('sleep')
    const calls = Array.from({ length: 20 }, (_, i) => sleep.remote((i * 7) % 20 * 10))
    const seen: Ref[] = []
    let pending20: Ref[] = calls
    while (pending20.length > 0) {
      const next = await t.caller.wait(pending20, { count: 1, timeoutMs: 10_000 })
      assert.equal(next.ready.length, 1)
      assert.equal(next.pending.length, pending20.length - 1)
      seen.push(...next.ready)
      pending20 = next.pending
    }
    assert.equal(seen.length, 20)
    assert.equal(new Set(seen).size, 20)
    for (const r of calls) r.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a throwing callee surfaces as RemoteError with the remote name, message and stack', async () => {
  const t = await startMesh(1)
  try {
    const r = t.caller.fn<Boom>('boom').remote('bad input 7')
    const err = await t.caller.get(r).then(() => undefined, (e: unknown) => e)
    assert.ok(err instanceof RemoteError, `got ${String(err)}`)
    assert.equal(err.remoteName, 'RangeError')
    assert.equal(err.remoteMessage, 'bad input 7')
    assert.equal(err.peer, t.peers[0].peer)
    assert.equal(err.fn, 'boom')
    assert.match(err.remoteStack, /fixtures\/functions\.ts/, 'the stack is the remote one')
    // A failed Ref passed on fails the dependent call with the same error, without running it.
    const dependent = t.caller.fn<Add>('add').remote(r as unknown as Ref<number>, 1)
    await assert.rejects(t.caller.get(dependent), { name: 'RemoteError', remoteMessage: 'bad input 7' })
    // wait counts a failed Ref as ready.
    assert.equal((await t.caller.wait([r], { timeoutMs: 5_000 })).ready.length, 1)
    r.release()
    dependent.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('calling a function no peer offers fails fast, naming it', async () => {
  const t = await startMesh(1)
  try {
    const started = performance.now()
    const r = t.caller.fn('no-such-function').remote(1)
    await assert.rejects(t.caller.get(r, { timeoutMs: 10_000 }), (err: unknown) => {
      assert.ok(err instanceof FunctionNotFoundError)
      assert.match(err.message, /no-such-function/)
      return true
    })
    // It waits only the short grace period for an offer (DEFAULTS.functionOfferGraceMs).
    assert.ok(performance.now() - started < DEFAULTS.functionOfferGraceMs + 1_000)
    r.release()
  } finally {
    await t.close()
  }
})

test('timeouts: a call and a get give up with TimeoutError', async () => {
  const t = await startMesh(1)
  try {
    const sleep = t.caller.fn<Sleep>('sleep')
    const slow = sleep.options({ timeoutMs: 200 }).remote(5_000)
    await assert.rejects(t.caller.get(slow), (err: unknown) => err instanceof TimeoutError)
    const other = sleep.remote(1_000)
    await assert.rejects(t.caller.get(other, { timeoutMs: 100 }), (err: unknown) => err instanceof TimeoutError)
    const controller = new AbortController()
    const aborted = t.caller.get(other, { signal: controller.signal })
    controller.abort()
    await assert.rejects(aborted, { name: 'AbortError' })
    assert.equal(await t.caller.get(other, { timeoutMs: 5_000 }), 1_000)
    slow.release()
    other.release()
  } finally {
    await t.close()
  }
})

test('calls made inside a running call work like any other, and SharedRefs arrive as Refs', async () => {
  const mesh = await createMesh()
  const t = await startMesh(1)
  try {
    const peer = t.peers[0]
    await mesh.connect(peer.addrs[0])
    // This peer's function calls the remote 'add' twice and reads a SharedRef it was given.
    mesh.register('addThrice', async (a: number, r: Ref<number>) => {
      const add = mesh.fn<Add>('add').options({ peer: peer.peer })
      using once = add.remote(a, r)
      using twice = add.remote(once, r)
      return await mesh.get(twice) + await mesh.get(r)
    })
    const base = mesh.put(5)
    const r = mesh.fn<(a: number, r: Ref<number>) => number>('addThrice').remote(1, shared(base))
    assert.equal(await mesh.get(r), 1 + 5 + 5 + 5)
    r.release()
    base.release()
    assert.equal(mesh.stats().store.objects, 0)
  } finally {
    await mesh.stop()
    await t.close()
  }
})

test('a call blocked on its nested calls lends its share: a recursion over fresh peers runs as fast as over warm ones', async () => {
  const t = await startMesh(3)
  try {
    type Tree = (depth: number, fanout: number, ms: number) => number
    const tree = t.caller.fn<Tree>('tree')
    // Every peer has run a call (connections and the call path are warm); none has run `tree`.
    for (const p of t.peers) {
      using r = t.caller.fn<Add>('add').options({ peer: p.peer }).remote(1, 2)
      await t.caller.get(r, { timeoutMs: 10_000 })
    }
    const run = async (): Promise<number> => {
      const started = performance.now()
      const r = tree.remote(4, 2, 50)
      assert.equal(await t.caller.get(r, { timeoutMs: 60_000 }), 31, 'depth 4, fan-out 2: 31 calls')
      r.release()
      return performance.now() - started
    }
    // New to every peer, each call of `tree` would wait its parent's admission (2 s a level) were the share not lent.
    const fresh = await run()
    // The median of three warm runs (the machine is shared: one run may be slow or fast by chance).
    const warm = [await run(), await run(), await run()].sort((a, b) => a - b)[1]
    assert.ok(fresh <= 1.5 * warm, `fresh peers ${Math.round(fresh)} ms, warm ${Math.round(warm)} ms`)
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('an argument\'s Ref may be released right after the call that takes it', async () => {
  const t = await startMesh(1)
  try {
    const big = t.caller.put(new Uint8Array(2 * 2 ** 20).fill(5))
    const r = t.caller.fn<(x: Uint8Array) => { length: number, checksum: number }>('checksum').remote(big)
    big.release()
    assert.equal((await t.caller.get(r, { timeoutMs: 30_000 })).length, 2 * 2 ** 20)
    r.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})
