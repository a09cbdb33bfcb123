/**
 * npm run bench:chain — pass-by-reference vs gRPC pass-by-value, in one run.
 *  - the chain x = f(); y = g(x) with x of 64 MiB, f and g on one remote peer:
 *    wall time and bytes through the caller
 *  - a no-op call with a 100-byte argument: sequential p50, and calls/s with 64 in flight
 * Ends with one `bench-result {json}` line.
 */
import { createMesh } from '../../node/index.ts'
import type { Mesh, Ref } from '../../node/index.ts'
import { spawnPeer } from '../../node/local-cluster.ts'
import type { PeerProcess } from '../../node/local-cluster.ts'
import { runGrpcBaseline } from './grpc-baseline.ts'
import { fileURLToPath } from 'node:url'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const CHAIN_BYTES = 64 * 2 ** 20
const CHAIN_RUNS = 5
const SMALL_CALLS = 3_000
const IN_FLIGHT = 64
const THROUGHPUT_MS = 3_000

type Make = (n: number) => Uint8Array
type Checksum = (x: Uint8Array) => { length: number, checksum: number }

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function callerBytes (mesh: Mesh): number {
  const t = mesh.stats().traffic
  return t.controlIn + t.controlOut + t.chunkIn + t.chunkOut
}

async function refmeshFigures (mesh: Mesh, peer: PeerProcess): Promise<{ chainMs: number, chainCallerBytes: number, smallP50Us: number, smallCallsPerSec: number }> {
  const make = mesh.fn<Make>('make').options({ peer: peer.peer })
  const sum = mesh.fn<Checksum>('checksum').options({ peer: peer.peer })
  const chain = async (): Promise<{ ms: number, bytes: number }> => {
    const bytesBefore = callerBytes(mesh)
    const started = performance.now()
    using x = make.remote(CHAIN_BYTES)
    using y = sum.remote(x)
    const result = await mesh.get(y, { timeoutMs: 60_000 })
    const ms = performance.now() - started
    if (result.length !== CHAIN_BYTES) throw new Error(`chain returned ${result.length} bytes`)
    return { ms, bytes: callerBytes(mesh) - bytesBefore }
  }
  await chain()
  const runs: Array<{ ms: number, bytes: number }> = []
  for (let i = 0; i < CHAIN_RUNS; i++) runs.push(await chain())

  const noop = mesh.fn<(x: Uint8Array) => Uint8Array>('noop').options({ peer: peer.peer })
  const arg = new Uint8Array(100).fill(1)
  const once = async (): Promise<void> => {
    using r = noop.remote(arg)
    const back = await mesh.get(r, { timeoutMs: 10_000 })
    if (back.byteLength !== 100) throw new Error('noop returned the wrong value')
  }
  for (let i = 0; i < 300; i++) await once()
  const latencies: number[] = []
  for (let i = 0; i < SMALL_CALLS; i++) {
    const t = performance.now()
    await once()
    latencies.push(performance.now() - t)
  }
  let done = 0
  const started = performance.now()
  const deadline = started + THROUGHPUT_MS
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (performance.now() < deadline) {
      await once()
      done++
    }
  }))
  return {
    chainMs: median(runs.map(r => r.ms)),
    chainCallerBytes: median(runs.map(r => r.bytes)),
    smallP50Us: median(latencies) * 1000,
    smallCallsPerSec: done / ((performance.now() - started) / 1000)
  }
}

async function main (): Promise<void> {
  const peer = await spawnPeer({ module: FIXTURES })
  let mesh: Mesh | undefined
  let ours
  try {
    mesh = await createMesh({ bootstrap: [peer.addrs[0]] })
    ours = await refmeshFigures(mesh, peer)
  } finally {
    await mesh?.stop()
    await peer.stop()
  }
  const grpc = await runGrpcBaseline({ chainBytes: CHAIN_BYTES, chainRuns: CHAIN_RUNS, smallCalls: SMALL_CALLS, inflight: IN_FLIGHT, signal: AbortSignal.timeout(300_000) })

  const ratios = {
    chain_time: ours.chainMs / grpc.chainMs,
    caller_bytes: ours.chainCallerBytes / grpc.chainCallerBytes,
    small_p50: ours.smallP50Us / grpc.smallP50Us,
    small_throughput: ours.smallCallsPerSec / grpc.smallCallsPerSec
  }
  const rows: Array<[string, number, number, number, string, boolean]> = [
    ['chain 64 MiB: wall time (ms)', ours.chainMs, grpc.chainMs, ratios.chain_time, '<= 0.2', ratios.chain_time <= 0.2],
    ['chain 64 MiB: bytes through caller', ours.chainCallerBytes, grpc.chainCallerBytes, ratios.caller_bytes, '<= 0.001', ratios.caller_bytes <= 0.001],
    ['no-op 100 B: sequential p50 (us)', ours.smallP50Us, grpc.smallP50Us, ratios.small_p50, '<= 1.0', ratios.small_p50 <= 1.0],
    [`no-op 100 B: calls/s, ${IN_FLIGHT} in flight`, ours.smallCallsPerSec, grpc.smallCallsPerSec, ratios.small_throughput, '>= 1.5', ratios.small_throughput >= 1.5]
  ]
  const fmt = (n: number): string => n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toPrecision(3)
  console.log('| metric | refmesh | gRPC | ratio | target | met |')
  console.log('|---|---|---|---|---|---|')
  for (const [name, a, b, r, target, met] of rows) console.log(`| ${name} | ${fmt(a)} | ${fmt(b)} | ${r.toPrecision(3)} | ${target} | ${met ? 'yes' : 'no'} |`)
  const figures = {
    refmesh_chain_ms: ours.chainMs,
    grpc_chain_ms: grpc.chainMs,
    refmesh_caller_bytes: ours.chainCallerBytes,
    grpc_caller_bytes: grpc.chainCallerBytes,
    refmesh_small_p50_us: ours.smallP50Us,
    grpc_small_p50_us: grpc.smallP50Us,
    refmesh_small_calls_per_s: ours.smallCallsPerSec,
    grpc_small_calls_per_s: grpc.smallCallsPerSec,
    chain_bytes: CHAIN_BYTES
  }
  console.log(`bench-result ${JSON.stringify({ name: 'chain', figures, ratios })}`)
}

await main()
