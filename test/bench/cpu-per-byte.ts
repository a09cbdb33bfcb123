/**
 * npm run bench:cpu — where the CPU of one pull goes. A holder process makes an
 * object of 32 MiB, a receiver process pulls it (mesh.broadcast to one peer),
 * over TCP (Noise + yamux in JavaScript) and over QUIC (@chainsafe/libp2p-quic:
 * TLS and streams in Rust). For each process, during the pull only:
 *  - CPU seconds from /proc per thread, grouped by thread name (the main thread
 *    is `node`; QUIC's Rust threads, V8's GC helpers and libuv's pool are
 *    others), and page faults; process.threadCpuUsage() under-reports on this VM;
 *  - with --profile (the default), the main thread's samples from --cpu-prof
 *    inside the pull's window, by layer: the self time of each sample is charged
 *    to the package of its innermost frame (Noise, yamux, QUIC's JS side, TCP
 *    socket, framing = uint8arraylist/it-* /@libp2p/utils, SHA-256 = node's
 *    hash, refmesh = core/ and node/, GC, (program) = V8/libuv native outside JS).
 * Proportions of a profile stay meaningful on a loaded machine; absolute CPU
 * seconds come from /proc. Options: --mbit N puts the three processes on hosts
 * of their own (network namespaces, N Mbit/s egress; needs root); default
 * loopback. --transports tcp,quic; --rounds R (default 3 pulls, fresh object
 * each, figures are per pull over all rounds); --no-profile; --node-options
 * '...' for the two peer processes (e.g. V8 heap flags).
 * Ends with `bench-result {json}`: CPU seconds per received GiB per transport.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { createMesh } from '../../node/index.ts'
import { spawnPeer, stopAll, waitForFullMesh } from '../../node/local-cluster.ts'
import type { PeerProcess } from '../../node/local-cluster.ts'
import { createHosts, netnsAvailable } from '../netns.ts'

const MiB = 2 ** 20
const GiB = 2 ** 30
const SIZE = 32 * MiB
const TICKS_PER_S = 100
const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const execFileAsync = promisify(execFile)

type Transport = 'tcp' | 'quic'
interface HostList { names: string[], addrs: string[] }
interface ThreadSample { comm: string, ticks: number }
interface ProcSample { threads: Map<number, ThreadSample>, minflt: number, majflt: number }

/** utime+stime of every thread of `pid` and its page faults, from /proc */
async function sampleProc (pid: number): Promise<ProcSample> {
  const threads = new Map<number, ThreadSample>()
  let minflt = 0
  let majflt = 0
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    try {
      const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      // fields after "pid (comm)": state=3 ... minflt=10, majflt=12, utime=14, stime=15 (1-based, man proc)
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      threads.set(Number(tid), { comm: comm.replace(/\d+$/, '#'), ticks: Number(f[11]) + Number(f[12]) })
      minflt += Number(f[7])
      majflt += Number(f[9])
    } catch {}
  }
  return { threads, minflt, majflt }
}

interface ProcDelta { cpuS: number, byThread: Record<string, number>, minflt: number, majflt: number }

function delta (a: ProcSample, b: ProcSample): ProcDelta {
  const byThread: Record<string, number> = {}
  let ticks = 0
  for (const [tid, t] of b.threads) {
    // The profiler's own thread is not the pull's cost.
    if (t.comm.startsWith('v8:ProfEvntProc')) continue
    const d = t.ticks - (a.threads.get(tid)?.ticks ?? 0)
    ticks += d
    byThread[t.comm] = (byThread[t.comm] ?? 0) + d / TICKS_PER_S
  }
  return { cpuS: ticks / TICKS_PER_S, byThread, minflt: b.minflt - a.minflt, majflt: b.majflt - a.majflt }
}

function addDelta (sum: ProcDelta | undefined, d: ProcDelta): ProcDelta {
  if (sum === undefined) return { ...d, byThread: { ...d.byThread } }
  for (const [k, v] of Object.entries(d.byThread)) sum.byThread[k] = (sum.byThread[k] ?? 0) + v
  return { cpuS: sum.cpuS + d.cpuS, byThread: sum.byThread, minflt: sum.minflt + d.minflt, majflt: sum.majflt + d.majflt }
}

/** microseconds on CLOCK_MONOTONIC, the clock V8's profile timestamps use on Linux */
const nowUs = (): number => Number(process.hrtime.bigint() / 1000n)

interface PullResult { transport: Transport, ms: number[], holder: ProcDelta, receiver: ProcDelta, windows: Array<[number, number]>, holderPid: number, receiverPid: number }

async function pulls (transport: Transport, hosts: HostList | undefined, rounds: number, profileDir: string | undefined): Promise<PullResult> {
  const listenOn = (i: number): string => {
    const ip = hosts === undefined ? '127.0.0.1' : hosts.addrs[i]
    return transport === 'tcp' ? `/ip4/${ip}/tcp/0` : `/ip4/${ip}/udp/0/quic-v1`
  }
  const at = (i: number): { netns?: string, listen: string } => ({ ...(hosts === undefined ? {} : { netns: hosts.names[i] }), listen: listenOn(i) })
  const nodeOptions = [...(profileDir === undefined ? [] : [`--cpu-prof --cpu-prof-dir=${join(profileDir, transport)}`]), ...(extraNodeOptions === '' ? [] : [extraNodeOptions])].join(' ')
  const env: Record<string, string> = nodeOptions === '' ? {} : { NODE_OPTIONS: nodeOptions }
  const peers: PeerProcess[] = []
  const mesh = { current: undefined as Awaited<ReturnType<typeof createMesh>> | undefined }
  try {
    const holder = await spawnPeer({ module: FIXTURES, env, ...at(1) })
    peers.push(holder)
    const receiver = await spawnPeer({ module: FIXTURES, env, bootstrap: [holder.addrs[0]], ...at(2) })
    peers.push(receiver)
    mesh.current = await createMesh({ bootstrap: [holder.addrs[0]], listen: [listenOn(0)] })
    await waitForFullMesh(mesh.current, peers, 30_000)
    const m = mesh.current
    const result: PullResult = { transport, ms: [], holder: undefined as unknown as ProcDelta, receiver: undefined as unknown as ProcDelta, windows: [], holderPid: holder.child.pid!, receiverPid: receiver.child.pid! }
    // One untimed pull first: JIT and buffers warm, as in every later pull.
    for (let round = 0; round <= rounds; round++) {
      using x = m.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: holder.peer }).remote(SIZE, 100 + round)
      await m.wait([x], { timeoutMs: 60_000 })
      const [h0, r0] = await Promise.all([sampleProc(holder.child.pid!), sampleProc(receiver.child.pid!)])
      const startUs = nowUs()
      const started = performance.now()
      const { failed } = await m.broadcast(x, { peers: [receiver.peer], timeoutMs: 300_000 })
      const ms = performance.now() - started
      const endUs = nowUs()
      const [h1, r1] = await Promise.all([sampleProc(holder.child.pid!), sampleProc(receiver.child.pid!)])
      if (failed.length > 0) throw new Error(`pull failed: ${failed[0].error.message}`)
      if (round === 0) continue
      result.ms.push(ms)
      result.windows.push([startUs, endUs])
      result.holder = addDelta(result.holder, delta(h0, h1))
      result.receiver = addDelta(result.receiver, delta(r0, r1))
    }
    return result
  } finally {
    await mesh.current?.stop()
    await stopAll(peers)
  }
}

interface ProfileNode { id: number, callFrame: { functionName: string, url: string }, children?: number[] }
interface CpuProfile { nodes: ProfileNode[], startTime: number, samples: number[], timeDeltas: number[] }

const LAYERS: Array<[string, (fn: string, url: string) => boolean]> = [
  ['gc', fn => fn === '(garbage collector)'],
  ['native (program)', fn => fn === '(program)'],
  ['idle', fn => fn === '(idle)'],
  ['sha256', (_fn, url) => url.includes('internal/crypto/hash')],
  ['noise', (_fn, url) => url.includes('libp2p-noise') || url.includes('@noble/') || url.includes('internal/crypto/cipher') || url.includes('internal/crypto/keys')],
  ['yamux', (_fn, url) => url.includes('libp2p-yamux') || url.includes('yamux-window')],
  ['quic (js side)', (_fn, url) => url.includes('libp2p-quic')],
  ['tcp socket', (_fn, url) => url.includes('@libp2p/tcp') || url.includes('tcp-writev') || url.startsWith('node:net') || url.includes('internal/stream_base') || url.includes('internal/streams') || url === 'node:stream'],
  ['framing (uint8arraylist, it-*, @libp2p/utils)', (_fn, url) => url.includes('uint8arraylist') || url.includes('/it-') || url.includes('@libp2p/utils') || url.includes('length-prefixed') || url.includes('protons')],
  ['libp2p other', (_fn, url) => url.includes('/libp2p/') || url.includes('@libp2p/')],
  ['gossipsub', (_fn, url) => url.includes('gossipsub')],
  ['refmesh core+node', (_fn, url) => url.includes('/core/') || url.includes('/node/')],
  ['node internals', (_fn, url) => url.startsWith('node:')]
]

function layerOf (fn: string, url: string): string {
  for (const [name, match] of LAYERS) if (match(fn, url)) return name
  return url === '' ? `native: ${fn}` : 'other js'
}

/** Self-time samples inside the windows, by layer and by function; microseconds */
function breakdown (profile: CpuProfile, windows: Array<[number, number]>): { layers: Map<string, number>, functions: Map<string, number>, totalUs: number } {
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const layers = new Map<string, number>()
  const functions = new Map<string, number>()
  let t = profile.startTime
  let totalUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i]
    t += dt
    if (!windows.some(([a, b]) => t >= a && t <= b)) continue
    const node = byId.get(profile.samples[i])!
    const { functionName, url } = node.callFrame
    const layer = layerOf(functionName, url)
    if (layer === 'idle') continue
    // A sample stands for the time until the next one.
    const us = profile.timeDeltas[i + 1] ?? dt
    totalUs += us
    layers.set(layer, (layers.get(layer) ?? 0) + us)
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/(core|node)\//, '$1/')}`
    functions.set(key, (functions.get(key) ?? 0) + us)
  }
  return { layers, functions, totalUs }
}

async function profileOf (dir: string, pid: number): Promise<CpuProfile | undefined> {
  const file = (await readdir(dir).catch(() => [] as string[])).find(f => f.includes(`.${pid}.`) && f.endsWith('.cpuprofile'))
  return file === undefined ? undefined : JSON.parse(await readFile(join(dir, file), 'utf8')) as CpuProfile
}

async function driver (transports: Transport[], hosts: HostList | undefined, rounds: number, profile: boolean): Promise<void> {
  const profileDir = profile ? await mkdtemp(join(tmpdir(), 'refmesh-cpu-')) : undefined
  try {
    for (const transport of transports) {
      const r = await pulls(transport, hosts, rounds, profileDir)
      const gib = rounds * SIZE / GiB
      const out: Record<string, unknown> = { transport, ms: r.ms.map(Math.round), receiverCpuSPerGiB: r.receiver.cpuS / gib, holderCpuSPerGiB: r.holder.cpuS / gib, receiver: r.receiver, holder: r.holder }
      if (profileDir !== undefined) {
        for (const [role, pid] of [['receiver', r.receiverPid], ['holder', r.holderPid]] as const) {
          const p = await profileOf(join(profileDir, transport), pid)
          if (p === undefined) continue
          const b = breakdown(p, r.windows)
          out[`${role}Layers`] = Object.fromEntries([...b.layers].sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, Number((v / b.totalUs).toFixed(3))]))
          out[`${role}TopFunctions`] = [...b.functions].sort((x, y) => y[1] - x[1]).slice(0, 12).map(([k, v]) => `${(100 * v / b.totalUs).toFixed(1)}% ${k}`)
        }
      }
      console.log(`cpu-result ${JSON.stringify(out)}`)
    }
  } finally {
    if (profileDir !== undefined) await rm(profileDir, { recursive: true, force: true })
  }
}

const { values } = parseArgs({ options: { mbit: { type: 'string', default: '0' }, transports: { type: 'string', default: 'tcp,quic' }, rounds: { type: 'string', default: '3' }, 'no-profile': { type: 'boolean', default: false }, 'node-options': { type: 'string', default: '' }, driver: { type: 'string' } } })
const extraNodeOptions = values['node-options']
const transports = values.transports.split(',') as Transport[]
const rounds = Number(values.rounds)
const mbit = Number(values.mbit)
if (values.driver !== undefined) {
  await driver(transports, JSON.parse(values.driver) as HostList, rounds, !values['no-profile'])
  process.exit(0)
}

const lines: string[] = []
if (mbit > 0) {
  if (!await netnsAvailable()) {
    console.error('--mbit needs root for network namespaces (ip netns, tc)')
    process.exit(2)
  }
  const hosts = await createHosts({ hosts: 3, rateMbit: mbit })
  try {
    const args = [fileURLToPath(import.meta.url), '--driver', JSON.stringify({ names: hosts.names, addrs: hosts.addrs }), '--transports', values.transports, '--rounds', values.rounds, '--node-options', extraNodeOptions, ...(values['no-profile'] ? ['--no-profile'] : [])]
    const { stdout } = await execFileAsync('ip', ['netns', 'exec', hosts.names[0], process.execPath, ...args], { maxBuffer: 16 << 20 })
    lines.push(...stdout.split('\n'))
  } finally {
    await hosts.stop()
  }
} else {
  const log = console.log
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')) }
  try { await driver(transports, undefined, rounds, !values['no-profile']) } finally { console.log = log }
}

const results = lines.filter(l => l.startsWith('cpu-result ')).map(l => JSON.parse(l.slice('cpu-result '.length)) as Record<string, any>)
const s = (n: number): string => n.toFixed(2)
console.log(`${SIZE / MiB} MiB pulls, ${rounds} per transport, ${mbit > 0 ? `${mbit} Mbit/s hosts` : 'loopback'}; CPU from /proc during the pulls only`)
for (const r of results) {
  console.log(`\n== ${r.transport}: pull ${r.ms.join(', ')} ms; receiver ${s(r.receiverCpuSPerGiB)} CPU s/GiB, holder ${s(r.holderCpuSPerGiB)} CPU s/GiB`)
  for (const role of ['receiver', 'holder']) {
    const d = r[role] as ProcDelta
    console.log(`  ${role}: ${s(d.cpuS / rounds)} CPU s per pull; threads ${Object.entries(d.byThread).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${s(v / rounds)}`).join(', ')}; page faults ${Math.round(d.minflt / rounds)} minor, ${Math.round(d.majflt / rounds)} major per pull`)
    const layers = r[`${role}Layers`] as Record<string, number> | undefined
    if (layers !== undefined) {
      console.log(`  ${role} main thread by layer (share of non-idle samples): ${Object.entries(layers).filter(([, v]) => v >= 0.005).map(([k, v]) => `${k} ${(100 * v).toFixed(0)}%`).join(', ')}`)
      for (const f of r[`${role}TopFunctions`] as string[]) console.log(`    ${f}`)
    }
  }
}
const figures = Object.fromEntries(results.flatMap(r => [[`${r.transport}_receiver_cpu_s_per_gib`, r.receiverCpuSPerGiB], [`${r.transport}_holder_cpu_s_per_gib`, r.holderCpuSPerGiB]]))
console.log(`bench-result ${JSON.stringify({ name: 'cpu-per-byte', figures: { object_bytes: SIZE, rounds, link_mbit: mbit, ...figures } })}`)
process.exit(0)
