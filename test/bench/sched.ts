/**
 * npm run bench:sched — the gossip-based scheduler, each figure against its
 * baseline in the same run:
 *  - locality: bytes moved between peers placing calls over data spread on four
 *    peers, scheduler vs random placement of the same calls
 *  - balance: 400 CPU-bound calls of uneven length on four peers (two cores in
 *    all): makespan vs the ideal, total CPU work / cores
 *  - pipelining: calls whose arguments live on another peer, prefetch off vs on,
 *    transfer and compute of about the same length
 *  - throughput: no-op calls per second from one caller to four peers
 * Ends with one `bench-result {json}` line.
 */
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { createMesh } from '../../node/index.ts'
import type { Mesh, Ref } from '../../node/index.ts'
import { spawnPeers, stopAll, waitForFullMesh } from '../../node/local-cluster.ts'
import type { PeerProcess, SpawnPeerOptions } from '../../node/local-cluster.ts'
import { spin } from '../fixtures/worker-functions.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const WORKER_FIXTURES = fileURLToPath(new URL('../fixtures/worker-functions.ts', import.meta.url))
const MiB = 2 ** 20

interface Cluster { mesh: Mesh, peers: PeerProcess[] }

async function withCluster<T> (n: number, opts: SpawnPeerOptions, body: (c: Cluster) => Promise<T>): Promise<T> {
  const peers = await spawnPeers(n, { module: FIXTURES, workerModules: [WORKER_FIXTURES], ...opts })
  let mesh: Mesh | undefined
  try {
    mesh = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(mesh, peers)
    // Let a round of gossip carry every peer's state.
    await new Promise(resolve => setTimeout(resolve, 1500))
    return await body({ mesh, peers })
  } finally {
    await mesh?.stop()
    await stopAll(peers)
  }
}

async function chunkBytesIn (c: Cluster): Promise<number> {
  const stats = await Promise.all(c.peers.map(async p => await c.mesh.peerStats(p.peer, { timeoutMs: 10_000 })))
  return stats.reduce((n, s) => n + s.traffic.chunkIn, 0)
}

async function locality (c: Cluster): Promise<{ scheduler: number, random: number }> {
  const make = c.mesh.fn<(n: number, seed: number) => Uint8Array>('make')
  const data: Array<Ref<Uint8Array>> = []
  for (let j = 0; j < 6; j++) c.peers.forEach((p, i) => data.push(make.options({ peer: p.peer }).remote(4 * MiB, i * 10 + j)))
  await c.mesh.wait(data, { timeoutMs: 120_000 })
  const sum = c.mesh.fn<(x: Uint8Array) => unknown>('checksum')
  const run = async (place: (i: number) => Parameters<typeof sum.options>[0]): Promise<number> => {
    const before = await chunkBytesIn(c)
    const refs = data.map((x, i) => sum.options(place(i)).remote(x))
    await c.mesh.wait(refs, { timeoutMs: 120_000 })
    for (const r of refs) r.release()
    return await chunkBytesIn(c) - before
  }
  const scheduler = await run(() => ({}))
  const random = await run(() => ({ peer: c.peers[Math.floor(Math.random() * c.peers.length)].peer }))
  for (const x of data) x.release()
  return { scheduler, random }
}

async function balance (c: Cluster, cores: number): Promise<{ makespanMs: number, idealMs: number }> {
  // Uneven lengths: a few long calls among many short ones.
  const unitsPerMs = calibrate()
  const lengthsMs = Array.from({ length: 400 }, (_, i) => (i % 10 === 0 ? 40 : 2 + (i * 7919) % 9))
  const totalMs = lengthsMs.reduce((a, b) => a + b, 0)
  const spinFn = c.mesh.fn<(n: number) => number>('spin')
  const started = performance.now()
  const refs = lengthsMs.map(ms => spinFn.remote(Math.round(ms * unitsPerMs)))
  const { ready } = await c.mesh.wait(refs, { timeoutMs: 300_000 })
  const makespanMs = performance.now() - started
  if (ready.length !== refs.length) throw new Error('balance: calls did not finish')
  for (const r of refs) r.release()
  return { makespanMs, idealMs: totalMs / cores }
}

/** spin() rounds per millisecond of one core, measured here. */
function calibrate (): number {
  spin(1e6)
  const n = 2e7
  const started = performance.now()
  spin(n)
  return n / (performance.now() - started)
}

/** 12 calls on one executor whose arguments live on another peer; compute per call as long as `computeMs`, or as one transfer when undefined. */
async function pipelining (prefetch: boolean, computeMs?: number): Promise<{ ms: number, computeMs: number }> {
  return await withCluster(2, { workers: 1, args: prefetch ? [] : ['--no-prefetch'] }, async (c) => {
    const [holder, executor] = c.peers
    const make = c.mesh.fn<(n: number, seed: number) => Uint8Array>('make').options({ peer: holder.peer })
    const data = Array.from({ length: 12 }, (_, i) => make.remote(16 * MiB, i))
    await c.mesh.wait(data, { timeoutMs: 120_000 })
    // Compute about as long as moving one argument: measure one transfer first.
    const probe = c.mesh.fn<(x: Uint8Array) => unknown>('checksum').options({ peer: executor.peer })
    using probeData = make.remote(16 * MiB, 99)
    await c.mesh.wait([probeData], { timeoutMs: 60_000 })
    // The same call twice: the first pulls the argument, the second finds it there.
    const timed = async (): Promise<number> => {
      const t0 = performance.now()
      using r = probe.remote(probeData)
      await c.mesh.get(r, { timeoutMs: 60_000 })
      return performance.now() - t0
    }
    const pulled = await timed()
    const local = await timed()
    const perCallMs = computeMs ?? Math.max(20, pulled - local)
    const work = Math.round(perCallMs * calibrate())
    const spinOver = c.mesh.fn<(x: Uint8Array, n: number) => number>('spinOver').options({ peer: executor.peer })
    const started = performance.now()
    const refs = data.map(x => spinOver.remote(x, work))
    await c.mesh.wait(refs, { timeoutMs: 300_000 })
    const ms = performance.now() - started
    for (const r of [...refs, ...data]) r.release()
    return { ms, computeMs: perCallMs }
  })
}

async function throughput (c: Cluster): Promise<number> {
  const noop = c.mesh.fn<(x: Uint8Array) => Uint8Array>('noop')
  const arg = new Uint8Array(100)
  const once = async (): Promise<void> => {
    using r = noop.remote(arg)
    await c.mesh.get(r, { timeoutMs: 10_000 })
  }
  for (let i = 0; i < 200; i++) await once()
  let done = 0
  const started = performance.now()
  const deadline = started + 3000
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (performance.now() < deadline) {
      await once()
      done++
    }
  }))
  return done / ((performance.now() - started) / 1000)
}

const cores = availableParallelism()
const figures = await withCluster(4, { workers: 1 }, async (c) => ({
  ...await locality(c).then(l => ({ locality_scheduler_bytes: l.scheduler, locality_random_bytes: l.random })),
  ...await balance(c, cores).then(b => ({ balance_makespan_ms: b.makespanMs, balance_ideal_ms: b.idealMs })),
  throughput_calls_per_s: await throughput(c)
}))
const on = await pipelining(true)
const off = await pipelining(false, on.computeMs)
const all = { ...figures, prefetch_on_ms: on.ms, prefetch_off_ms: off.ms, pipelining_compute_ms_per_call: on.computeMs, cores }
const ratios = {
  locality_bytes: all.locality_scheduler_bytes / Math.max(all.locality_random_bytes, 1),
  balance: all.balance_makespan_ms / all.balance_ideal_ms,
  prefetch_speedup: all.prefetch_off_ms / all.prefetch_on_ms
}
const fmt = (n: number): string => n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toPrecision(3)
console.log('| measure | refmesh | baseline | ratio | target |')
console.log('|---|---|---|---|---|')
console.log(`| locality: bytes moved, 24 calls over 4 MiB objects on 4 peers | ${fmt(all.locality_scheduler_bytes)} | ${fmt(all.locality_random_bytes)} (random placement) | ${ratios.locality_bytes.toPrecision(3)} | <= 0.1 |`)
console.log(`| balance: makespan of 400 uneven CPU-bound calls, 4 peers, ${cores} cores (ms) | ${fmt(all.balance_makespan_ms)} | ${fmt(all.balance_ideal_ms)} (ideal) | ${ratios.balance.toPrecision(3)} | <= 1.3 |`)
console.log(`| pipelining: 12 calls, arguments on another peer (ms) | ${fmt(all.prefetch_on_ms)} (prefetch on) | ${fmt(all.prefetch_off_ms)} (off) | ${ratios.prefetch_speedup.toPrecision(3)} (speedup) | >= 1.5 |`)
console.log(`| throughput: no-op calls/s, one caller to 4 peers, 64 in flight | ${fmt(all.throughput_calls_per_s)} | see bench:chain for gRPC | | |`)
console.log(`bench-result ${JSON.stringify({ name: 'sched', figures: all, ratios })}`)
