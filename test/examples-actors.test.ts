/** The actor examples (issue 8's Figures 3b and 3c) run on peer processes and do what they print. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { readFile } from 'node:fs/promises'
import { runAsyncWait } from '../examples/async-wait.ts'
import type { AsyncWaitOptions } from '../examples/async-wait.ts'
import { generateRows, runParameterServer, solveLeastSquares } from '../examples/parameter-server.ts'
import type { ParameterServerOptions, Problem } from '../examples/parameter-server.ts'
import { startMesh, waitFor, waitForEmptyStores } from './helpers.ts'
import type { TestMesh } from './helpers.ts'

const run = promisify(execFile)

/** Waits until no peer hosts an actor any more (each stops when its last handle is gone). */
async function waitForNoActors (t: TestMesh): Promise<void> {
  await waitFor('every actor to stop', async () => {
    const counts = await Promise.all(t.peers.map(async p => (await t.stats(p.peer)).calls.actors))
    return counts.every(n => n === 0) ? true : undefined
  }, 15_000, 100)
}

test('async wait: k simulators play episodes with the driver\'s weights, each peer pulls the weights once', async () => {
  const module = fileURLToPath(new URL('../examples/async-wait.ts', import.meta.url))
  const t = await startMesh(3, { module })
  try {
    const options: AsyncWaitOptions = { simulators: 4, rollouts: 24, hidden: 1024, maxSteps: 60, seed: 11, peers: t.peers.map(p => p.peer), timeoutMs: 30_000 }
    const result = await runAsyncWait(t.caller, options)

    assert.equal(result.episodes.length, 24)
    assert.ok(result.episodes.every(e => e.weightsSum === result.weightsSum), 'every episode was played with the driver\'s weights')
    // Each simulator's own count of episodes and steps, carried from call to
    // call, matches the episodes the driver took from it, in order.
    for (let i = 0; i < options.simulators; i++) {
      const mine = result.episodes.filter(e => e.simulator === i)
      assert.ok(mine.length >= 1, `simulator ${i} played`)
      assert.deepEqual(mine.map(e => e.episode), mine.map((_, n) => n + 1), `simulator ${i}'s episodes in order`)
      let steps = 0
      assert.deepEqual(mine.map(e => e.totalSteps), mine.map(e => (steps += e.steps)))
    }
    assert.equal(result.simulators.reduce((a, s) => a + s.episodes, 0), 24)
    assert.deepEqual(new Set(result.simulators.map(s => s.peer)), new Set(t.peers.map(p => p.peer)), 'the simulators are spread over the peers')

    // One put, pulled once per peer: a peer's chunks in stay near one copy (a
    // chunk or two asked twice at the end of a pull) however many calls it ran;
    // a copy per call would be 24 copies in all.
    const w = result.weightsBytes
    assert.ok(w > 4 * 2 ** 20)
    const peers = Object.entries(result.traffic.peers)
    const callsOn = (peer: string): number => result.episodes.filter(e => result.simulators[e.simulator].peer === peer).length
    for (const [peer, traffic] of peers) {
      assert.ok(traffic.chunkIn >= w && traffic.chunkIn < 2 * w, `peer ${peer} took in ${traffic.chunkIn} bytes of chunks for ${callsOn(peer)} calls over ${w} bytes of weights`)
    }
    assert.ok(peers.some(([peer]) => callsOn(peer) >= 4), 'some peer ran several calls on its one copy')
    const pulled = peers.reduce((a, [, traffic]) => a + traffic.chunkIn, 0)
    assert.ok(pulled <= 1.6 * peers.length * w, `${pulled} bytes of chunks reached ${peers.length} peers`)
    assert.ok(result.traffic.driver.chunkOut <= pulled, 'the peers pulled from each other as well as from the driver')
    assert.equal(result.traffic.driver.chunkIn, 0)

    await waitForNoActors(t)
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

test('parameter server: synchronous gradient descent on 4 worker actors reaches within 1% of the least-squares optimum', async () => {
  const module = fileURLToPath(new URL('../examples/parameter-server.ts', import.meta.url))
  const t = await startMesh(3, { module })
  try {
    const problem: Problem = { samples: 20_000, features: 100, noise: 1, seed: 5 }
    const options: ParameterServerOptions = { ...problem, workers: 4, iterations: 50, learningRate: 0.7, peers: t.peers.map(p => p.peer) }
    const steps: number[] = []
    const result = await runParameterServer(t.caller, { ...options, onIteration: s => steps.push(s.step) })

    // The optimum, checked by its first-order condition: the gradient of the
    // mean squared error vanishes there (the problem is convex).
    const optimum = solveLeastSquares(problem)
    const grad = new Float64Array(problem.features)
    const { x, y } = generateRows(problem, 0, problem.samples)
    for (let r = 0; r < problem.samples; r++) {
      let e = -y[r]
      for (let j = 0; j < problem.features; j++) e += x[r * problem.features + j] * optimum.weights[j]
      for (let j = 0; j < problem.features; j++) grad[j] += 2 * e * x[r * problem.features + j] / problem.samples
    }
    assert.ok(Math.hypot(...grad) < 1e-9, `gradient at the optimum: ${Math.hypot(...grad)}`)

    assert.deepEqual(steps, Array.from({ length: 50 }, (_, i) => i + 1), 'the server applied the updates one by one, in order')
    assert.ok(result.losses[0] > 10 * optimum.loss, `started far from it: ${result.losses[0]}`)
    for (let i = 1; i < result.losses.length; i++) assert.ok(result.losses[i] < result.losses[i - 1], `the loss fell at update ${i}`)
    assert.ok(result.finalLoss >= optimum.loss * (1 - 1e-9), `${result.finalLoss} cannot beat the optimum ${optimum.loss}`)
    assert.ok(result.finalLoss <= optimum.loss * 1.01, `final loss ${result.finalLoss}, optimum ${optimum.loss}`)
    assert.equal(result.workers.length, 4)
    assert.deepEqual(new Set(result.workers), new Set(t.peers.map(p => p.peer)))
    // The data (16 MB) never moved: only calls, Ref descriptors and 800-byte weights and gradients.
    for (const [peer, traffic] of Object.entries(result.traffic.peers)) {
      assert.ok(traffic.chunkIn + traffic.controlIn < 2 ** 20, `peer ${peer} took in ${traffic.chunkIn + traffic.controlIn} bytes`)
    }

    await waitForNoActors(t)
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})

/** The command an npm script runs, for `node` (this very binary) to run with more flags. */
async function npmScript (name: string): Promise<string[]> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> }
  const [command, ...args] = pkg.scripts[name].split(' ')
  assert.equal(command, 'node', `npm run ${name} runs node`)
  return args.map(a => fileURLToPath(new URL(`../${a}`, import.meta.url)))
}

test('npm run examples:async-wait starts a local mesh and prints the episodes, the time and the bytes', async () => {
  const { stdout } = await run(process.execPath, [...await npmScript('examples:async-wait'), '--simulators', '3', '--rollouts', '12', '--hidden', '512', '--max-steps', '40'], { timeout: 60_000 })
  assert.match(stdout, /12 episodes on 3 simulators in [\d.]+ s/)
  assert.match(stdout, /every simulator played with the driver's weights: yes/)
  assert.match(stdout, /in all [\d.]+ MiB of weights reached 3 peers; a copy per call would have been/)
})

test('npm run examples:parameter-server starts a local mesh and prints the loss against the optimum', async () => {
  const { stdout } = await run(process.execPath, [...await npmScript('examples:parameter-server'), '--samples', '4000', '--features', '20', '--iterations', '60'], { timeout: 60_000 })
  assert.match(stdout, /60 synchronous updates in [\d.]+ s/)
  assert.match(stdout, /within 1% of the optimum after \d+ updates/)
  assert.match(stdout, /bytes moved/)
})
