/**
 * The worker-pool protocol of core/worker-pool.ts with workers that answer in
 * process: what differs between the runtimes (a running call aborted) and what
 * is shared (a dead worker fails its call and is replaced). The real adapters
 * run in worker-pool.test.ts (worker_threads) and test/browser (Web Workers).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { logger } from '@libp2p/logger'
import { SlotPool, WorkerPoolClosedError } from '../core/worker-pool.ts'
import type { PoolWorkerEvents, ToWorker } from '../core/worker-pool.ts'
import { PeerDiedError } from '../core/errors.ts'

/** Workers that offer `echo` and answer a call only when told to. */
function fakePool (endAbortedCalls: boolean): { pool: SlotPool, started: number, workers: Array<{ events: PoolWorkerEvents, calls: ToWorker[], ended: boolean }> } {
  const workers: Array<{ events: PoolWorkerEvents, calls: ToWorker[], ended: boolean }> = []
  const state = {
    pool: new SlotPool({
      size: 1,
      log: logger('refmesh:test-slot-pool'),
      crashed: (message, options) => new PeerDiedError(message, options),
      endAbortedCalls,
      spawn: events => {
        const w = { events, calls: [] as ToWorker[], ended: false }
        workers.push(w)
        state.started++
        queueMicrotask(() => { events.message({ type: 'ready', names: ['echo'] }) })
        return { post: msg => { w.calls.push(msg) }, terminate: () => { w.ended = true } }
      }
    }),
    started: 0,
    workers
  }
  return state
}

async function until (what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise(resolve => setTimeout(resolve, 5))
  assert.ok(ok(), what)
}

test('a running call aborted: its worker is ended and replaced (Web Workers), or the call runs on (Node)', async () => {
  const ending = fakePool(true)
  await ending.pool.start()
  const controller = new AbortController()
  const call = ending.pool.run('echo', [1], { signal: controller.signal })
  await until('the call reached the worker', () => ending.workers[0].calls.length === 1)
  controller.abort(new Error('gave up'))
  await assert.rejects(call, /gave up/)
  assert.equal(ending.workers[0].ended, true)
  await until('a replacement started', () => ending.started === 2)
  await ending.pool.close()

  const running = fakePool(false)
  await running.pool.start()
  const other = new AbortController()
  const call2 = running.pool.run('echo', [2], { signal: other.signal })
  await until('the call reached the worker', () => running.workers[0].calls.length === 1)
  other.abort(new Error('gave up'))
  const sent = running.workers[0].calls[0] as Extract<ToWorker, { type: 'call' }>
  running.workers[0].events.message({ type: 'result', id: sent.id, value: 'done anyway' })
  assert.equal(await call2, 'done anyway')
  assert.equal(running.workers[0].ended, false)
  await running.pool.close()
})

test('a worker gone mid-call fails the call with the crash error and is replaced; close() fails what is left', async () => {
  const { pool, workers } = fakePool(false)
  await pool.start()
  const call = pool.run('echo', [1])
  await until('the call reached the worker', () => workers[0].calls.length === 1)
  workers[0].events.gone('exited with code 1', new Error('boom'), ': Error: boom')
  await assert.rejects(call, (err: Error) => err instanceof PeerDiedError && err.message === 'the worker running echo exited with code 1: Error: boom')
  await until('a replacement is ready', () => workers.length === 2 && pool.busy === 0)
  const queued = pool.run('echo', [2])
  await until('the call reached the new worker', () => workers[1].calls.length === 1)
  await pool.close()
  await assert.rejects(queued, WorkerPoolClosedError)
  assert.equal(workers[1].ended, true)
})
