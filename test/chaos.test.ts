/** The short chaos run (test/chaos.ts; `npm run chaos` is the long one). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runChaos } from './chaos.ts'

test('chaos: MapReduce on six peers with a random peer SIGKILLed every 2 s equals the fault-free count; every surviving store ends empty', async () => {
  const out = await runChaos({ peers: 6, kills: 3, everyMs: 2_000, job: { maps: 36, reduces: 6, shardBytes: 512 * 1024, seed: 5 } })
  assert.ok(out.kills.length >= 1, `at least one peer was killed mid-run (${out.kills.length}; the run took ${Math.round(out.result.elapsedMs)} ms)`)
  assert.equal(out.result.totalWords, out.expected.totalWords)
  assert.equal(out.result.distinctWords, out.expected.distinctWords)
  assert.equal(out.result.digest, out.expected.digest)
  assert.deepEqual(out.result.top, out.expected.top)
  for (const s of out.stores) assert.equal(s.objects, 0, `${s.peer} holds nothing`)
})
