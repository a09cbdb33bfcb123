/**
 * Failures: lineage reconstruction of lost call results, fate sharing when an
 * owner dies, and calls and reads that never wait forever on a peer that hangs.
 * Real peer processes, killed with SIGKILL or frozen with SIGSTOP.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Ref } from '../node/index.ts'
import { DEFAULTS } from '../core/constants.ts'
import { startMesh, waitFor } from './helpers.ts'
import { pattern } from './fixtures/functions.ts'

type Make = (n: number, seed: number) => Uint8Array
type Noop = (x: unknown) => unknown
type PutOwn = (n: number) => { made: Ref<Uint8Array> }
type Sleep = (ms: number) => number
const MiB = 2 ** 20
/** the failure detector's bound: a silent peer with no connection is dead after this */
const DEAD_MS = (DEFAULTS.deadAfterBeats + 1) * DEFAULTS.heartbeatMs

test('lineage: lost call results are computed again, as many calls as lineage requires and no more', async () => {
  const t = await startMesh(4)
  try {
    const [a, b, c, d] = t.peers
    const reconstructions = (): number => t.caller.stats().calls.reconstructions
    const make = t.caller.fn<Make>('make')
    const noop = t.caller.fn<Noop>('noop')

    // x and y = noop(x) both live only on a: losing a loses both; y needs x, so both run again.
    const x1 = make.options({ peer: a.peer }).remote(8 * MiB, 1)
    const y1 = noop.options({ peer: a.peer }).remote(x1) as Ref<Uint8Array>
    await t.caller.wait([y1], { timeoutMs: 30_000 })
    await a.kill('SIGKILL')
    const started = performance.now()
    assert.deepEqual(await t.caller.get(y1, { timeoutMs: 60_000 }), pattern(8 * MiB, 1))
    assert.equal(reconstructions(), 2, 'y and the x it needs were computed again')
    assert.ok(performance.now() - started < 4 * DEAD_MS, `recovered in ${Math.round(performance.now() - started)} ms`)

    // x2 lives on b, y2 = noop(x2) on c (which pulled a copy of x2). Losing c loses only y2.
    const x2 = make.options({ peer: b.peer }).remote(8 * MiB, 2)
    const y2 = noop.options({ peer: c.peer }).remote(x2) as Ref<Uint8Array>
    await t.caller.wait([y2], { timeoutMs: 30_000 })
    const before = reconstructions()
    await c.kill('SIGKILL')
    assert.deepEqual(await t.caller.get(y2, { timeoutMs: 60_000 }), pattern(8 * MiB, 2))
    assert.equal(reconstructions() - before, 1, 'only y2 ran again: x2 survived on b')

    // x3 lives only on d, which dies while the caller pulls it: b and the caller's other peers
    // still gossip a link to d, but a dead holder is no reason to go around (a detour through b
    // would wait on a copy from nobody): x3 is computed again, once, at once.
    const x3 = make.options({ peer: d.peer }).remote(128 * MiB, 3)
    await t.caller.wait([x3], { timeoutMs: 30_000 })
    const again = reconstructions()
    const reading = t.caller.get(x3, { timeoutMs: 60_000 })
    await waitFor('the caller to pull x3 from d', () => (t.caller.stats().trafficByPeer[d.peer]?.chunkIn ?? 0) > 0 ? true : undefined, 30_000, 5)
    await d.kill('SIGKILL')
    const killed = performance.now()
    assert.deepEqual(await reading, pattern(128 * MiB, 3))
    assert.equal(reconstructions() - again, 1, 'x3 ran again, once')
    assert.equal(t.caller.stats().transfer.detours, 0, 'no detour around the dead holder')
    assert.ok(performance.now() - killed < 4 * DEAD_MS, `recovered in ${Math.round(performance.now() - killed)} ms`)

    for (const r of [x1, y1, x2, y2, x3]) r.release()
  } finally {
    await t.close()
  }
})

test('owner death: a SIGKILLed owner is declared dead within 1 s (redial refused); a borrower\'s get fails with OwnerDiedError and its copies are freed', async () => {
  const t = await startMesh(3)
  try {
    const [owner, reader] = t.peers
    const out = t.caller.fn<PutOwn>('putOwn').options({ peer: owner.peer }).remote(6 * MiB)
    const { made } = await t.caller.get(out, { timeoutMs: 30_000 })
    assert.equal(made.owner, owner.peer)
    // The reader and the caller both hold copies of it.
    const copy = t.caller.fn<Noop>('checksum').options({ peer: reader.peer }).remote(made)
    await t.caller.get(copy, { timeoutMs: 30_000 })
    assert.equal((await t.caller.get(made, { timeoutMs: 30_000 })).length, 6 * MiB)
    assert.ok((await t.stats(reader.peer)).store.keys.includes(made.key), 'the reader holds a copy')
    assert.ok(t.caller.stats().store.keys.includes(made.key), 'the caller holds a copy')

    let killed = performance.now()
    const declared = new Promise<{ ms: number, cause: string }>(resolve => {
      t.caller.onPeerDeath((peer, cause) => { if (peer === owner.peer) resolve({ ms: performance.now() - killed, cause }) })
    })
    killed = performance.now()
    await owner.kill('SIGKILL')
    // Its connections closed and the redial was refused: dead at once, not after the heartbeat bound.
    const death = await declared
    assert.equal(death.cause, 'refused')
    assert.ok(death.ms < 1_000, `declared dead ${Math.round(death.ms)} ms after the kill`)
    assert.equal(t.caller.stats().deaths.refused, 1)
    await waitFor('the caller to free its copy', () => t.caller.stats().store.keys.includes(made.key) ? undefined : true, 3 * DEAD_MS)
    await assert.rejects(t.caller.get(made, { timeoutMs: 3 * DEAD_MS }), (err: Error) => err.name === 'OwnerDiedError')
    const ms = performance.now() - killed
    // The detector looks once a heartbeat, so the bound is DEAD_MS plus one beat.
    assert.ok(ms < DEAD_MS + DEFAULTS.heartbeatMs, `OwnerDiedError after ${Math.round(ms)} ms (bound ${DEAD_MS} ms + one ${DEFAULTS.heartbeatMs} ms beat)`)
    await waitFor('the reader to free its copy', async () => (await t.stats(reader.peer)).store.keys.includes(made.key) ? undefined : true, 3 * DEAD_MS)
    made.release()
    out.release()
    copy.release()
  } finally {
    await t.close()
  }
})

test('a peer that hangs (SIGSTOP, connections left open): declared dead by the heartbeats, not before; calls time out or fail over in bounded time', async () => {
  const t = await startMesh(2)
  const [frozen, healthy] = t.peers
  try {
    const sleep = t.caller.fn<Sleep>('sleep')
    // A long call runs on the peer about to hang.
    const long = sleep.options({ prefer: frozen.peer }).remote(2_000)
    await waitFor('the call to start', async () => (await t.stats(frozen.peer)).calls.running > 0 ? true : undefined, 10_000)
    let frozenAt = performance.now()
    const declared = new Promise<{ ms: number, cause: string }>(resolve => {
      t.caller.onPeerDeath((peer, cause) => { if (peer === frozen.peer) resolve({ ms: performance.now() - frozenAt, cause }) })
    })
    frozen.child.kill('SIGSTOP')
    frozenAt = performance.now()

    // A call with its own timeout, required on the frozen peer: TimeoutError at its bound.
    const bounded = sleep.options({ peer: frozen.peer, timeoutMs: 1_500 }).remote(10)
    await assert.rejects(t.caller.get(bounded, { timeoutMs: 10_000 }), (err: Error) => err.name === 'TimeoutError')
    // An abort ends a get at once.
    const controller = new AbortController()
    const reading = t.caller.get(long, { signal: controller.signal })
    controller.abort()
    await assert.rejects(reading)

    // Without a timeout, the call fails over once the detector declares the peer dead.
    assert.equal(await t.caller.get(long, { timeoutMs: 60_000 }), 2_000)
    const ms = performance.now() - frozenAt
    const bound = (DEFAULTS.deadWhileConnectedBeats + 2) * DEFAULTS.heartbeatMs + 2_000
    assert.ok(ms < bound, `failed over after ${Math.round(ms)} ms (bound ${bound} ms)`)
    // Silent, not refused: declared by the heartbeats, within their bound and not before it.
    const death = await declared
    assert.equal(death.cause, 'silent')
    assert.ok(death.ms >= DEFAULTS.deadAfterBeats * DEFAULTS.heartbeatMs, `declared dead ${Math.round(death.ms)} ms after it froze, before the heartbeat bound`)
    assert.ok(death.ms < bound, `declared dead ${Math.round(death.ms)} ms after it froze (bound ${bound} ms)`)
    assert.equal(t.caller.stats().deaths.refused, 0)
    assert.ok((await t.stats(healthy.peer)).calls.executed >= 1, 'the healthy peer ran it')
    long.release()
    bounded.release()
  } finally {
    frozen.child.kill('SIGKILL')
    await t.close()
  }
})

test('an idle mesh gossips unchanged states rarely and stays alive on hellos; a peer that hangs is still suspect within the bound', async () => {
  const t = await startMesh(2)
  const [frozen] = t.peers
  try {
    // Idle: each heartbeat with an unchanged state is a quiet one (hellos only), and nobody is ever suspected.
    const start = (await t.stats(frozen.peer)).gossip
    let suspected: string | undefined
    await waitFor('six quiet heartbeats on an idle peer', async () => {
      const gone = t.caller.peers().find(p => p.liveness !== 'alive')
      if (gone !== undefined) suspected = `${gone.peer} was ${gone.liveness}`
      return (await t.stats(frozen.peer)).gossip.quiet - start.quiet >= 6 ? true : undefined
    }, 20 * DEFAULTS.heartbeatMs, 100)
    assert.equal(suspected, undefined, 'every peer stayed alive on hellos')
    const idle = (await t.stats(frozen.peer)).gossip
    assert.ok(idle.published - start.published < idle.quiet - start.quiet, `published ${idle.published - start.published} states in ${idle.quiet - start.quiet} quiet beats`)
    // The early resends of its unchanged state (after 1, 2, 4, 8 beats) rode in its hellos.
    await waitFor('a state resent in hellos', async () => (await t.stats(frozen.peer)).gossip.resent > start.resent ? true : undefined, 10 * DEFAULTS.heartbeatMs, 100)

    // It hangs: no hello, no state. Suspect after 3 silent beats, seen at the next tick.
    frozen.child.kill('SIGSTOP')
    const frozenAt = performance.now()
    await waitFor('the hung peer to be suspect', () => t.caller.peers().find(p => p.peer === frozen.peer)?.liveness !== 'alive' ? true : undefined, 10 * DEFAULTS.heartbeatMs, 20)
    const ms = performance.now() - frozenAt
    const bound = (DEFAULTS.suspectAfterBeats + 2) * DEFAULTS.heartbeatMs
    assert.ok(ms < bound, `suspect ${Math.round(ms)} ms after it hung (bound ${bound} ms)`)
  } finally {
    frozen.child.kill('SIGKILL')
    await t.close()
  }
})
