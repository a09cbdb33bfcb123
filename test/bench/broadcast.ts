/**
 * npm run bench:broadcast — one object of S = 32 MiB to N = 8 receivers, each
 * peer a host of its own in a network namespace with its egress limited by tc
 * (100 Mbit/s), so links, not this machine's two cores, are the bottleneck.
 * In one run:
 *  - refmesh: the time until all N hold the object (mesh.broadcast);
 *  - the physical limit S / B, and one point-to-point transfer measured;
 *  - a star: the same peers started with --no-swarm, every receiver pulling
 *    only from the holder, after the same warm-up transfer as refmesh's run;
 *  - the CPU each receiver spends (/proc/<pid>/stat), mean over receivers.
 *  - on loopback, refmesh and WebTorrent 3.0.21 (one process per peer each;
 *    WebTorrent is installed into test/bench/webtorrent/ on first use), with
 *    the CPU seconds both spend (all their processes, from /proc) per GiB received,
 *    in 3 interleaved rounds each started on a quiet machine, medians compared;
 *  - link-bound: the same 8 receivers and holder behind 20 Mbit/s uplinks (a
 *    common home uplink) and an object of 16 MiB, so S/B is 6.7 s: refmesh and
 *    the star, with the machine's idle CPU share during each run (the two cores
 *    are not the limit when it stays well above zero), and the bench's own
 *    processes' CPU share of the machine;
 *  - uneven uplinks: the same, receivers alternately at 10 and 40 Mbit/s, beside
 *    its own limit max(S / u_holder, N S / (u_holder + sum of receivers' uplinks)).
 * Ends with one `bench-result {json}` line (ratios `vs_limit`, `vs_star`,
 * `vs_webtorrent`, `vs_limit_uplink`, `vs_star_uplink`). Needs root (ip netns, tc).
 * `--link-bound-only`: the link-bound and uneven runs alone (about 2 minutes).
 * `--only uplink` / `--only uneven`: that one refmesh run alone, no star (under a
 * minute), printing its time against its limit, the holder's upload and the tree;
 * `--only loopback`: refmesh's loopback run alone (no WebTorrent), its time and CPU per GiB.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { loadavg } from 'node:os'
import { promisify } from 'node:util'
import { createMesh } from '../../node/index.ts'
import type { Mesh } from '../../node/index.ts'
import { spawnPeer, stopAll, waitForFullMesh } from '../../node/local-cluster.ts'
import type { PeerProcess } from '../../node/local-cluster.ts'
import { createHosts, netnsAvailable } from '../netns.ts'
import { webtorrentRun } from './webtorrent/run.ts'
import { idleShare, machineCpu, processCpuS, untilQuiet } from './proc-cpu.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const MiB = 2 ** 20
const SIZE = 32 * MiB
const RECEIVERS = 8
const LOOPBACK_RECEIVERS = 4
/** interleaved rounds of refmesh and WebTorrent on loopback; the medians are compared */
const LOOPBACK_ROUNDS = 3
const MBIT = 100
const GiB = 2 ** 30
/** the link-bound regime: home uplinks, and an object whose S/B is at least 6 s there */
const UPLINK_MBIT = 20
const UPLINK_SIZE = 16 * MiB
/** what a link-bound run first sends to one receiver: 1.7 s at 20 Mbit/s, long enough for the holder to measure its uplink */
const UPLINK_WARM_UP_SIZE = 4 * MiB
/** uneven uplinks: receivers alternately at these rates, the holder at UPLINK_MBIT */
const UNEVEN_MBIT = [10, 40]
const execFileAsync = promisify(execFile)

interface HostList { names: string[], addrs: string[] }

/** CPU time (user + system, all threads) a process has used, in ms, from /proc/<pid>/stat. */
function cpuMs (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 1000 / 100 // USER_HZ is 100 on Linux
}

/** Host 0 runs the driver, host 1 the holder, hosts 2.. the receivers; without hosts, all on loopback. */
async function cluster<T> (hosts: HostList | undefined, swarm: boolean, body: (mesh: Mesh, holder: PeerProcess, receivers: PeerProcess[]) => Promise<T>): Promise<T> {
  const at = (i: number): { netns?: string, listen?: string } => hosts === undefined ? {} : { netns: hosts.names[i], listen: `/ip4/${hosts.addrs[i]}/tcp/0` }
  const args = swarm ? [] : ['--no-swarm']
  const peers: PeerProcess[] = []
  let mesh: Mesh | undefined
  try {
    const holder = await spawnPeer({ module: FIXTURES, args, ...at(1) })
    peers.push(holder)
    peers.push(...await Promise.all(Array.from({ length: RECEIVERS }, async (_, k) => await spawnPeer({ module: FIXTURES, args, bootstrap: [holder.addrs[0]], ...at(2 + k) }))))
    // The driver owns the objects, so it is the one that tells receivers where to pull from.
    mesh = await createMesh({ bootstrap: [holder.addrs[0]], ...(hosts !== undefined ? { listen: [`/ip4/${hosts.addrs[0]}/tcp/0`] } : {}), swarm })
    // Ten processes starting at once on two loaded cores: 30 s was seen to run out.
    await waitForFullMesh(mesh, peers, 90_000)
    await new Promise(resolve => setTimeout(resolve, 1500))
    return await body(mesh, holder, peers.slice(1))
  } finally {
    await mesh?.stop()
    await stopAll(peers)
  }
}

/** Makes a fresh object on the holder and times its broadcast to `receivers`. */
interface Timed { ms: number, holderUpload: number, tree: string[], receiverCpuMs: number, cpuS: number, idle: number, holderSpread: number, doneMs: number[], duplicateChunks: number, chunks: number }

async function timedBroadcast (mesh: Mesh, holder: PeerProcess, receivers: PeerProcess[], seed: number, size = SIZE): Promise<Timed> {
  const inBefore = new Map<string, Record<string, number>>()
  const dupBefore = new Map<string, number>()
  const fetchedBefore = new Map<string, number>()
  for (const r of receivers) {
    const stats = await mesh.peerStats(r.peer)
    inBefore.set(r.peer, Object.fromEntries(Object.entries(stats.trafficByPeer).map(([p, t]) => [p, t.chunkIn])))
    dupBefore.set(r.peer, stats.transfer.duplicateChunks ?? 0)
    fetchedBefore.set(r.peer, stats.transfer.chunksFetched)
  }
  using x = mesh.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: holder.peer }).remote(size, seed)
  await mesh.wait([x], { timeoutMs: 60_000 })
  const holderBefore = await mesh.peerStats(holder.peer)
  const before = holderBefore.traffic.chunkOut
  // CPU of the holder and the receivers (all threads), and the machine's idle share, over the broadcast.
  const pids = [holder, ...receivers].map(p => p.child.pid as number)
  const cpuBefore = receivers.map(r => cpuMs(r.child.pid as number))
  const allCpuBefore = pids.reduce((n, pid) => n + processCpuS(pid), 0)
  const machineBefore = machineCpu()
  const started = performance.now()
  const doneMs: number[] = []
  const { failed } = await mesh.broadcast(x, { peers: receivers.map(r => r.peer), timeoutMs: 300_000, onProgress: () => { doneMs.push(Math.round(performance.now() - started)) } })
  const ms = performance.now() - started
  const idle = idleShare(machineBefore, machineCpu())
  const cpuS = pids.reduce((n, pid) => n + processCpuS(pid), 0) - allCpuBefore
  // Mean CPU a receiver spent over the broadcast (including its idle gossip, ~30 ms/s).
  const receiverCpuMs = receivers.reduce((n, r, i) => n + cpuMs(r.child.pid as number) - cpuBefore[i], 0) / receivers.length
  if (failed.length > 0) {
    // Say whether the peers behind the failures were still running, and what they last wrote.
    const state = (p: PeerProcess): string => `${p === holder ? 'holder' : p.peer} ${p.child.exitCode !== null || p.child.signalCode !== null ? `exited (${p.child.exitCode ?? p.child.signalCode})` : 'running'}: ${p.stderr().slice(-400)}`
    throw new Error(`broadcast failed on ${failed.map(f => `${f.peer}: ${f.error.message}`).join('; ')}\n${[holder, ...receivers].map(state).join('\n')}`)
  }
  const holderAfter = await mesh.peerStats(holder.peer)
  const holderUpload = holderAfter.traffic.chunkOut - before
  // Chunk asks the holder answered with where the chunk went (super-seeding).
  const holderSpread = (holderAfter.transfer.chunksSpread ?? 0) - (holderBefore.transfer.chunksSpread ?? 0)
  // Who fed whom: the MiB each receiver got from each peer during this broadcast.
  const name = (p: string): string => p === holder.peer ? 'holder' : `r${receivers.findIndex(r => r.peer === p) + 1}`
  const tree: string[] = []
  let duplicateChunks = 0
  let fetched = 0
  for (const r of receivers) {
    const after = (await mesh.peerStats(r.peer)).transfer
    duplicateChunks += (after.duplicateChunks ?? 0) - (dupBefore.get(r.peer) ?? 0)
    fetched += after.chunksFetched - (fetchedBefore.get(r.peer) ?? 0)
    const was = inBefore.get(r.peer) ?? {}
    const got = Object.entries((await mesh.peerStats(r.peer)).trafficByPeer)
      .map(([p, t]) => [p, t.chunkIn - (was[p] ?? 0)] as const)
      .filter(([, n]) => n >= MiB / 2)
      .sort((a, b) => b[1] - a[1])
    tree.push(`${name(r.peer)} <- ${got.map(([p, n]) => `${name(p)} ${(n / MiB).toFixed(0)} MiB`).join(', ')}`)
  }
  // The object's chunk count (its size follows the holder's measured uplink: core/chunks.ts).
  const chunks = Math.round(fetched / receivers.length)
  return { ms, holderUpload, tree, receiverCpuMs, cpuS, idle, holderSpread, doneMs, duplicateChunks, chunks }
}

/** The link-bound runs: refmesh and (with a star) the star, one object of UPLINK_SIZE to every receiver. */
async function uplinkDriver (hosts: HostList, withStar: boolean): Promise<void> {
  // Each first sends a smaller object to one receiver, as the loopback runs do: neither runs
  // cold, and the holder has measured its uplink, which its chunk sizes follow.
  const warmedUp = async (mesh: Mesh, holder: PeerProcess, receivers: PeerProcess[], seed: number): Promise<Timed> => {
    await timedBroadcast(mesh, holder, receivers.slice(0, 1), seed + 100, UPLINK_WARM_UP_SIZE)
    return await timedBroadcast(mesh, holder, receivers, seed, UPLINK_SIZE)
  }
  const swarm = await cluster(hosts, true, async (mesh, holder, receivers) => await warmedUp(mesh, holder, receivers, 11))
  const star = withStar ? await cluster(hosts, false, async (mesh, holder, receivers) => await warmedUp(mesh, holder, receivers, 12)) : undefined
  console.log(`broadcast-result ${JSON.stringify({ swarm, star })}`)
}

async function driver (hosts: HostList): Promise<void> {
  const swarm = await cluster(hosts, true, async (mesh, holder, receivers) => {
    const p2p = await timedBroadcast(mesh, holder, receivers.slice(0, 1), 1)
    const all = await timedBroadcast(mesh, holder, receivers, 2)
    return { p2p, all }
  })
  // The star gets the same warm-up transfer as the swarm (one object to one receiver), so neither runs cold.
  const star = await cluster(hosts, false, async (mesh, holder, receivers) => {
    const p2p = await timedBroadcast(mesh, holder, receivers.slice(0, 1), 1)
    const all = await timedBroadcast(mesh, holder, receivers, 3)
    return { p2p, all }
  })
  console.log(`broadcast-result ${JSON.stringify({ p2pMs: swarm.p2p.ms, starP2pMs: star.p2p.ms, refmeshMs: swarm.all.ms, refmeshUpload: swarm.all.holderUpload, refmeshReceiverCpuMs: swarm.all.receiverCpuMs, p2pReceiverCpuMs: swarm.p2p.receiverCpuMs, starMs: star.all.ms, starUpload: star.all.holderUpload, tree: swarm.all.tree })}`)
}

const driverAt = process.argv.indexOf('--driver')
if (driverAt >= 0) {
  const hostList = JSON.parse(process.argv[driverAt + 1]) as HostList
  const mode = process.argv[driverAt + 2]
  if (mode === 'uplink' || mode === 'uneven') await uplinkDriver(hostList, mode === 'uplink')
  else if (mode === 'uplink-only') await uplinkDriver(hostList, false)
  else await driver(hostList)
  process.exit(0)
}

/** Runs the driver in host 0 of fresh hosts with these uplinks; its `broadcast-result` line */
async function inHosts<T> (rates: { rateMbit: number, rates?: number[] }, mode: string): Promise<T> {
  const hosts = await createHosts({ hosts: 2 + RECEIVERS, ...rates })
  try {
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', hosts.names[0], process.execPath, fileURLToPath(import.meta.url), '--driver', JSON.stringify({ names: hosts.names, addrs: hosts.addrs }), mode], { maxBuffer: 1 << 20 })
    const line = stdout.split('\n').find(l => l.startsWith('broadcast-result '))
    if (line === undefined) throw new Error(`the driver printed no result:\n${stdout}`)
    return JSON.parse(line.slice('broadcast-result '.length)) as T
  } finally {
    await hosts.stop()
  }
}

if (!await netnsAvailable()) {
  console.error('bench:broadcast needs root for network namespaces (ip netns, tc)')
  process.exit(2)
}
// Link-bound: 20 Mbit/s uplinks everywhere, then uneven receivers' uplinks.
/** a link-bound run that failed is reported as such; the other figures still stand */
async function orFailed<T> (run: () => Promise<T>): Promise<T | undefined> {
  try {
    return await run()
  } catch (err) {
    console.error(`a link-bound run failed: ${(err as Error).message.slice(0, 4000)}`)
    return undefined
  }
}
const onlyAt = process.argv.indexOf('--only')
if (onlyAt >= 0 && process.argv[onlyAt + 1] === 'loopback') {
  const run = await cluster(undefined, true, async (mesh, holder, receivers) => await timedBroadcast(mesh, holder, receivers.slice(0, LOOPBACK_RECEIVERS), 5))
  console.log(JSON.stringify({ only: 'loopback', ms: run.ms, cpu_s_per_gib: run.cpuS / (LOOPBACK_RECEIVERS * SIZE / GiB), holder_upload_copies: run.holderUpload / SIZE, holder_spread_answers: run.holderSpread, receivers_done_ms: run.doneMs, duplicate_chunks: run.duplicateChunks, chunks: run.chunks, idle: run.idle, tree: run.tree, load_average: loadavg() }, null, 1))
  process.exit(0)
}
if (onlyAt >= 0) {
  // One link-bound refmesh run, for iterating on the tree: no star, no other regime.
  const which = process.argv[onlyAt + 1]
  if (which !== 'uplink' && which !== 'uneven') throw new Error('--only takes uplink, uneven or loopback')
  const rates = which === 'uplink' ? { rateMbit: UPLINK_MBIT } : { rateMbit: UPLINK_MBIT, rates: [UPLINK_MBIT, UPLINK_MBIT, ...Array.from({ length: RECEIVERS }, (_, k) => UNEVEN_MBIT[k % UNEVEN_MBIT.length])] }
  const { swarm } = await inHosts<{ swarm: Timed }>(rates, 'uplink-only')
  const sum = (rates.rates ?? []).slice(2).reduce((a, b) => a + b, 0)
  const limitMs = which === 'uplink'
    ? UPLINK_SIZE * 8 / (UPLINK_MBIT * 1e6) * 1000
    : Math.max(UPLINK_SIZE * 8 / (UPLINK_MBIT * 1e6), RECEIVERS * UPLINK_SIZE * 8 / ((UPLINK_MBIT + sum) * 1e6)) * 1000
  console.log(JSON.stringify({ only: which, ms: swarm.ms, limitMs, vs_limit: swarm.ms / limitMs, holder_upload_copies: swarm.holderUpload / UPLINK_SIZE, holder_spread_answers: swarm.holderSpread, receivers_done_ms: swarm.doneMs, duplicate_chunks: swarm.duplicateChunks, chunks: swarm.chunks, idle: swarm.idle, own_cpu_s: swarm.cpuS, tree: swarm.tree, load_average: loadavg() }, null, 1))
  process.exit(0)
}
const uplink = await orFailed(async () => await inHosts<{ swarm: Timed, star: Timed }>({ rateMbit: UPLINK_MBIT }, 'uplink'))
const unevenRates = [UPLINK_MBIT, UPLINK_MBIT, ...Array.from({ length: RECEIVERS }, (_, k) => UNEVEN_MBIT[k % UNEVEN_MBIT.length])]
const uneven = await orFailed(async () => await inHosts<{ swarm: Timed }>({ rateMbit: UPLINK_MBIT, rates: unevenRates }, 'uneven'))
const uplinkLimitMs = UPLINK_SIZE * 8 / (UPLINK_MBIT * 1e6) * 1000
const receiverUplinks = unevenRates.slice(2).reduce((a, b) => a + b, 0)
const unevenLimitMs = Math.max(UPLINK_SIZE * 8 / (UPLINK_MBIT * 1e6), RECEIVERS * UPLINK_SIZE * 8 / ((UPLINK_MBIT + receiverUplinks) * 1e6)) * 1000
if (process.argv.includes('--link-bound-only')) {
  console.log(JSON.stringify({ uplink, uneven, uplinkLimitMs, unevenLimitMs, load_average: loadavg() }, null, 1))
  process.exit(0)
}
const hosts = await createHosts({ hosts: 2 + RECEIVERS, rateMbit: MBIT })
let result: { p2pMs: number, starP2pMs: number, refmeshMs: number, refmeshUpload: number, refmeshReceiverCpuMs: number, p2pReceiverCpuMs: number, starMs: number, starUpload: number, tree: string[] }
try {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', hosts.names[0], process.execPath, fileURLToPath(import.meta.url), '--driver', JSON.stringify({ names: hosts.names, addrs: hosts.addrs })], { maxBuffer: 1 << 20 })
  const line = stdout.split('\n').find(l => l.startsWith('broadcast-result '))
  if (line === undefined) throw new Error(`the driver printed no result:\n${stdout}`)
  result = JSON.parse(line.slice('broadcast-result '.length)) as typeof result
} finally {
  await hosts.stop()
}
// Loopback: refmesh and WebTorrent, the same object to four receivers, one process per peer,
// in interleaved rounds, each run from a quiet machine. One run of either varies by a fifth
// (refmesh alone: 1,224-1,724 ms), so the ratio is of the medians, with each round's beside it.
const loopbackRounds: Array<{ refmesh: Timed, webtorrent: Awaited<ReturnType<typeof webtorrentRun>>, quiet: number[] }> = []
for (let round = 0; round < LOOPBACK_ROUNDS; round++) {
  const quietBeforeRefmesh = await untilQuiet()
  const refmesh = await cluster(undefined, true, async (mesh, holder, receivers) => await timedBroadcast(mesh, holder, receivers.slice(0, LOOPBACK_RECEIVERS), 5 + round))
  const quietBeforeWebtorrent = await untilQuiet()
  loopbackRounds.push({ refmesh, webtorrent: await webtorrentRun(SIZE, LOOPBACK_RECEIVERS), quiet: [quietBeforeRefmesh, quietBeforeWebtorrent] })
}
const medianBy = <T>(runs: T[], ms: (run: T) => number): T => [...runs].sort((a, b) => ms(a) - ms(b))[Math.floor(runs.length / 2)]
const loopback = medianBy(loopbackRounds.map(r => r.refmesh), t => t.ms)
const webtorrent = medianBy(loopbackRounds.map(r => r.webtorrent), w => w.ms)
const webtorrentMs = webtorrent.ms
const limitMs = SIZE * 8 / (MBIT * 1e6) * 1000
const perGiB = (cpuS: number, receivers: number, size: number): number => cpuS / (receivers * size / GiB)
const ownShare = (t: Timed): number => t.cpuS / (t.ms / 1000 * 2)
const figures = {
  object_bytes: SIZE,
  receivers: RECEIVERS,
  link_mbit: MBIT,
  refmesh_ms: result.refmeshMs,
  limit_ms: limitMs,
  point_to_point_ms: result.p2pMs,
  star_point_to_point_ms: result.starP2pMs,
  receiver_cpu_ms: result.refmeshReceiverCpuMs,
  point_to_point_receiver_cpu_ms: result.p2pReceiverCpuMs,
  loopback_receiver_cpu_ms: loopback.receiverCpuMs,
  star_ms: result.starMs,
  refmesh_holder_upload_bytes: result.refmeshUpload,
  star_holder_upload_bytes: result.starUpload,
  loopback_receivers: LOOPBACK_RECEIVERS,
  loopback_rounds: loopbackRounds.map(r => ({ refmesh_ms: r.refmesh.ms, webtorrent_ms: r.webtorrent.ms, ratio: r.refmesh.ms / r.webtorrent.ms, refmesh_cpu_s_per_gib: perGiB(r.refmesh.cpuS, LOOPBACK_RECEIVERS, SIZE), webtorrent_cpu_s_per_gib: perGiB(r.webtorrent.cpuS, LOOPBACK_RECEIVERS, SIZE), idle_share_before: r.quiet })),
  loopback_refmesh_ms: loopback.ms,
  loopback_webtorrent_ms: webtorrentMs,
  // CPU seconds of all the peers' processes (holder/seeder and receivers) per GiB received in all.
  loopback_refmesh_cpu_s_per_gib: perGiB(loopback.cpuS, LOOPBACK_RECEIVERS, SIZE),
  loopback_webtorrent_cpu_s_per_gib: perGiB(webtorrent.cpuS, LOOPBACK_RECEIVERS, SIZE),
  uplink_mbit: UPLINK_MBIT,
  uplink_object_bytes: UPLINK_SIZE,
  uplink_limit_ms: uplinkLimitMs,
  // null: that run failed (its error is on stderr)
  uplink_refmesh_ms: uplink?.swarm.ms ?? null,
  uplink_star_ms: uplink?.star.ms ?? null,
  uplink_refmesh_holder_upload_bytes: uplink?.swarm.holderUpload ?? null,
  uplink_refmesh_idle_share: uplink?.swarm.idle ?? null,
  uplink_refmesh_own_cpu_share: uplink === undefined ? null : ownShare(uplink.swarm),
  uplink_star_idle_share: uplink?.star.idle ?? null,
  uplink_refmesh_cpu_s_per_gib: uplink === undefined ? null : perGiB(uplink.swarm.cpuS, RECEIVERS, UPLINK_SIZE),
  uneven_receiver_mbit: UNEVEN_MBIT,
  uneven_ms: uneven?.swarm.ms ?? null,
  uneven_limit_ms: unevenLimitMs,
  uneven_idle_share: uneven?.swarm.idle ?? null,
  load_average: loadavg(),
  loadavg_1m: loadavg()[0]
}
const ratios = {
  vs_limit: result.refmeshMs / limitMs,
  vs_star: result.refmeshMs / result.starMs,
  vs_webtorrent: loopback.ms / webtorrentMs,
  vs_limit_uplink: uplink === undefined ? null : uplink.swarm.ms / uplinkLimitMs,
  vs_star_uplink: uplink === undefined ? null : uplink.swarm.ms / uplink.star.ms,
  vs_limit_uneven: uneven === undefined ? null : uneven.swarm.ms / unevenLimitMs
}
const met = (r: number | null, target: number): string => r === null ? 'FAILED' : r <= target ? 'met' : 'MISSED'
const two = (r: number | null): string => r === null ? 'failed' : r.toFixed(2)
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
console.log('| measure | ms | holder upload (copies) |')
console.log('|---|---|---|')
console.log(`| refmesh: ${RECEIVERS} receivers hold ${SIZE / MiB} MiB, ${MBIT} Mbit/s links | ${fmt(result.refmeshMs)} | ${(result.refmeshUpload / SIZE).toFixed(2)} |`)
console.log(`| physical limit S / B | ${fmt(limitMs)} | |`)
console.log(`| one point-to-point transfer, measured | ${fmt(result.p2pMs)} | |`)
console.log(`| CPU of a receiver over the broadcast, mean (point-to-point: ${fmt(result.p2pReceiverCpuMs)}; loopback: ${fmt(loopback.receiverCpuMs)}) | ${fmt(result.refmeshReceiverCpuMs)} | |`)
console.log(`| star: every receiver pulls from the holder only (after the same warm-up transfer, ${fmt(result.starP2pMs)}) | ${fmt(result.starMs)} | ${(result.starUpload / SIZE).toFixed(2)} |`)
console.log(`| loopback: refmesh, ${LOOPBACK_RECEIVERS} receivers, one process each (median of ${LOOPBACK_ROUNDS} rounds: ${loopbackRounds.map(r => fmt(r.refmesh.ms)).join(', ')}) | ${fmt(loopback.ms)} | ${(loopback.holderUpload / SIZE).toFixed(2)} |`)
console.log(`| loopback: WebTorrent 3.0.21, 1 seeder + ${LOOPBACK_RECEIVERS} leechers, one process each (median of ${loopbackRounds.map(r => fmt(r.webtorrent.ms)).join(', ')}) | ${fmt(webtorrentMs)} | |`)
console.log(`| CPU s per GiB received, loopback: refmesh ${figures.loopback_refmesh_cpu_s_per_gib.toFixed(1)}, WebTorrent ${figures.loopback_webtorrent_cpu_s_per_gib.toFixed(1)} | | |`)
const pct = (x: number): string => `${(100 * x).toFixed(0)}%`
if (uplink !== undefined) {
  console.log(`| link-bound: refmesh, ${RECEIVERS} receivers hold ${UPLINK_SIZE / MiB} MiB, ${UPLINK_MBIT} Mbit/s uplinks (machine idle ${pct(uplink.swarm.idle)}, its own processes ${pct(ownShare(uplink.swarm))} of 2 cores) | ${fmt(uplink.swarm.ms)} | ${(uplink.swarm.holderUpload / UPLINK_SIZE).toFixed(2)} |`)
  console.log(`| link-bound: physical limit S / B | ${fmt(uplinkLimitMs)} | |`)
  console.log(`| link-bound: star (machine idle ${pct(uplink.star.idle)}) | ${fmt(uplink.star.ms)} | ${(uplink.star.holderUpload / UPLINK_SIZE).toFixed(2)} |`)
}
if (uneven !== undefined) {
  console.log(`| uneven uplinks: receivers alternately ${UNEVEN_MBIT.join(' and ')} Mbit/s, holder ${UPLINK_MBIT} (machine idle ${pct(uneven.swarm.idle)}) | ${fmt(uneven.swarm.ms)} | ${(uneven.swarm.holderUpload / UPLINK_SIZE).toFixed(2)} |`)
  console.log(`| uneven uplinks: its limit max(S / u_holder, N S / sum of uplinks) | ${fmt(unevenLimitMs)} | |`)
}
console.log(`| ratios: refmesh / limit ${ratios.vs_limit.toFixed(2)} (target 1.3, ${met(ratios.vs_limit, 1.3)}), refmesh / star ${ratios.vs_star.toFixed(2)} (target 0.25, ${met(ratios.vs_star, 0.25)}), refmesh / WebTorrent ${ratios.vs_webtorrent.toFixed(2)} (target 1.0, ${met(ratios.vs_webtorrent, 1.0)}), link-bound refmesh / limit ${two(ratios.vs_limit_uplink)} (target 1.3, ${met(ratios.vs_limit_uplink, 1.3)}), link-bound refmesh / star ${two(ratios.vs_star_uplink)} (target 0.25, ${met(ratios.vs_star_uplink, 0.25)}), uneven / its limit ${two(ratios.vs_limit_uneven)} | | |`)
console.log(`load average (1 min) at the end: ${figures.loadavg_1m.toFixed(2)}`)
console.log('\nThe tree that formed in the limited run (MiB each receiver got from each peer):')
for (const line of result.tree) console.log(`  ${line}`)
console.log('\nThe tree in the link-bound run:')
for (const line of uplink?.swarm.tree ?? ['(failed)']) console.log(`  ${line}`)
console.log('\nThe tree with uneven uplinks (odd receivers r1, r3, .. at 10 Mbit/s, even ones at 40):')
for (const line of uneven?.swarm.tree ?? ['(failed)']) console.log(`  ${line}`)
console.log(`bench-result ${JSON.stringify({ name: 'broadcast', figures, ratios })}`)
