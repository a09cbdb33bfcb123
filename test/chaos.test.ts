/** The short chaos run (test/chaos.ts; `npm run chaos` is the long one). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runChaos } from './chaos.ts'

test('chaos: MapReduce on six peers with a random peer SIGKILLed once 6 maps are done, then every 2 s equals the fault-free count; every surviving store ends empty; partitions lost with a mapper are made again by lineage', async (t) => {
  const out = await runChaos({ peers: 6, kills: 3, everyMs: 2_000, firstKillAfterMaps: 6, job: { maps: 36, reduces: 6, shardBytes: 512 * 1024, seed: 5 } })
  assert.ok(out.kills.length >= 1, `at least one peer was killed mid-run (${out.kills.length}; the run took ${Math.round(out.result.elapsedMs)} ms)`)
  assert.equal(out.result.totalWords, out.expected.totalWords)
  assert.equal(out.result.distinctWords, out.expected.distinctWords)
  assert.equal(out.result.digest, out.expected.digest)
  assert.deepEqual(out.result.top, out.expected.top)
  for (const s of out.stores) assert.equal(s.objects, 0, `${s.peer} holds nothing`)
  // Partitions are stored on their mappers (runChaos's 1 KiB inline threshold) and nothing reads
  // them before the reduces start, so a kill during the map phase loses some: lineage made them again.
  const duringMaps = out.kills.filter(k => k.atMs < out.result.mapMs).length
  t.diagnostic(`${out.kills.length} kill(s), ${duringMaps} during the map phase (${Math.round(out.result.mapMs)} ms); lineage ran ${out.reconstructions} call(s) again`)
  if (duringMaps > 0) assert.ok(out.reconstructions >= 1, `a kill during the map phase lost partitions, which lineage made again (${out.reconstructions} re-runs)`)
})
