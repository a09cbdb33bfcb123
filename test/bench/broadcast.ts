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
 *    WebTorrent is installed into test/bench/webtorrent/ on first use).
 * Ends with one `bench-result {json}` line (ratios `vs_limit`, `vs_star`,
 * `vs_webtorrent`). Needs root (ip netns, tc).
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
import { webtorrentBroadcast } from './webtorrent/run.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const MiB = 2 ** 20
const SIZE = 32 * MiB
const RECEIVERS = 8
const LOOPBACK_RECEIVERS = 4
const MBIT = 100
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
    await waitForFullMesh(mesh, peers, 30_000)
    await new Promise(resolve => setTimeout(resolve, 1500))
    return await body(mesh, holder, peers.slice(1))
  } finally {
    await mesh?.stop()
    await stopAll(peers)
  }
}

/** Makes a fresh object on the holder and times its broadcast to `receivers`. */
async function timedBroadcast (mesh: Mesh, holder: PeerProcess, receivers: PeerProcess[], seed: number): Promise<{ ms: number, holderUpload: number, tree: string[], receiverCpuMs: number }> {
  const inBefore = new Map<string, Record<string, number>>()
  for (const r of receivers) inBefore.set(r.peer, Object.fromEntries(Object.entries((await mesh.peerStats(r.peer)).trafficByPeer).map(([p, t]) => [p, t.chunkIn])))
  using x = mesh.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: holder.peer }).remote(SIZE, seed)
  await mesh.wait([x], { timeoutMs: 60_000 })
  const before = (await mesh.peerStats(holder.peer)).traffic.chunkOut
  const cpuBefore = receivers.map(r => cpuMs(r.child.pid as number))
  const started = performance.now()
  const { failed } = await mesh.broadcast(x, { peers: receivers.map(r => r.peer), timeoutMs: 300_000 })
  const ms = performance.now() - started
  // Mean CPU a receiver spent over the broadcast (including its idle gossip, ~30 ms/s).
  const receiverCpuMs = receivers.reduce((n, r, i) => n + cpuMs(r.child.pid as number) - cpuBefore[i], 0) / receivers.length
  if (failed.length > 0) throw new Error(`broadcast failed on ${failed.map(f => `${f.peer}: ${f.error.message}`).join('; ')}`)
  const holderUpload = (await mesh.peerStats(holder.peer)).traffic.chunkOut - before
  // Who fed whom: the MiB each receiver got from each peer during this broadcast.
  const name = (p: string): string => p === holder.peer ? 'holder' : `r${receivers.findIndex(r => r.peer === p) + 1}`
  const tree: string[] = []
  for (const r of receivers) {
    const was = inBefore.get(r.peer) ?? {}
    const got = Object.entries((await mesh.peerStats(r.peer)).trafficByPeer)
      .map(([p, t]) => [p, t.chunkIn - (was[p] ?? 0)] as const)
      .filter(([, n]) => n >= MiB / 2)
      .sort((a, b) => b[1] - a[1])
    tree.push(`${name(r.peer)} <- ${got.map(([p, n]) => `${name(p)} ${(n / MiB).toFixed(0)} MiB`).join(', ')}`)
  }
  return { ms, holderUpload, tree, receiverCpuMs }
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
  await driver(JSON.parse(process.argv[driverAt + 1]) as HostList)
  process.exit(0)
}

if (!await netnsAvailable()) {
  console.error('bench:broadcast needs root for network namespaces (ip netns, tc)')
  process.exit(2)
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
// Loopback: refmesh and WebTorrent, the same object to four receivers, one process per peer.
const loopback = await cluster(undefined, true, async (mesh, holder, receivers) => await timedBroadcast(mesh, holder, receivers.slice(0, LOOPBACK_RECEIVERS), 5))
const webtorrentMs = await webtorrentBroadcast(SIZE, LOOPBACK_RECEIVERS)
const limitMs = SIZE * 8 / (MBIT * 1e6) * 1000
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
  loopback_refmesh_ms: loopback.ms,
  loopback_webtorrent_ms: webtorrentMs,
  loadavg_1m: loadavg()[0]
}
const ratios = { vs_limit: result.refmeshMs / limitMs, vs_star: result.refmeshMs / result.starMs, vs_webtorrent: loopback.ms / webtorrentMs }
const met = (r: number, target: number): string => r <= target ? 'met' : 'MISSED'
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
console.log('| measure | ms | holder upload (copies) |')
console.log('|---|---|---|')
console.log(`| refmesh: ${RECEIVERS} receivers hold ${SIZE / MiB} MiB, ${MBIT} Mbit/s links | ${fmt(result.refmeshMs)} | ${(result.refmeshUpload / SIZE).toFixed(2)} |`)
console.log(`| physical limit S / B | ${fmt(limitMs)} | |`)
console.log(`| one point-to-point transfer, measured | ${fmt(result.p2pMs)} | |`)
console.log(`| CPU of a receiver over the broadcast, mean (point-to-point: ${fmt(result.p2pReceiverCpuMs)}; loopback: ${fmt(loopback.receiverCpuMs)}) | ${fmt(result.refmeshReceiverCpuMs)} | |`)
console.log(`| star: every receiver pulls from the holder only (after the same warm-up transfer, ${fmt(result.starP2pMs)}) | ${fmt(result.starMs)} | ${(result.starUpload / SIZE).toFixed(2)} |`)
console.log(`| loopback: refmesh, ${LOOPBACK_RECEIVERS} receivers, one process each | ${fmt(loopback.ms)} | ${(loopback.holderUpload / SIZE).toFixed(2)} |`)
console.log(`| loopback: WebTorrent 3.0.21, 1 seeder + ${LOOPBACK_RECEIVERS} leechers, one process each | ${fmt(webtorrentMs)} | |`)
console.log(`| ratios: refmesh / limit ${ratios.vs_limit.toFixed(2)} (target 1.3, ${met(ratios.vs_limit, 1.3)}), refmesh / star ${ratios.vs_star.toFixed(2)} (target 0.25, ${met(ratios.vs_star, 0.25)}), refmesh / WebTorrent ${ratios.vs_webtorrent.toFixed(2)} (target 0.5, ${met(ratios.vs_webtorrent, 0.5)}) | | |`)
console.log(`load average (1 min) at the end: ${figures.loadavg_1m.toFixed(2)}`)
console.log('\nThe tree that formed in the limited run (MiB each receiver got from each peer):')
for (const line of result.tree) console.log(`  ${line}`)
console.log(`bench-result ${JSON.stringify({ name: 'broadcast', figures, ratios })}`)
