/**
 * npm run bench:sched — the gossip-based scheduler, each figure against its
 * baseline in the same run:
 *  - locality: bytes moved between peers placing calls over data spread on four
 *    peers, scheduler vs random placement of the same calls
 *  - balance: 400 CPU-bound calls of uneven length on four peers (two cores in
 *    all): makespan vs the ideal, total CPU work / cores (the same calls timed
 *    one after another in this process); the median of three rounds after two
 *    untimed ones
 *  - pipelining: calls whose arguments live on another peer, prefetch off vs on,
 *    transfer and compute of about the same length
 *  - throughput: no-op calls per second from one caller to four peers
 *  - idle_cpu: CPU seconds per second an idle five-peer mesh spends (this process's
 *    mesh and four spawned peers, every thread, from /proc), / cores
 * Ends with one `bench-result {json}` line. `--balance-only` measures balance alone; `--idle-only` measures idle_cpu alone
 * (IDLE_WINDOW_S sets its window, 10 s by default; IDLE_SETTLE_S the wait before it, 5 s).
 */
import { execFile } from 'node:child_process'
import { availableParallelism, loadavg } from 'node:os'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { createMesh } from '../../node/index.ts'
import type { Mesh, Ref } from '../../node/index.ts'
import { spawnPeer, spawnPeers, stopAll, waitForFullMesh } from '../../node/local-cluster.ts'
import type { PeerProcess, SpawnPeerOptions } from '../../node/local-cluster.ts'
import { spin } from '../fixtures/worker-functions.ts'
import { idleShare, machineCpu, threadCpuDelta, threadCpuS } from './proc-cpu.ts'
import type { ThreadCpu } from './proc-cpu.ts'
import { createHosts, netnsAvailable } from '../netns.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const WORKER_FIXTURES = fileURLToPath(new URL('../fixtures/worker-functions.ts', import.meta.url))
const MiB = 2 ** 20
const PIPELINING_MBIT = 100
const PIPELINING_PAIRS = 3
/** the pair with the median speedup, and every pair's speedup */
interface PipeliningResult { on: number, off: number, computeMs: number, speedups: number[] }
const execFileAsync = promisify(execFile)

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

const BALANCE_ROUNDS = 3
const BALANCE_WARMUP_ROUNDS = 2

/**
 * The median makespan of BALANCE_ROUNDS rounds, after BALANCE_WARMUP_ROUNDS
 * untimed ones: the first rounds of a fresh mesh run its call path before the
 * JIT has optimized it (measured: the first ~15% slower than the third), which
 * is start-up, not balance.
 */
/** Where a balance round's CPU went, in ms: the driver (every thread), the peers by thread name, and the machine's idle time over both cores. */
interface RoundCpu { driverMs: number, peersMs: Record<string, number>, idleMs: number }

const BALANCE_CALLS = 400

/** CPU microseconds per call of a balance round: the caller, the executors' main threads, and their workers beyond the calls' own work. */
function balanceUsPerCall (cpu: RoundCpu, workMs: number): { caller: number, executorMain: number, workerOverhead: number } {
  return {
    caller: Math.round(cpu.driverMs * 1000 / BALANCE_CALLS),
    executorMain: Math.round((cpu.peersMs.MainThread ?? 0) * 1000 / BALANCE_CALLS),
    workerOverhead: Math.round(((cpu.peersMs['refmesh-worker'] ?? 0) - workMs) * 1000 / BALANCE_CALLS)
  }
}

async function balance (c: Cluster, cores: number): Promise<{ makespanMs: number, idealMs: number, roundsMs: number[], cpu: RoundCpu }> {
  // Uneven lengths: a few long calls among many short ones.
  const unitsPerMs = calibrate()
  const lengthsMs = Array.from({ length: BALANCE_CALLS }, (_, i) => (i % 10 === 0 ? 40 : 2 + (i * 7919) % 9))
  const units = lengthsMs.map(ms => Math.round(ms * unitsPerMs))
  // The total CPU work, measured: the same calls run one after another on this thread
  // (the fastest of two runs), not the lengths asked for, which a rough calibration misses.
  const totalMs = Math.min(...[0, 1].map(() => {
    const started = performance.now()
    for (const n of units) spin(n)
    return performance.now() - started
  }))
  const spinFn = c.mesh.fn<(n: number) => number>('spin')
  const peerPids = c.peers.map(p => p.child.pid ?? 0)
  const read = (pids: number[]): Map<number, ThreadCpu[]> => new Map(pids.map(pid => [pid, threadCpuS(pid)]))
  const sum = (byName: Record<string, number>): number => Object.values(byName).reduce((a, b) => a + b, 0)
  const round = async (): Promise<{ ms: number, cpu: RoundCpu }> => {
    const driverBefore = read([process.pid])
    const peersBefore = read(peerPids)
    const machineBefore = machineCpu()
    const started = performance.now()
    const refs = units.map(n => spinFn.remote(n))
    const { ready } = await c.mesh.wait(refs, { timeoutMs: 300_000 })
    const makespanMs = performance.now() - started
    const machineAfter = machineCpu()
    const cpu: RoundCpu = {
      driverMs: sum(threadCpuDelta(driverBefore, read([process.pid]))) * 1000,
      peersMs: Object.fromEntries(Object.entries(threadCpuDelta(peersBefore, read(peerPids))).map(([name, cpuS]) => [name, Math.round(cpuS * 1000)])),
      idleMs: Math.round(idleShare(machineBefore, machineAfter) * makespanMs * cores)
    }
    if (ready.length !== refs.length) throw new Error('balance: calls did not finish')
    for (const r of refs) r.release()
    return { ms: makespanMs, cpu }
  }
  for (let i = 0; i < BALANCE_WARMUP_ROUNDS; i++) await round()
  const rounds: Array<{ ms: number, cpu: RoundCpu }> = []
  const monoStart = process.hrtime.bigint() / 1000n
  for (let i = 0; i < BALANCE_ROUNDS; i++) rounds.push(await round())
  // The timed rounds on the monotonic clock V8's profiles use: profile them with NODE_OPTIONS=--cpu-prof.
  process.stderr.write(`balance rounds window (monotonic us): ${monoStart} ${process.hrtime.bigint() / 1000n}\n`)
  const median = [...rounds].sort((a, b) => a.ms - b.ms)[Math.floor(BALANCE_ROUNDS / 2)]
  return { makespanMs: median.ms, idealMs: totalMs / cores, roundsMs: rounds.map(r => r.ms), cpu: median.cpu }
}

/** spin() rounds per millisecond of one core, measured here. */
function calibrate (): number {
  spin(1e6)
  const n = 2e7
  const started = performance.now()
  spin(n)
  return n / (performance.now() - started)
}

interface PipeliningPlace {
  /** where the driver's own peer listens */
  listen?: string
  holder: Pick<SpawnPeerOptions, 'netns' | 'listen'>
  executor: Pick<SpawnPeerOptions, 'netns' | 'listen'>
}

/**
 * 12 calls on one executor whose 8 MiB arguments live on another peer; compute
 * per call as long as one transfer (measured first) or `computeMs`.
 */
async function pipelining (place: PipeliningPlace, prefetch: boolean, computeMs?: number): Promise<{ ms: number, computeMs: number }> {
  const args = prefetch ? [] : ['--no-prefetch']
  const peerOpts = { module: FIXTURES, workerModules: [WORKER_FIXTURES], workers: 1, args }
  const peers: PeerProcess[] = []
  let mesh: Mesh | undefined
  try {
    peers.push(await spawnPeer({ ...peerOpts, ...place.holder }))
    peers.push(await spawnPeer({ ...peerOpts, ...place.executor, bootstrap: [peers[0].addrs[0]] }))
    mesh = await createMesh({ bootstrap: [peers[0].addrs[0]], ...(place.listen !== undefined ? { listen: [place.listen] } : {}) })
    await waitForFullMesh(mesh, peers)
    await new Promise(resolve => setTimeout(resolve, 1500))
    const c = { mesh, peers }
    const [holder, executor] = c.peers
    const make = c.mesh.fn<(n: number, seed: number) => Uint8Array>('make').options({ peer: holder.peer })
    const data = Array.from({ length: 12 }, (_, i) => make.remote(8 * MiB, i))
    await c.mesh.wait(data, { timeoutMs: 120_000 })
    // Compute about as long as moving one argument: measure one transfer first.
    const probe = c.mesh.fn<(x: Uint8Array) => unknown>('checksum').options({ peer: executor.peer })
    using probeData = make.remote(8 * MiB, 99)
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
    // One untimed call, so the executor knows the function (JIT, result size) before the timed ones.
    using warm = spinOver.remote(probeData, 1)
    await c.mesh.get(warm, { timeoutMs: 60_000 })
    const started = performance.now()
    const refs = data.map(x => spinOver.remote(x, work))
    await c.mesh.wait(refs, { timeoutMs: 300_000 })
    const ms = performance.now() - started
    for (const r of [...refs, ...data]) r.release()
    return { ms, computeMs: perCallMs }
  } finally {
    await mesh?.stop()
    await stopAll(peers)
  }
}

/**
 * Prefetch on, then off with the same compute per call. Between three hosts in
 * network namespaces with 100 Mbit/s links when this machine allows it (root),
 * so the transfer waits on the link while the compute uses a core, as between
 * volunteer machines; on loopback both compete for the same two cores.
 */
async function pipeliningBoth (): Promise<PipeliningResult & { link: string }> {
  if (!await netnsAvailable()) return { ...await pipeliningPairs({ holder: {}, executor: {} }), link: 'loopback' }
  const hosts = await createHosts({ hosts: 3, rateMbit: PIPELINING_MBIT })
  try {
    // The driver runs on host 0, so it re-runs this file there.
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', hosts.names[0], process.execPath, fileURLToPath(import.meta.url), '--pipelining-driver', JSON.stringify(hosts)], { maxBuffer: 1 << 20 })
    const line = stdout.split('\n').find(l => l.startsWith('pipelining-result '))
    if (line === undefined) throw new Error(`pipelining driver printed no result:\n${stdout}`)
    return { ...JSON.parse(line.slice('pipelining-result '.length)) as PipeliningResult, link: `${PIPELINING_MBIT} Mbit/s` }
  } finally {
    await hosts.stop()
  }
}

/**
 * PIPELINING_PAIRS on/off pairs, each pair with its own compute per call; the
 * median of the pairs' speedups (one pair moves by 20-50% on a busy machine).
 */
async function pipeliningPairs (place: PipeliningPlace): Promise<PipeliningResult> {
  const pairs: Array<{ on: number, off: number, computeMs: number }> = []
  for (let i = 0; i < PIPELINING_PAIRS; i++) {
    const on = await pipelining(place, true)
    const off = await pipelining(place, false, on.computeMs)
    pairs.push({ on: on.ms, off: off.ms, computeMs: on.computeMs })
  }
  const speedups = pairs.map(p => p.off / p.on)
  const mid = speedups.indexOf([...speedups].sort((a, b) => a - b)[Math.floor(pairs.length / 2)])
  return { ...pairs[mid], speedups }
}

async function pipeliningDriver (hosts: { names: string[], addrs: string[] }): Promise<void> {
  const at = (i: number): Pick<SpawnPeerOptions, 'netns' | 'listen'> => ({ netns: hosts.names[i], listen: `/ip4/${hosts.addrs[i]}/tcp/0` })
  const place = { listen: `/ip4/${hosts.addrs[0]}/tcp/0`, holder: at(1), executor: at(2) }
  console.log(`pipelining-result ${JSON.stringify(await pipeliningPairs(place))}`)
}

/**
 * No-op calls/s with 64 in flight, placed by the scheduler over all peers, or all
 * on `peer` (as bench:chain does): the two together show what placement costs
 * apart from the cluster (four peers, their workers and gossip on the same cores).
 */
async function throughput (c: Cluster, peer?: string): Promise<number> {
  const noop = c.mesh.fn<(x: Uint8Array) => Uint8Array>('noop').options(peer !== undefined ? { peer } : {})
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

/** seconds an idle mesh settles (start-up, JIT, the first rounds of gossip) before it is measured */
const IDLE_SETTLE_MS = Number(process.env.IDLE_SETTLE_S ?? 5) * 1000
const IDLE_WINDOW_MS = Number(process.env.IDLE_WINDOW_S ?? 10) * 1000

interface IdleCpu {
  /** CPU seconds per second, all five processes, / cores */
  ratio: number
  /** CPU ms per second of each process (this one first) */
  perProcessMsPerS: number[]
  /** CPU ms per second by thread name, over all five processes */
  perThreadMsPerS: Record<string, number>
  /** state messages this process's mesh published and received per second */
  gossipPublishedPerS: number
  gossipReceivedPerS: number
}

/**
 * What an idle mesh costs: five peers (this process's mesh and four spawned, one
 * worker each) doing nothing but keep the mesh up (state gossip, gossipsub's
 * heartbeat, the failure detector, libp2p's own timers). Measured from /proc per
 * thread, as process.threadCpuUsage() under-reports on this VM.
 */
async function idleCpu (cores: number): Promise<IdleCpu> {
  return await withCluster(4, { workers: 1 }, async (c) => {
    await new Promise(resolve => setTimeout(resolve, IDLE_SETTLE_MS))
    const pids = [process.pid, ...c.peers.map(p => p.child.pid ?? 0)]
    const read = (): Map<number, ThreadCpu[]> => new Map(pids.map(pid => [pid, threadCpuS(pid)]))
    const gossipBefore = c.mesh.stats().gossip
    const before = read()
    const started = performance.now()
    const monoStart = process.hrtime.bigint() / 1000n
    await new Promise(resolve => setTimeout(resolve, IDLE_WINDOW_MS))
    const after = read()
    // The window on the monotonic clock V8's profiles use: profile it alone with NODE_OPTIONS=--cpu-prof.
    process.stderr.write(`idle window (monotonic us): ${monoStart} ${process.hrtime.bigint() / 1000n}\n`)
    const seconds = (performance.now() - started) / 1000
    const gossipAfter = c.mesh.stats().gossip
    const perProcess = pids.map(pid => Object.values(threadCpuDelta(new Map([[pid, before.get(pid) ?? []]]), new Map([[pid, after.get(pid) ?? []]]))).reduce((a, b) => a + b, 0))
    const perThread = Object.fromEntries(Object.entries(threadCpuDelta(before, after)).filter(([, s]) => s > 0).map(([name, s]) => [name, Math.round(s / seconds * 1e4) / 10]))
    const total = perProcess.reduce((a, b) => a + b, 0)
    return {
      ratio: total / seconds / cores,
      perProcessMsPerS: perProcess.map(s => Math.round(s / seconds * 1e4) / 10),
      perThreadMsPerS: perThread,
      gossipPublishedPerS: (gossipAfter.published - gossipBefore.published) / seconds,
      gossipReceivedPerS: (gossipAfter.received - gossipBefore.received) / seconds
    }
  })
}

function printIdle (idle: IdleCpu, cores: number): void {
  console.log(`| idle: CPU of an idle five-peer mesh, all processes and threads, ${IDLE_WINDOW_MS / 1000} s (ms/s per process ${idle.perProcessMsPerS.join(', ')}; by thread ${JSON.stringify(idle.perThreadMsPerS)}; this peer's gossip ${idle.gossipPublishedPerS.toFixed(2)} out, ${idle.gossipReceivedPerS.toFixed(2)} in /s) | ${(idle.ratio * cores * 1000).toFixed(1)} ms/s | ${cores} cores | ${idle.ratio.toPrecision(3)} | <= 0.02 |`)
}

const driverAt = process.argv.indexOf('--pipelining-driver')
if (driverAt >= 0) {
  await pipeliningDriver(JSON.parse(process.argv[driverAt + 1]) as { names: string[], addrs: string[] })
  process.exit(0)
}

const cores = availableParallelism()
if (process.argv.includes('--idle-only')) {
  const idle = await idleCpu(cores)
  console.log('| measure | refmesh | baseline | ratio | target |')
  console.log('|---|---|---|---|---|')
  printIdle(idle, cores)
  console.log(`load average (1 min) at the end: ${loadavg()[0].toFixed(2)}`)
  console.log(`bench-result ${JSON.stringify({ name: 'sched', figures: { idle_cpu_ms_per_s: idle.perProcessMsPerS, idle_cpu_threads_ms_per_s: idle.perThreadMsPerS, idle_gossip_published_per_s: idle.gossipPublishedPerS, idle_gossip_received_per_s: idle.gossipReceivedPerS, cores, loadavg_1m: loadavg()[0] }, ratios: { idle_cpu: idle.ratio } })}`)
  process.exit(0)
}
if (process.argv.includes('--balance-only')) {
  const b = await withCluster(4, { workers: 1 }, async (c) => await balance(c, cores))
  console.log(`balance: ${(b.makespanMs / b.idealMs).toPrecision(3)} (makespan ${Math.round(b.makespanMs)} ms, rounds ${b.roundsMs.map(Math.round).join(', ')}; ideal ${Math.round(b.idealMs)} ms); the median round's CPU (ms): driver ${Math.round(b.cpu.driverMs)}, peers ${JSON.stringify(b.cpu.peersMs)}, machine idle ${b.cpu.idleMs}; CPU us per call ${JSON.stringify(balanceUsPerCall(b.cpu, b.idealMs * cores))}; load ${loadavg()[0].toFixed(2)}`)
  console.log(`bench-result ${JSON.stringify({ name: 'sched', figures: { balance_makespan_ms: b.makespanMs, balance_ideal_ms: b.idealMs, balance_rounds_ms: b.roundsMs, balance_cpu: b.cpu, balance_cpu_us_per_call: balanceUsPerCall(b.cpu, b.idealMs * cores), cores }, ratios: { balance: b.makespanMs / b.idealMs } })}`)
  process.exit(0)
}
const idle = await idleCpu(cores)
const figures = await withCluster(4, { workers: 1 }, async (c) => ({
  ...await locality(c).then(l => ({ locality_scheduler_bytes: l.scheduler, locality_random_bytes: l.random })),
  ...await balance(c, cores).then(b => ({ balance_makespan_ms: b.makespanMs, balance_ideal_ms: b.idealMs, balance_rounds_ms: b.roundsMs.map(Math.round), balance_cpu: b.cpu, balance_cpu_us_per_call: balanceUsPerCall(b.cpu, b.idealMs * cores) })),
  throughput_calls_per_s: await throughput(c),
  throughput_one_peer_calls_per_s: await throughput(c, c.peers[0].peer)
}))
const piped = await pipeliningBoth()
const all = { ...figures, prefetch_on_ms: piped.on, prefetch_off_ms: piped.off, pipelining_speedups: piped.speedups, pipelining_compute_ms_per_call: piped.computeMs, pipelining_link: piped.link, idle_cpu_ms_per_s: idle.perProcessMsPerS, idle_cpu_threads_ms_per_s: idle.perThreadMsPerS, idle_gossip_published_per_s: idle.gossipPublishedPerS, idle_gossip_received_per_s: idle.gossipReceivedPerS, cores, loadavg_1m: loadavg()[0] }
const ratios = {
  locality_bytes: all.locality_scheduler_bytes / Math.max(all.locality_random_bytes, 1),
  balance: all.balance_makespan_ms / all.balance_ideal_ms,
  prefetch_speedup: all.prefetch_off_ms / all.prefetch_on_ms,
  idle_cpu: idle.ratio
}
const fmt = (n: number): string => n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toPrecision(3)
console.log('| measure | refmesh | baseline | ratio | target |')
console.log('|---|---|---|---|---|')
console.log(`| locality: bytes moved, 24 calls over 4 MiB objects on 4 peers | ${fmt(all.locality_scheduler_bytes)} | ${fmt(all.locality_random_bytes)} (random placement) | ${ratios.locality_bytes.toPrecision(3)} | <= 0.1 |`)
console.log(`| balance: makespan of 400 uneven CPU-bound calls, 4 peers, ${cores} cores (ms; median of ${all.balance_rounds_ms.join(', ')}) | ${fmt(all.balance_makespan_ms)} | ${fmt(all.balance_ideal_ms)} (ideal: the calls one after another here / ${cores}) | ${ratios.balance.toPrecision(3)} | <= 1.2 |`)
console.log(`| balance, the median round's CPU (ms): driver ${Math.round(all.balance_cpu.driverMs)}, peers by thread ${JSON.stringify(all.balance_cpu.peersMs)}, machine idle ${all.balance_cpu.idleMs} (of ${Math.round(all.balance_makespan_ms * cores)}; the calls' own work ${Math.round(all.balance_ideal_ms * cores)}); CPU us per call: ${JSON.stringify(all.balance_cpu_us_per_call)} | | | | |`)
console.log(`| pipelining: 12 calls, 8 MiB arguments on another peer, ${all.pipelining_link} links (ms; the median of ${PIPELINING_PAIRS} on/off pairs, speedups ${all.pipelining_speedups.map(x => x.toFixed(2)).join(', ')}) | ${fmt(all.prefetch_on_ms)} (prefetch on) | ${fmt(all.prefetch_off_ms)} (off) | ${ratios.prefetch_speedup.toPrecision(3)} (speedup) | >= 1.5 |`)
console.log(`| throughput: no-op calls/s, one caller to 4 peers, 64 in flight | ${fmt(all.throughput_calls_per_s)} | see bench:chain for gRPC | | |`)
console.log(`| same, every call to one of the 4 peers (as bench:chain) | ${fmt(all.throughput_one_peer_calls_per_s)} | | | |`)
printIdle(idle, cores)
console.log(`load average (1 min) at the end: ${all.loadavg_1m.toFixed(2)}`)
console.log(`bench-result ${JSON.stringify({ name: 'sched', figures: all, ratios })}`)
