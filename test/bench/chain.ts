/**
 * npm run bench:chain: refmesh (pass by reference) against @grpc/grpc-js (pass by
 * value), in one run, each between a caller (this process) and one server process.
 *
 *  1. The chain `x = f(); y = g(x)`, x of 64 MiB, f and g on ONE remote peer:
 *     wall time (median of several runs) and the bytes that go through the caller
 *     (the caller mesh's stats().traffic deltas, all four counters).
 *  2. A no-op call with a 100-byte argument: sequential p50 latency (remote + get,
 *     one after another), and calls/s with 64 calls in flight.
 *
 * Prints a table, then one last line `bench-result {json}`.
 *
 * Options (for profiling; the defaults are the benchmark):
 *   --refmesh-only    skip gRPC; ends with `refmesh-figures {json}` instead
 *   --chain-runs N    measured chain runs per side (default 5)
 *   --small-calls N   sequential no-op calls per side (default 5000)
 */
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { setImmediate as nextMacrotask } from 'node:timers/promises'
import { createMesh } from '../../node/index.ts'
import type { Mesh, Ref } from '../../node/index.ts'
import { spawnPeer } from '../../node/local-cluster.ts'
import type { PeerProcess } from '../../node/local-cluster.ts'
import { checksum, pattern } from '../fixtures/functions.ts'
import { runGrpcBaseline } from './grpc-baseline.ts'
import type { GrpcBaselineFigures } from './grpc-baseline.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))

const CHAIN_BYTES = 64 * 2 ** 20
const IN_FLIGHT = 64
const SMALL_PAYLOAD = 100
const THROUGHPUT_WINDOW_MS = 3_000
const CHAIN_WARMUP = 2
const SMALL_WARMUP = 500
const CONCURRENT_WARMUP_CALLS = 2_000

/** Nothing in this benchmark may take longer than this, whatever hangs. */
const BENCH_TIMEOUT_MS = 300_000
const STARTUP_TIMEOUT_MS = 20_000
const CHAIN_RUN_TIMEOUT_MS = 60_000
const SMALL_PHASE_TIMEOUT_MS = 90_000
const CLEANUP_TIMEOUT_MS = 15_000

const TARGETS = {
  chain_time: { op: '<=', value: 0.2 },
  caller_bytes: { op: '<=', value: 0.001 },
  small_p50: { op: '<=', value: 1.0 },
  small_throughput: { op: '>=', value: 1.5 }
} as const

type Make = (n: number, seed?: number) => Uint8Array
type Checksum = (x: Uint8Array) => { length: number, checksum: number }
type Noop = (x: Uint8Array) => Uint8Array

interface RefmeshFigures {
  chainMs: number
  chainRunsMs: number[]
  chainCallerBytes: number
  chainCallerChunkBytes: number
  chainReleaseBytes: number
  smallP50Us: number
  smallP99Us: number
  smallMeanUs: number
  smallCallsPerSec: number
  smallThroughputCalls: number
  smallThroughputMs: number
}

// ------------------------------------------------------------------ helpers

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function percentile (xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]
}

/** `parent` or `ms`, whichever fires first. */
function deadline (parent: AbortSignal, ms: number): AbortSignal {
  return AbortSignal.any([parent, AbortSignal.timeout(ms)])
}

/**
 * Resolves with `promise`, or rejects when `signal` fires. The hot loops use this
 * once per phase instead of a timeout per call, so refmesh's figures carry no
 * timer cost the gRPC baseline does not pay; whatever is left waiting is failed
 * by stopping the mesh in `finally`.
 */
async function within<T> (promise: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  signal.throwIfAborted()
  let onAbort = (): void => {}
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => { reject(new Error(`${what}: ${String((signal.reason as Error | undefined)?.message ?? signal.reason)}`)) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** Every byte the caller mesh sent or received, on any protocol, to any peer. */
function callerTraffic (mesh: Mesh): { total: number, chunk: number } {
  const t = mesh.stats().traffic
  return { total: t.controlIn + t.controlOut + t.chunkIn + t.chunkOut, chunk: t.chunkIn + t.chunkOut }
}

async function waitUntil (what: string, check: () => Promise<boolean> | boolean, signal: AbortSignal, intervalMs = 20): Promise<void> {
  for (;;) {
    signal.throwIfAborted()
    if (await within(Promise.resolve(check()), signal, what)) return
    await within(new Promise(resolve => setTimeout(resolve, intervalMs)), signal, what)
  }
}

// ------------------------------------------------------------------ refmesh

async function refmeshChain (mesh: Mesh, peer: string, runs: number, signal: AbortSignal): Promise<Pick<RefmeshFigures, 'chainMs' | 'chainRunsMs' | 'chainCallerBytes' | 'chainCallerChunkBytes' | 'chainReleaseBytes'>> {
  const f = mesh.fn<Make>('make').options({ peer })
  const g = mesh.fn<Checksum>('checksum').options({ peer })
  const expected = checksum(pattern(CHAIN_BYTES))

  const storesEmpty = async (): Promise<boolean> => {
    const remote = await mesh.peerStats(peer, { timeoutMs: 10_000 })
    const local = mesh.stats()
    return remote.store.objects === 0 && local.store.objects === 0 && local.refs.owned === 0 && local.refs.borrowed === 0
  }

  const one = async (): Promise<{ ms: number, bytes: number, chunkBytes: number, releaseBytes: number }> => {
    const runSignal = deadline(signal, CHAIN_RUN_TIMEOUT_MS)
    const before = callerTraffic(mesh)
    const t0 = performance.now()
    let x: Ref<Uint8Array> | undefined
    let y: Ref<{ length: number, checksum: number }> | undefined
    let ms: number
    let after: { total: number, chunk: number }
    try {
      x = f.remote(CHAIN_BYTES)
      y = g.remote(x)
      const result = await within(mesh.get(y), runSignal, 'chain')
      ms = performance.now() - t0
      after = callerTraffic(mesh)
      if (result.length !== CHAIN_BYTES || result.checksum !== expected) {
        throw new Error(`g(x) saw ${JSON.stringify(result)}, expected length ${CHAIN_BYTES} and checksum ${expected}`)
      }
    } finally {
      y?.release()
      x?.release()
    }
    // Releasing x sends its holder a free: count it too (it is queued at once).
    await nextMacrotask()
    const released = callerTraffic(mesh)
    // Release refs between runs: the next run starts with both stores empty.
    await waitUntil('stores to empty after a chain run', storesEmpty, runSignal)
    return { ms, bytes: after.total - before.total, chunkBytes: after.chunk - before.chunk, releaseBytes: released.total - after.total }
  }

  for (let i = 0; i < CHAIN_WARMUP; i++) await one()
  const measured: Array<Awaited<ReturnType<typeof one>>> = []
  for (let i = 0; i < runs; i++) measured.push(await one())
  return {
    chainMs: median(measured.map(r => r.ms)),
    chainRunsMs: measured.map(r => r.ms),
    // The whole life of the chain: its calls, its get, and the release of x and y.
    chainCallerBytes: median(measured.map(r => r.bytes + r.releaseBytes)),
    chainCallerChunkBytes: Math.max(...measured.map(r => r.chunkBytes)),
    chainReleaseBytes: median(measured.map(r => r.releaseBytes))
  }
}

async function refmeshSmall (mesh: Mesh, peer: string, smallCalls: number, signal: AbortSignal): Promise<Pick<RefmeshFigures, 'smallP50Us' | 'smallP99Us' | 'smallMeanUs' | 'smallCallsPerSec' | 'smallThroughputCalls' | 'smallThroughputMs'>> {
  const noop = mesh.fn<Noop>('noop').options({ peer })
  const arg = Uint8Array.from({ length: SMALL_PAYLOAD }, (_, i) => (i * 31) & 255)
  const once = async (): Promise<void> => {
    const r = noop.remote(arg)
    try {
      const back = await mesh.get(r)
      if (back.byteLength !== SMALL_PAYLOAD || back[SMALL_PAYLOAD - 1] !== arg[SMALL_PAYLOAD - 1]) throw new Error('noop echoed the wrong value')
    } finally {
      r.release()
    }
  }
  const inFlight = async (maxCalls: number, windowMs: number): Promise<{ completed: number, ms: number }> => {
    let started = 0
    let completed = 0
    const t0 = performance.now()
    const end = t0 + windowMs
    const worker = async (): Promise<void> => {
      while (started < maxCalls && performance.now() < end && !signal.aborted) {
        started++
        await once()
        completed++
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
    return { completed, ms: performance.now() - t0 }
  }

  const phase = async (): Promise<Awaited<ReturnType<typeof refmeshSmall>>> => {
    for (let i = 0; i < SMALL_WARMUP; i++) await once()
    await inFlight(CONCURRENT_WARMUP_CALLS, THROUGHPUT_WINDOW_MS)
    const lat: number[] = []
    for (let i = 0; i < smallCalls; i++) {
      if ((i & 255) === 0) signal.throwIfAborted()
      const t0 = performance.now()
      await once()
      lat.push((performance.now() - t0) * 1000)
    }
    // Same bound as the gRPC baseline: ~3 s or 4x the sequential count.
    const { completed, ms } = await inFlight(smallCalls * 4, THROUGHPUT_WINDOW_MS)
    signal.throwIfAborted()
    return {
      smallP50Us: median(lat),
      smallP99Us: percentile(lat, 0.99),
      smallMeanUs: lat.reduce((a, b) => a + b, 0) / lat.length,
      smallCallsPerSec: completed / (ms / 1000),
      smallThroughputCalls: completed,
      smallThroughputMs: ms
    }
  }
  return await within(phase(), deadline(signal, SMALL_PHASE_TIMEOUT_MS), 'no-op calls')
}

async function runRefmesh (opts: { chainRuns: number, smallCalls: number, signal: AbortSignal }): Promise<RefmeshFigures> {
  const { signal } = opts
  let server: PeerProcess | undefined
  let mesh: Mesh | undefined
  try {
    server = await spawnPeer({ module: FIXTURES, timeoutMs: STARTUP_TIMEOUT_MS })
    mesh = await within(createMesh({ bootstrap: [server.addrs[0]], bootstrapTimeoutMs: STARTUP_TIMEOUT_MS }), signal, 'caller mesh start')
    const peer = server.peer
    const caller = mesh
    await within(caller.waitForPeer(peer, { signal: deadline(signal, STARTUP_TIMEOUT_MS) }), signal, 'peer hello')
    const offers = caller.peers().find(p => p.peer === peer)?.functions ?? []
    for (const name of ['make', 'checksum', 'noop']) {
      if (!offers.includes(name)) throw new Error(`peer ${peer} does not offer ${name} (offers: ${offers.join(', ')})`)
    }
    const chain = await refmeshChain(caller, peer, opts.chainRuns, signal)
    const small = await refmeshSmall(caller, peer, opts.smallCalls, signal)
    return { ...chain, ...small }
  } finally {
    const stopping: Array<Promise<unknown>> = []
    if (mesh !== undefined) stopping.push(within(mesh.stop(), AbortSignal.timeout(CLEANUP_TIMEOUT_MS), 'caller mesh stop').catch((err: Error) => { console.error(err.message) }))
    if (server !== undefined) {
      const s = server
      stopping.push(within(s.stop(), AbortSignal.timeout(CLEANUP_TIMEOUT_MS), 'peer stop').catch(async (err: Error) => {
        console.error(err.message)
        await s.kill('SIGKILL')
      }))
    }
    await Promise.all(stopping)
  }
}

// ------------------------------------------------------------------ report

function fmt (n: number): string {
  if (!Number.isFinite(n)) return String(n)
  if (n === 0) return '0'
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US')
  return n.toPrecision(3)
}

function report (ours: RefmeshFigures, grpc: GrpcBaselineFigures, chainRuns: number, smallCalls: number): void {
  const ratios = {
    chain_time: ours.chainMs / grpc.chainMs,
    caller_bytes: ours.chainCallerBytes / grpc.chainCallerBytes,
    small_p50: ours.smallP50Us / grpc.smallP50Us,
    small_throughput: ours.smallCallsPerSec / grpc.smallCallsPerSec
  }
  const met = (k: keyof typeof ratios): boolean => TARGETS[k].op === '<=' ? ratios[k] <= TARGETS[k].value : ratios[k] >= TARGETS[k].value
  const rows: Array<[string, number, number, keyof typeof ratios]> = [
    ['chain x=f(); y=g(x), 64 MiB: wall time, ms (median)', ours.chainMs, grpc.chainMs, 'chain_time'],
    ['same chain: bytes through the caller', ours.chainCallerBytes, grpc.chainCallerBytes, 'caller_bytes'],
    ['no-op, 100 B argument: sequential p50, us', ours.smallP50Us, grpc.smallP50Us, 'small_p50'],
    [`no-op, 100 B argument: calls/s, ${IN_FLIGHT} in flight`, ours.smallCallsPerSec, grpc.smallCallsPerSec, 'small_throughput']
  ]
  const table = [['metric', 'refmesh', 'gRPC', 'ratio', 'target', 'met?']]
  for (const [name, a, b, k] of rows) {
    table.push([name, fmt(a), fmt(b), ratios[k].toPrecision(3), `${TARGETS[k].op} ${TARGETS[k].value}`, met(k) ? 'yes' : 'NO'])
  }
  const widths = table[0].map((_, c) => Math.max(...table.map(r => r[c].length)))
  const line = (r: string[]): string => '| ' + r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join(' | ') + ' |'
  console.log(line(table[0]))
  console.log('|' + widths.map((w, c) => c === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':').join('|') + '|')
  for (const r of table.slice(1)) console.log(line(r))
  const missed = (Object.keys(ratios) as Array<keyof typeof ratios>).filter(k => !met(k))
  console.log(missed.length === 0 ? 'all targets met' : `targets missed: ${missed.join(', ')}`)

  const figures = {
    chain_bytes: CHAIN_BYTES,
    chain_runs: chainRuns,
    small_calls: smallCalls,
    small_payload_bytes: SMALL_PAYLOAD,
    in_flight: IN_FLIGHT,
    refmesh_chain_ms: ours.chainMs,
    grpc_chain_ms: grpc.chainMs,
    refmesh_chain_runs_ms: ours.chainRunsMs,
    refmesh_caller_bytes: ours.chainCallerBytes,
    grpc_caller_bytes: grpc.chainCallerBytes,
    refmesh_caller_chunk_bytes: ours.chainCallerChunkBytes,
    refmesh_caller_release_bytes: ours.chainReleaseBytes,
    refmesh_small_p50_us: ours.smallP50Us,
    grpc_small_p50_us: grpc.smallP50Us,
    refmesh_small_p99_us: ours.smallP99Us,
    refmesh_small_mean_us: ours.smallMeanUs,
    refmesh_small_calls_per_s: ours.smallCallsPerSec,
    grpc_small_calls_per_s: grpc.smallCallsPerSec,
    refmesh_small_throughput_calls: ours.smallThroughputCalls,
    refmesh_small_throughput_ms: ours.smallThroughputMs
  }
  console.log(`bench-result ${JSON.stringify({ name: 'chain', figures, ratios })}`)
}

// ------------------------------------------------------------------ main

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      'refmesh-only': { type: 'boolean', default: false },
      'chain-runs': { type: 'string', default: '5' },
      'small-calls': { type: 'string', default: '5000' }
    },
    strict: true
  })
  const chainRuns = Number(values['chain-runs'])
  const smallCalls = Number(values['small-calls'])
  if (!Number.isInteger(chainRuns) || chainRuns < 1 || chainRuns > 100) throw new RangeError('--chain-runs: 1..100')
  if (!Number.isInteger(smallCalls) || smallCalls < 10 || smallCalls > 1_000_000) throw new RangeError('--small-calls: 10..1000000')

  const signal = AbortSignal.timeout(BENCH_TIMEOUT_MS)
  console.error(`refmesh: chain of ${CHAIN_BYTES / 2 ** 20} MiB x ${chainRuns} runs, ${smallCalls} no-op calls, ${IN_FLIGHT} in flight ...`)
  const ours = await runRefmesh({ chainRuns, smallCalls, signal })
  if (values['refmesh-only'] === true) {
    console.log(`refmesh-figures ${JSON.stringify(ours)}`)
    return
  }
  console.error('gRPC baseline ...')
  // grpc-baseline stops its server in its own finally; should it hang instead,
  // `within` gives up, and the server exits when our exit closes its stdin.
  const grpc = await within(runGrpcBaseline({ chainBytes: CHAIN_BYTES, chainRuns, smallCalls, inflight: IN_FLIGHT, signal }), signal, 'gRPC baseline')
  report(ours, grpc, chainRuns, smallCalls)
}

try {
  await main()
} catch (err) {
  console.error('bench:chain failed:', err)
  process.exitCode = 1
} finally {
  // Everything was stopped above; never linger on a stray handle.
  setTimeout(() => process.exit(), 5_000).unref()
}
