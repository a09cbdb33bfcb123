/** The examples the README shows run and print what it says. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { runMapReduce, wordCountLocal } from '../examples/mapreduce.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'

const run = promisify(execFile)

test('the README quickstart runs', async () => {
  const file = fileURLToPath(new URL('../examples/quickstart.ts', import.meta.url))
  const { stdout } = await run(process.execPath, [file], { timeout: 60_000 })
  assert.match(stdout, /'quick'/)
  assert.match(stdout, /^9$/m)
  assert.match(stdout, /2 of 2 ready/)
  assert.match(stdout, /Error on \w+: no such page/)
})

test('MapReduce over three peer processes equals the local count, and leaves every store empty', async () => {
  const module = fileURLToPath(new URL('../examples/mapreduce.ts', import.meta.url))
  const t = await startMesh(3, { module })
  try {
    const options = { maps: 6, reduces: 3, shardBytes: 300 * 1024, seed: 7 }
    const progress: string[] = []
    const result = await runMapReduce(t.caller, { ...options, onProgress: (stage, done, total) => progress.push(`${stage} ${done}/${total}`) })
    const expected = wordCountLocal(options)
    assert.deepEqual(result.top, expected.top)
    assert.equal(result.totalWords, expected.totalWords)
    assert.equal(result.distinctWords, expected.distinctWords)
    assert.ok(progress.includes('map 6/6') && progress.includes('reduce 3/3'))
    const executed = await Promise.all(t.peers.map(async p => (await t.stats(p.peer)).calls.executed))
    assert.equal(executed.reduce((a, b) => a + b, 0), 9)
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('npm start\'s demo runs a local mesh and checks its answer', async () => {
  const bin = fileURLToPath(new URL('../node/bin/refmesh.js', import.meta.url))
  const { stdout } = await run(process.execPath, [bin, 'demo', '--maps', '4', '--shard-bytes', '256KiB'], { timeout: 120_000 })
  assert.match(stdout, /map +\[#+\] 4\/4/)
  assert.match(stdout, /top words/)
  assert.match(stdout, /result matches a local single-process count/)
})
