/**
 * npm run bench:recovery — what failures cost, each against its baseline in the
 * same run:
 *  - reconstruct: a 64 MiB intermediate object (y = noop(x), x made by a call
 *    with 2 s of CPU) whose only holder is killed with SIGKILL; the time from the
 *    kill until get(y) returns (failure detection, then lineage runs both calls
 *    again, then the pull of y) vs the same computation and pull from scratch
 *    with nothing failed (start to get(y) returning, on another peer).
 *  - chaos_makespan: MapReduce on six peers with one peer killed with SIGKILL
 *    halfway through vs the same job with no failure.
 * Ends with one `bench-result {json}` line.
 */
import { fileURLToPath } from 'node:url'
import { createMesh } from '../../node/index.ts'
import type { Ref } from '../../node/index.ts'
import { spawnPeers, stopAll, waitForFullMesh } from '../../node/local-cluster.ts'
import { runChaos } from '../chaos.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const MiB = 2 ** 20
const SIZE = 64 * MiB
const CPU_MS = 2_000
const JOB = { maps: 48, reduces: 6, shardBytes: 1024 * 1024, seed: 3 }

async function reconstruct (): Promise<{ originalMs: number, recoveryMs: number, reconstructions: number }> {
  const peers = await spawnPeers(3, { module: FIXTURES })
  const mesh = await createMesh({ bootstrap: [peers[0].addrs[0]] })
  try {
    await waitForFullMesh(mesh, peers, 30_000)
    const [holder, other] = peers
    // x stays held: lineage does not keep a call's arguments alive (PROTOCOL.md).
    const chain = (peer: string): [Ref<Uint8Array>, Ref<Uint8Array>] => {
      const x = mesh.fn<(n: number, seed: number, ms: number) => Uint8Array>('slowMake').options({ peer }).remote(SIZE, 1, CPU_MS)
      const y = mesh.fn<(x: Uint8Array) => Uint8Array>('noop').options({ peer }).remote(x) as Ref<Uint8Array>
      return [x, y]
    }
    // Both measured runs end with the 64 MiB value in the caller, so both pay that pull; the
    // small warm-up makes neither the first to run these functions on a peer.
    for (const p of peers) await mesh.get(mesh.fn<(x: Uint8Array) => Uint8Array>('noop').options({ peer: p.peer }).remote(mesh.fn<(n: number, seed: number, ms: number) => Uint8Array>('slowMake').options({ peer: p.peer }).remote(1024, 1, 1)), { timeoutMs: 30_000 })
    const started = performance.now()
    const [freshX, fresh] = chain(other.peer)
    const freshValue = await mesh.get(fresh, { timeoutMs: 120_000 })
    const originalMs = performance.now() - started
    if (freshValue.byteLength !== SIZE) throw new Error(`the fresh y came back with ${freshValue.byteLength} bytes`)
    freshX.release()
    fresh.release()
    const [x, y] = chain(holder.peer)
    await mesh.wait([y], { timeoutMs: 120_000 })
    const reconstructionsBefore = mesh.stats().calls.reconstructions
    await holder.kill('SIGKILL')
    const killed = performance.now()
    const value = await mesh.get(y, { timeoutMs: 120_000 })
    const recoveryMs = performance.now() - killed
    if (value.byteLength !== SIZE) throw new Error(`y came back with ${value.byteLength} bytes`)
    x.release()
    y.release()
    return { originalMs, recoveryMs, reconstructions: mesh.stats().calls.reconstructions - reconstructionsBefore }
  } finally {
    await mesh.stop()
    await stopAll(peers)
  }
}

const rec = await reconstruct()
console.log(`reconstruct: kill to value ${Math.round(rec.recoveryMs)} ms, original ${Math.round(rec.originalMs)} ms (${(rec.recoveryMs / rec.originalMs).toFixed(2)})`)
const calm = await runChaos({ peers: 6, kills: 0, everyMs: 0, job: JOB })
const chaos = await runChaos({ peers: 6, kills: 1, everyMs: Math.round(calm.result.elapsedMs / 2), job: JOB })
if (chaos.kills.length === 0) throw new Error('the MapReduce run ended before its kill: the with-failure figure would be a no-failure time')
if (chaos.result.digest !== chaos.expected.digest) throw new Error('the run with a kill counted differently')
// A job that ended before its kill would measure nothing: fail rather than report a ratio of about 1.
if (chaos.kills.length === 0) throw new Error(`no peer was killed: the job ended in ${Math.round(chaos.result.elapsedMs)} ms, before the kill at ${Math.round(calm.result.elapsedMs / 2)} ms`)

const figures = {
  object_bytes: SIZE,
  original_ms: Math.round(rec.originalMs),
  recovery_ms: Math.round(rec.recoveryMs),
  reconstructions: rec.reconstructions,
  mapreduce_ms: Math.round(calm.result.elapsedMs),
  mapreduce_with_kill_ms: Math.round(chaos.result.elapsedMs),
  mapreduce_lineage_reruns: chaos.reconstructions,
  kill_at_ms: chaos.kills[0]?.atMs ?? -1
}
const ratios = { reconstruct: rec.recoveryMs / rec.originalMs, chaos_makespan: chaos.result.elapsedMs / calm.result.elapsedMs }
console.log('| what | baseline | with the failure | ratio |')
console.log('|---|---|---|---|')
console.log(`| 64 MiB intermediate lost (holder SIGKILLed), ${rec.reconstructions} calls run again | computed and got from scratch ${figures.original_ms} ms | kill to value ${figures.recovery_ms} ms | ${ratios.reconstruct.toFixed(2)} |`)
console.log(`| MapReduce ${JOB.maps} x 1 MiB on 6 peers, one killed at ${figures.kill_at_ms} ms | ${figures.mapreduce_ms} ms | ${figures.mapreduce_with_kill_ms} ms | ${ratios.chaos_makespan.toFixed(2)} |`)
console.log(`bench-result ${JSON.stringify({ name: 'recovery', figures, ratios })}`)
