/**
 * Asynchronous rollouts, the RL shape of the Ray paper's Figure 3b: a driver
 * holds a policy's weights (a Float32Array of a few MiB), k stateful simulators
 * (actors) play episodes with it, and the driver takes each episode as soon as
 * it is over (`mesh.wait(pending, { count: 1 })`) and gives that simulator the
 * next one, so a simulator that drew short episodes is never held up by one
 * that drew long ones.
 *
 *   driver:  weights = put(Float32Array)                       one object, a few MiB
 *            sim_i   = actor('Simulator').create(i, seed)      k actors spread over the peers
 *            ep      = sim_i.rollout.remote(weights, maxSteps) the same Ref in every call
 *            loop:   ready = wait(pending, { count: 1 }); for each: read it, sim.rollout.remote(weights, ...)
 *
 * The weights go by Ref: one put, and every call names the same object, so each
 * peer pulls it once (from the driver or from another peer that already has
 * chunks of it), keeps its copy while the driver holds the Ref, and every later
 * call on that peer finds it in its own store. Passing the Float32Array itself
 * would put a new object per call, and each call would move the whole 4 MiB.
 *
 * What is simulated: CartPole (the classic control problem: keep a pole upright
 * on a cart by pushing it left or right; +1 reward per step, the episode ends
 * when the pole tips past 12 degrees or the cart leaves the track), played by a
 * stochastic MLP policy 4 -> H -> H -> 1 (tanh) whose weights the driver makes
 * at random from a seed. The weights do not change during a run: a learner
 * would put a new version now and then, and each version would move the same way.
 * A simulator's state is its environment, its random stream and its counters;
 * every result carries them, so the caller can see calls ran in order on one
 * instance, and the sum of the weights it saw (to check it saw the driver's).
 *
 * Peers offer the simulator with `refmesh peer --module examples/async-wait.ts`;
 * `npm run examples:async-wait` starts three such peers and runs the driver.
 */
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import type { ActorHandle, Mesh, MeshStats, Ref } from '../core/index.ts'
import { TimeoutError } from '../core/errors.ts'
import { createMesh } from '../node/index.ts'
import { spawnPeers, stopAll, waitForFullMesh } from '../node/local-cluster.ts'
import { prng } from './mapreduce.ts'

export const SIMULATOR = 'asyncwait.Simulator'

// ------------------------------------------------------------------ the policy

/** Floats in the weights of a 4 -> hidden -> hidden -> 1 MLP: W1, b1, W2, b2, W3, b3. */
export function policySize (hidden: number): number {
  return hidden * 4 + hidden + hidden * hidden + hidden + hidden + 1
}

/** Random weights (uniform, scaled by fan-in so tanh units neither saturate nor vanish), deterministic in the seed. */
export function makeWeights (hidden: number, seed: number): Float32Array {
  const random = prng(seed)
  const w = new Float32Array(policySize(hidden))
  let at = 0
  const layer = (fanIn: number, fanOut: number): void => {
    const scale = Math.sqrt(3 / fanIn)
    for (let i = 0; i < fanIn * fanOut; i++) w[at++] = (2 * random() - 1) * scale
    at += fanOut // biases start at zero
  }
  layer(4, hidden)
  layer(hidden, hidden)
  layer(hidden, 1)
  return w
}

/** The sum of the weights in float64: what a simulator reports, to show which weights it played with. */
export function weightsSum (w: Float32Array): number {
  let s = 0
  for (let i = 0; i < w.length; i++) s += w[i]
  return s
}

/** The probability of pushing right in state `obs`. `h1`, `h2`: scratch space of `hidden` floats. */
function pushRight (w: Float32Array, hidden: number, obs: Float64Array, h1: Float64Array, h2: Float64Array): number {
  const b1 = hidden * 4
  const w2 = b1 + hidden
  const b2 = w2 + hidden * hidden
  const w3 = b2 + hidden
  const b3 = w3 + hidden
  for (let j = 0; j < hidden; j++) {
    const r = j * 4
    h1[j] = Math.tanh(w[b1 + j] + w[r] * obs[0] + w[r + 1] * obs[1] + w[r + 2] * obs[2] + w[r + 3] * obs[3])
  }
  for (let j = 0; j < hidden; j++) {
    let s = w[b2 + j]
    const r = w2 + j * hidden
    for (let i = 0; i < hidden; i++) s += w[r + i] * h1[i]
    h2[j] = Math.tanh(s)
  }
  let logit = w[b3]
  for (let i = 0; i < hidden; i++) logit += w[w3 + i] * h2[i]
  return 1 / (1 + Math.exp(-logit))
}

// ------------------------------------------------------------- the environment

/** CartPole-v1's dynamics (Barto, Sutton and Anderson 1983, as in OpenAI Gym): state x, x', theta, theta'. */
class CartPole {
  readonly state = new Float64Array(4)
  private readonly random: () => number

  constructor (random: () => number) {
    this.random = random
    this.reset()
  }

  reset (): void {
    for (let i = 0; i < 4; i++) this.state[i] = (this.random() - 0.5) * 0.1
  }

  /** Pushes the cart; true when the episode is over. */
  step (right: boolean): boolean {
    const s = this.state
    const [x, xDot, theta, thetaDot] = s
    const force = right ? 10 : -10
    const cos = Math.cos(theta)
    const sin = Math.sin(theta)
    // masses: cart 1.0, pole 0.1; pole half-length 0.5; 20 ms steps (Euler)
    const temp = (force + 0.05 * thetaDot * thetaDot * sin) / 1.1
    const thetaAcc = (9.8 * sin - cos * temp) / (0.5 * (4 / 3 - 0.1 * cos * cos / 1.1))
    const xAcc = temp - 0.05 * thetaAcc * cos / 1.1
    s[0] = x + 0.02 * xDot
    s[1] = xDot + 0.02 * xAcc
    s[2] = theta + 0.02 * thetaDot
    s[3] = thetaDot + 0.02 * thetaAcc
    return Math.abs(s[0]) > 2.4 || Math.abs(s[2]) > 12 * Math.PI / 180
  }
}

// ------------------------------------------------------------- the simulator

/** One episode, as a simulator reports it. */
export interface Episode {
  simulator: number
  /** how many episodes this simulator has played, this one included (1, 2, ...): its state between calls */
  episode: number
  /** steps this simulator has taken in all its episodes so far */
  totalSteps: number
  steps: number
  /** the episode's return (+1 per step the pole stayed up) */
  reward: number
  /** the sum of the weights it was given */
  weightsSum: number
  /** how long the episode took on the simulator's peer */
  ms: number
}

/** A stateful environment simulator: an actor that keeps its CartPole, its random stream and its counters between calls. */
export class Simulator {
  private readonly id: number
  private readonly random: () => number
  private readonly env: CartPole
  private episodes = 0
  private totalSteps = 0
  private h1 = new Float64Array(0)
  private h2 = new Float64Array(0)

  constructor (id: number, seed: number) {
    this.id = id
    this.random = prng(seed)
    this.env = new CartPole(this.random)
  }

  /** Plays one episode (at most `maxSteps` steps) with the policy `weights` of a `hidden`-unit MLP. */
  rollout (weights: Float32Array, hidden: number, maxSteps: number): Episode {
    if (weights.length !== policySize(hidden)) throw new RangeError(`weights of ${weights.length} floats are not a ${hidden}-unit policy (${policySize(hidden)})`)
    const started = performance.now()
    if (this.h1.length !== hidden) {
      this.h1 = new Float64Array(hidden)
      this.h2 = new Float64Array(hidden)
    }
    this.env.reset()
    let steps = 0
    let over = false
    while (!over && steps < maxSteps) {
      over = this.env.step(this.random() < pushRight(weights, hidden, this.env.state, this.h1, this.h2))
      steps++
    }
    this.episodes++
    this.totalSteps += steps
    return {
      simulator: this.id,
      episode: this.episodes,
      totalSteps: this.totalSteps,
      steps,
      reward: steps,
      weightsSum: weightsSum(weights),
      ms: performance.now() - started
    }
  }
}

/** What peers offer (`refmesh peer --module examples/async-wait.ts`). */
export function register (mesh: Mesh): void {
  mesh.registerActor(SIMULATOR, Simulator)
}
export default register

// ------------------------------------------------------------------ the driver

type Traffic = MeshStats['traffic']

export interface AsyncWaitOptions {
  /** k: simulators (actors) */
  simulators: number
  /** episodes to play in all */
  rollouts: number
  /** units in each hidden layer: the weights are hidden^2 + 7 hidden + 1 floats (1024: 4.03 MiB) */
  hidden: number
  /** an episode ends after this many steps even if the pole is still up */
  maxSteps: number
  seed: number
  /** peers to place the simulators on, in turn; default: let the mesh spread them */
  peers?: string[]
  /** gives up when no episode ends for this long (default 60 s) */
  timeoutMs?: number
  signal?: AbortSignal
  /** called for each episode, in the order they end */
  onEpisode?: (episode: Episode, done: number, total: number) => void
}

export interface AsyncWaitResult {
  elapsedMs: number
  /** every episode, in the order the driver took them */
  episodes: Episode[]
  /** per simulator: where it ran and how many episodes it played */
  simulators: Array<{ peer: string, episodes: number, steps: number }>
  weightsBytes: number
  weightsSum: number
  meanReward: number
  bestReward: number
  /** bytes each party counted from after the simulators were made until every episode was in */
  traffic: { driver: Traffic, peers: Record<string, Traffic> }
}

const minus = (a: Traffic, b: Traffic): Traffic => ({
  controlIn: a.controlIn - b.controlIn,
  controlOut: a.controlOut - b.controlOut,
  chunkIn: a.chunkIn - b.chunkIn,
  chunkOut: a.chunkOut - b.chunkOut
})

/**
 * Plays `rollouts` episodes on `simulators` actors with one set of weights,
 * taking each episode as it ends and handing that simulator the next. Every
 * Ref and actor it makes is released before it returns or throws.
 */
export async function runAsyncWait (mesh: Mesh, options: AsyncWaitOptions): Promise<AsyncWaitResult> {
  const { simulators: k, rollouts, hidden, maxSteps, seed } = options
  for (const [name, v, min] of [['simulators', k, 1], ['rollouts', rollouts, 1], ['hidden', hidden, 1], ['maxSteps', maxSteps, 1]] as const) {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be a whole number >= ${min}, not ${v}`)
  }
  const timeoutMs = options.timeoutMs ?? 60_000
  const sims: Array<ActorHandle<Simulator>> = []
  const pending = new Map<Ref<Episode>, number>()
  let weights: Ref<Float32Array> | undefined
  try {
    // Created at once, so the mesh sees the first ones in flight and spreads the rest.
    const made = await Promise.allSettled(Array.from({ length: k }, async (_, i) => {
      const placement = options.peers !== undefined ? { peer: options.peers[i % options.peers.length] } : { spread: true }
      return await mesh.actor<Simulator>(SIMULATOR).options(placement).create(i, seed + 1 + i)
    }))
    for (const m of made) if (m.status === 'fulfilled') sims.push(m.value)
    for (const m of made) if (m.status === 'rejected') throw m.reason

    const hosts = [...new Set(sims.map(s => s.peer))]
    const before = { driver: mesh.stats().traffic, peers: await Promise.all(hosts.map(async p => (await mesh.peerStats(p, { timeoutMs, signal: options.signal })).traffic)) }
    const started = performance.now()

    const w = makeWeights(hidden, seed)
    const sum = weightsSum(w)
    weights = mesh.put(w)
    let submitted = 0
    const play = (i: number): void => {
      pending.set(sims[i].rollout.remote(weights!, hidden, maxSteps), i)
      submitted++
    }
    for (let i = 0; i < k && submitted < rollouts; i++) play(i)

    const episodes: Episode[] = []
    while (pending.size > 0) {
      const { ready } = await mesh.wait([...pending.keys()], { count: 1, timeoutMs, signal: options.signal })
      options.signal?.throwIfAborted()
      if (ready.length === 0) throw new TimeoutError(`no episode ended within ${timeoutMs} ms (${pending.size} running, ${episodes.length} of ${rollouts} done)`)
      for (const ref of ready as Array<Ref<Episode>>) {
        const i = pending.get(ref)!
        pending.delete(ref)
        try {
          episodes.push(await mesh.get(ref, { timeoutMs, signal: options.signal }))
        } finally {
          ref.release()
        }
        options.onEpisode?.(episodes[episodes.length - 1], episodes.length, rollouts)
        // The simulator that finished gets the next episode: the others are still busy.
        if (submitted < rollouts) play(i)
      }
    }
    const elapsedMs = performance.now() - started

    const after = { driver: mesh.stats().traffic, peers: await Promise.all(hosts.map(async p => (await mesh.peerStats(p, { timeoutMs, signal: options.signal })).traffic)) }
    const rewards = episodes.map(e => e.reward)
    return {
      elapsedMs,
      episodes,
      simulators: sims.map((s, i) => {
        const mine = episodes.filter(e => e.simulator === i)
        return { peer: s.peer, episodes: mine.length, steps: mine.reduce((a, e) => a + e.steps, 0) }
      }),
      weightsBytes: w.byteLength,
      weightsSum: sum,
      meanReward: rewards.reduce((a, b) => a + b, 0) / rewards.length,
      bestReward: Math.max(...rewards),
      traffic: {
        driver: minus(after.driver, before.driver),
        peers: Object.fromEntries(hosts.map((p, i) => [p, minus(after.peers[i], before.peers[i])]))
      }
    }
  } finally {
    for (const ref of pending.keys()) ref.release()
    weights?.release()
    for (const s of sims) s.release()
  }
}

// ------------------------------------------------------- npm run examples:async-wait

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(2)} MiB`
const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`
const size = (n: number): string => n >= 2 ** 20 ? mib(n) : n >= 1024 ? kib(n) : `${n} B`
const short = (peer: string): string => '…' + peer.slice(-6)

/** The lines the npm script prints about a run. */
export function report (result: AsyncWaitResult, options: AsyncWaitOptions, driver: string): string {
  const lines: string[] = []
  const n = result.episodes.length
  lines.push(`${n} episodes on ${options.simulators} simulators in ${(result.elapsedMs / 1000).toFixed(2)} s: mean return ${result.meanReward.toFixed(1)}, best ${result.bestReward} (of at most ${options.maxSteps})`)
  result.simulators.forEach((s, i) => {
    lines.push(`  simulator ${i} on ${short(s.peer)}: ${String(s.episodes).padStart(3)} episodes, ${String(s.steps).padStart(5)} steps`)
  })
  const sums = new Set(result.episodes.map(e => e.weightsSum))
  lines.push(`every simulator played with the driver's weights: ${sums.size === 1 && sums.has(result.weightsSum) ? 'yes' : 'NO'} (sum ${result.weightsSum.toFixed(4)})`)
  const d = result.traffic.driver
  const hosts = Object.entries(result.traffic.peers)
  lines.push('')
  lines.push(`bytes moved (weights: ${mib(result.weightsBytes)}, one put; ${n} calls named it):`)
  lines.push(`  driver ${short(driver)}: sent ${size(d.chunkOut)} of chunks, ${size(d.controlOut)} of control; received ${size(d.chunkIn)} of chunks, ${size(d.controlIn)} of control`)
  for (const [peer, t] of hosts) {
    lines.push(`  peer   ${short(peer)}: received ${size(t.chunkIn)} of chunks (${(t.chunkIn / result.weightsBytes).toFixed(2)} copies of the weights), sent ${size(t.chunkOut)} to other peers`)
  }
  const pulled = hosts.reduce((a, [, t]) => a + t.chunkIn, 0)
  lines.push(`  in all ${size(pulled)} of weights reached ${hosts.length} peers; a copy per call would have been ${size(n * result.weightsBytes)}`)
  return lines.join('\n')
}

async function main (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      peers: { type: 'string', default: '3' },
      simulators: { type: 'string', default: '6' },
      rollouts: { type: 'string', default: '120' },
      hidden: { type: 'string', default: '1024' },
      'max-steps': { type: 'string', default: '200' },
      seed: { type: 'string', default: '2026' }
    },
    strict: true,
    allowPositionals: false
  })
  const whole = (name: string, v: string, min = 1): number => {
    const n = Number(v)
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name} must be a whole number >= ${min}, not "${v}"`)
    return n
  }
  const peerCount = whole('peers', values.peers)
  const options: AsyncWaitOptions = {
    simulators: whole('simulators', values.simulators),
    rollouts: whole('rollouts', values.rollouts),
    hidden: whole('hidden', values.hidden),
    maxSteps: whole('max-steps', values['max-steps']),
    seed: whole('seed', values.seed, 0)
  }
  const interrupt = new AbortController()
  process.once('SIGINT', () => interrupt.abort(new Error('interrupted')))
  const module = fileURLToPath(import.meta.url)
  process.stdout.write(`starting ${peerCount} peer processes (refmesh peer --module examples/async-wait.ts)...\n`)
  const peers = await spawnPeers(peerCount, { module })
  let driver: Mesh | undefined
  try {
    driver = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(driver, peers)
    options.peers = peers.map(p => p.peer)
    options.signal = interrupt.signal
    options.onEpisode = (e, done, total) => {
      if (done % Math.max(1, Math.round(total / 10)) === 0 || done === total) process.stdout.write(`  ${String(done).padStart(4)}/${total}  simulator ${e.simulator} finished its episode ${e.episode}: return ${e.reward} (${e.ms.toFixed(0)} ms)\n`)
    }
    process.stdout.write(`${options.simulators} simulators, ${options.rollouts} episodes, weights of a ${options.hidden}-unit policy (${mib(policySize(options.hidden) * 4)})\n`)
    const result = await runAsyncWait(driver, options)
    process.stdout.write(`\n${report(result, options, driver.peerId)}\n`)
  } finally {
    await driver?.stop()
    await stopAll(peers)
  }
}

if (import.meta.main) {
  await main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`async-wait: ${err.message}\n`)
    process.exitCode = 1
  })
}
