/**
 * A parameter server, the shape of the Ray paper's Figure 3c: synchronous
 * data-parallel gradient descent on a generated linear-regression problem.
 * The model's weights live in a parameter-server actor; k worker actors each
 * hold a shard of the data; every iteration the workers compute the gradient
 * of their shard at the current weights and the server applies the mean.
 *
 *   driver:  ps      = actor('ParameterServer').create(features, learningRate)
 *            shard_i = actor('DataShard').create(problem, first_i, count_i)   each makes its own rows
 *            loop:   w      = ps.weights.remote()            a Ref; the driver never reads it
 *                    g_i    = shard_i.gradient.remote(w)     the same Ref to every worker
 *                    step   = ps.apply.remote(g_1, ..., g_k) gradients by Ref, straight to the server
 *                    loss   = get(step).loss                 the only value the driver reads
 *
 * The driver only wires Refs together: it never reads the weights or a
 * gradient. A call goes out once its Ref arguments are ready, so each
 * iteration is submitted whole, and the server's calls run in the order the
 * driver made them (an actor's guarantee), so `weights` of iteration t+1 sees
 * the update of iteration t. Where the bytes go depends on their size. These
 * weights and gradients are 800 bytes, under the 64 KiB inline threshold, so
 * each comes back inside its call's reply to the driver, which owns it, and the
 * driver's store hands it on to the peers that name it (a few KiB per update).
 * Weights above the threshold would stay on the server's peer, and the workers
 * would pull them from there and from each other (one object, every worker
 * names it: the mesh's multicast), as the weights of examples/async-wait.ts do.
 * The data never moves: each worker generates its own rows from the problem's
 * seed, as if it had loaded its shard from its own disk.
 *
 * The problem: y = X w* + noise, with X's features independent normals whose
 * scales fall geometrically from 1 to 0.2 (so gradient descent needs a few
 * dozen steps, not three), w* standard normal, the noise normal. Every sample
 * is drawn from its own seeded stream, so the data does not depend on how it
 * is sharded, and `solveLeastSquares` can rebuild it in one process and find
 * the least-squares optimum by the normal equations.
 *
 * Peers offer both actors with `refmesh peer --module examples/parameter-server.ts`;
 * `npm run examples:parameter-server` starts three such peers and runs the driver.
 */
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import type { ActorHandle, Mesh, MeshStats, Ref } from '../core/index.ts'
import { createMesh } from '../node/index.ts'
import { spawnPeers, stopAll, waitForFullMesh } from '../node/local-cluster.ts'
import { prng } from './mapreduce.ts'

export const PARAMETER_SERVER = 'ps.ParameterServer'
export const DATA_SHARD = 'ps.DataShard'

// ------------------------------------------------------------------ the problem

export interface Problem {
  samples: number
  features: number
  /** the noise's standard deviation */
  noise: number
  seed: number
}

/** the smallest feature scale: the condition number of X^T X is about its inverse square */
const MIN_SCALE = 0.2

/** An independent stream per (seed, stream) pair, so every sample can be made on its own. */
function mix (seed: number, stream: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(stream + 1, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d)
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b)
  return (h ^ (h >>> 16)) >>> 0
}

/** Standard normals from a uniform stream (Box-Muller; the second value of each pair is kept for the next call). */
function normals (random: () => number): () => number {
  let spare: number | undefined
  return () => {
    if (spare !== undefined) {
      const v = spare
      spare = undefined
      return v
    }
    const r = Math.sqrt(-2 * Math.log(1 - random()))
    const a = 2 * Math.PI * random()
    spare = r * Math.sin(a)
    return r * Math.cos(a)
  }
}

/** The true weights w* (which gradient descent never sees). */
export function trueWeights (p: Problem): Float64Array {
  const normal = normals(prng(mix(p.seed, -1)))
  return Float64Array.from({ length: p.features }, () => normal())
}

/** Samples [first, first + count): rows of X (row-major) and y. */
export function generateRows (p: Problem, first: number, count: number): { x: Float64Array, y: Float64Array } {
  const d = p.features
  const wStar = trueWeights(p)
  const scale = Float64Array.from({ length: d }, (_, j) => MIN_SCALE ** (d === 1 ? 0 : j / (d - 1)))
  const x = new Float64Array(count * d)
  const y = new Float64Array(count)
  for (let r = 0; r < count; r++) {
    const normal = normals(prng(mix(p.seed, first + r)))
    let dot = 0
    for (let j = 0; j < d; j++) {
      const v = scale[j] * normal()
      x[r * d + j] = v
      dot += v * wStar[j]
    }
    y[r] = dot + p.noise * normal()
  }
  return { x, y }
}

/** Which samples worker i of k holds: [first, first + count). */
export function shardOf (samples: number, k: number, i: number): { first: number, count: number } {
  const first = Math.floor(samples * i / k)
  return { first, count: Math.floor(samples * (i + 1) / k) - first }
}

/** Sum over the rows of (x.w - y)^2, and, if `grad` is given, adds the sum of 2 (x.w - y) x to it. */
function residuals (x: Float64Array, y: Float64Array, w: Float64Array, grad?: Float64Array): number {
  const d = w.length
  let loss = 0
  for (let r = 0; r < y.length; r++) {
    const o = r * d
    let dot = 0
    for (let j = 0; j < d; j++) dot += x[o + j] * w[j]
    const e = dot - y[r]
    loss += e * e
    if (grad !== undefined) for (let j = 0; j < d; j++) grad[j] += 2 * e * x[o + j]
  }
  return loss
}

/** The mean squared error of `w` on the whole problem, in this process. */
export function lossOf (p: Problem, w: Float64Array): number {
  let total = 0
  const block = 2000
  for (let first = 0; first < p.samples; first += block) {
    const { x, y } = generateRows(p, first, Math.min(block, p.samples - first))
    total += residuals(x, y, w)
  }
  return total / p.samples
}

/**
 * The least-squares optimum in this process: the normal equations
 * (X^T X) w = X^T y, solved by Cholesky. Its loss is what gradient descent on
 * the mesh should approach.
 */
export function solveLeastSquares (p: Problem): { weights: Float64Array, loss: number } {
  const d = p.features
  const a = new Float64Array(d * d)
  const b = new Float64Array(d)
  const block = 2000
  for (let first = 0; first < p.samples; first += block) {
    const { x, y } = generateRows(p, first, Math.min(block, p.samples - first))
    for (let r = 0; r < y.length; r++) {
      const o = r * d
      for (let i = 0; i < d; i++) {
        const xi = x[o + i]
        b[i] += xi * y[r]
        for (let j = 0; j <= i; j++) a[i * d + j] += xi * x[o + j]
      }
    }
  }
  // Cholesky, A = L L^T, in place in the lower triangle.
  for (let j = 0; j < d; j++) {
    let s = a[j * d + j]
    for (let k = 0; k < j; k++) s -= a[j * d + k] ** 2
    if (s <= 0) throw new Error('X^T X is not positive definite: more features than independent samples?')
    const l = Math.sqrt(s)
    a[j * d + j] = l
    for (let i = j + 1; i < d; i++) {
      let t = a[i * d + j]
      for (let k = 0; k < j; k++) t -= a[i * d + k] * a[j * d + k]
      a[i * d + j] = t / l
    }
  }
  const z = new Float64Array(d)
  for (let i = 0; i < d; i++) {
    let t = b[i]
    for (let k = 0; k < i; k++) t -= a[i * d + k] * z[k]
    z[i] = t / a[i * d + i]
  }
  const w = new Float64Array(d)
  for (let i = d - 1; i >= 0; i--) {
    let t = z[i]
    for (let k = i + 1; k < d; k++) t -= a[k * d + i] * w[k]
    w[i] = t / a[i * d + i]
  }
  return { weights: w, loss: lossOf(p, w) }
}

// ------------------------------------------------------------------ the actors

/** A worker's answer for one iteration: sums over its rows, so the server can weigh shards by size. */
export interface Gradient {
  /** sum over the rows of 2 (x.w - y) x */
  sum: Float64Array
  /** sum over the rows of (x.w - y)^2 at the weights it was given */
  loss: number
  samples: number
}

export interface Step {
  /** how many updates the server has applied, this one included */
  step: number
  /** the mean squared error at the weights before this update */
  loss: number
  samples: number
}

/** The parameter server: holds the weights, applies the mean gradient of each round. */
export class ParameterServer {
  private w: Float64Array
  private readonly learningRate: number
  private steps = 0

  constructor (features: number, learningRate: number) {
    this.w = new Float64Array(features)
    this.learningRate = learningRate
  }

  /** A copy: a value a method returns must not change afterwards (the mesh shares it, it does not copy it). */
  weights (): Float64Array {
    return this.w.slice()
  }

  /** One synchronous update from every worker's gradient (Ref arguments: the mesh hands over their values). */
  apply (...grads: Gradient[]): Step {
    const samples = grads.reduce((n, g) => n + g.samples, 0)
    const w = this.w.slice()
    for (const g of grads) {
      if (g.sum.length !== w.length) throw new RangeError(`a gradient of ${g.sum.length} values for ${w.length} weights`)
      for (let j = 0; j < w.length; j++) w[j] -= this.learningRate * g.sum[j] / samples
    }
    this.w = w
    this.steps++
    return { step: this.steps, loss: grads.reduce((a, g) => a + g.loss, 0) / samples, samples }
  }
}

/** A worker: holds one shard of the data for its whole life. */
export class DataShard {
  private readonly x: Float64Array
  private readonly y: Float64Array

  constructor (problem: Problem, first: number, count: number) {
    ({ x: this.x, y: this.y } = generateRows(problem, first, count))
  }

  gradient (w: Float64Array): Gradient {
    const sum = new Float64Array(w.length)
    const loss = residuals(this.x, this.y, w, sum)
    return { sum, loss, samples: this.y.length }
  }

  /** The shard's sum of squared errors at `w`, without a gradient. */
  loss (w: Float64Array): { loss: number, samples: number } {
    return { loss: residuals(this.x, this.y, w), samples: this.y.length }
  }
}

/** What peers offer (`refmesh peer --module examples/parameter-server.ts`). */
export function register (mesh: Mesh): void {
  mesh.registerActor(PARAMETER_SERVER, ParameterServer)
  mesh.registerActor(DATA_SHARD, DataShard)
}
export default register

// ------------------------------------------------------------------ the driver

type Traffic = MeshStats['traffic']

export interface ParameterServerOptions extends Problem {
  /** k: worker actors, one shard each */
  workers: number
  iterations: number
  learningRate: number
  /** peers to place the actors on: the server on the first, the workers in turn; default: the mesh spreads them */
  peers?: string[]
  /** gives up when an iteration takes longer than this (default 30 s) */
  timeoutMs?: number
  signal?: AbortSignal
  onIteration?: (step: Step) => void
}

export interface ParameterServerResult {
  /** the loss before each update (losses[0]: at the initial zero weights) */
  losses: number[]
  /** the loss at the final weights */
  finalLoss: number
  weights: Float64Array
  elapsedMs: number
  /** where the server and each worker ran */
  server: string
  workers: string[]
  /** bytes each party counted from after the actors were made until the final weights were in */
  traffic: { driver: Traffic, peers: Record<string, Traffic> }
}

const minus = (a: Traffic, b: Traffic): Traffic => ({
  controlIn: a.controlIn - b.controlIn,
  controlOut: a.controlOut - b.controlOut,
  chunkIn: a.chunkIn - b.chunkIn,
  chunkOut: a.chunkOut - b.chunkOut
})

/** Runs `iterations` synchronous updates; every Ref and actor it makes is released before it returns or throws. */
export async function runParameterServer (mesh: Mesh, options: ParameterServerOptions): Promise<ParameterServerResult> {
  const { workers: k, iterations, learningRate } = options
  for (const [name, v, min] of [['workers', k, 1], ['iterations', iterations, 1], ['samples', options.samples, k], ['features', options.features, 1]] as const) {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be a whole number >= ${min}, not ${v}`)
  }
  if (!(learningRate > 0)) throw new RangeError(`learningRate must be positive, not ${learningRate}`)
  const timeoutMs = options.timeoutMs ?? 30_000
  const get = async <T>(ref: Ref<T>): Promise<T> => await mesh.get(ref, { timeoutMs, signal: options.signal })
  const problem: Problem = { samples: options.samples, features: options.features, noise: options.noise, seed: options.seed }
  const placement = (i: number): { peer: string } | { spread: true } =>
    options.peers !== undefined ? { peer: options.peers[i % options.peers.length] } : { spread: true }
  const actors: Array<{ release: () => void }> = []
  const held = new Set<Ref>()
  const hold = <T extends Ref>(ref: T): T => { held.add(ref); return ref }
  const drop = (ref: Ref): void => { ref.release(); held.delete(ref) }
  try {
    const made = await Promise.allSettled([
      mesh.actor<ParameterServer>(PARAMETER_SERVER).options(placement(0)).create(problem.features, learningRate),
      ...Array.from({ length: k }, async (_, i) => {
        const { first, count } = shardOf(problem.samples, k, i)
        return await mesh.actor<DataShard>(DATA_SHARD).options(placement(i)).create(problem, first, count)
      })
    ])
    for (const m of made) if (m.status === 'fulfilled') actors.push(m.value)
    for (const m of made) if (m.status === 'rejected') throw m.reason
    const ps = (made[0] as PromiseFulfilledResult<ActorHandle<ParameterServer>>).value
    const shards = made.slice(1).map(m => (m as PromiseFulfilledResult<ActorHandle<DataShard>>).value)

    const hosts = [...new Set([ps.peer, ...shards.map(s => s.peer)])].filter(p => p !== mesh.peerId)
    const snapshot = async (): Promise<{ driver: Traffic, peers: Traffic[] }> => {
      const peers = await Promise.all(hosts.map(async p => (await mesh.peerStats(p, { timeoutMs, signal: options.signal })).traffic))
      return { driver: mesh.stats().traffic, peers }
    }
    const before = await snapshot()
    const started = performance.now()

    const losses: number[] = []
    for (let t = 0; t < iterations; t++) {
      const w = hold(ps.weights.remote())
      const grads = shards.map(s => hold(s.gradient.remote(w)))
      const step = hold(ps.apply.remote(...grads))
      const result = await get(step)
      losses.push(result.loss)
      options.onIteration?.(result)
      for (const ref of [w, ...grads, step]) drop(ref)
    }
    const w = hold(ps.weights.remote())
    const parts = shards.map(s => hold(s.loss.remote(w)))
    const weights = await get(w)
    const finals = await Promise.all(parts.map(get))
    const finalLoss = finals.reduce((a, f) => a + f.loss, 0) / finals.reduce((a, f) => a + f.samples, 0)
    const elapsedMs = performance.now() - started
    const after = await snapshot()

    return {
      losses,
      finalLoss,
      weights,
      elapsedMs,
      server: ps.peer,
      workers: shards.map(s => s.peer),
      traffic: {
        driver: minus(after.driver, before.driver),
        peers: Object.fromEntries(hosts.map((p, i) => [p, minus(after.peers[i], before.peers[i])]))
      }
    }
  } finally {
    for (const ref of held) ref.release()
    for (const a of actors) a.release()
  }
}

// ------------------------------------------------- npm run examples:parameter-server

const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`
const mib = (n: number): string => `${(n / 2 ** 20).toFixed(2)} MiB`
const size = (n: number): string => n >= 2 ** 20 ? mib(n) : n >= 1024 ? kib(n) : `${n} B`
const short = (peer: string): string => '…' + peer.slice(-6)

/** The lines the npm script prints about a run; `optimum` from solveLeastSquares. */
export function report (result: ParameterServerResult, options: ParameterServerOptions, optimum: number, driver: string): string {
  const lines: string[] = []
  const n = result.losses.length
  const gap = (loss: number): string => `${(100 * (loss / optimum - 1)).toFixed(3)}% above`
  lines.push(`${n} synchronous updates in ${(result.elapsedMs / 1000).toFixed(2)} s (${(result.elapsedMs / n).toFixed(1)} ms each): ${options.workers} workers, ${options.samples.toLocaleString('en-US')} samples x ${options.features} features, learning rate ${options.learningRate}`)
  lines.push(`  parameter server on ${short(result.server)}; workers on ${result.workers.map(short).join(', ')}`)
  lines.push(`  loss (mean squared error): ${result.losses[0].toFixed(4)} at the start, ${result.finalLoss.toFixed(6)} at the end; least-squares optimum ${optimum.toFixed(6)} (${gap(result.finalLoss)})`)
  const firstWithin = result.losses.findIndex(l => l <= optimum * 1.01)
  if (firstWithin >= 0) lines.push(`  within 1% of the optimum after ${firstWithin} updates`)
  const d = result.traffic.driver
  const weightsBytes = options.features * 8
  lines.push('')
  lines.push(`bytes moved (weights and each gradient: ${size(weightsBytes)}; the ${mib(options.samples * (options.features + 1) * 8)} of data never moved):`)
  lines.push(`  driver ${short(driver)}: ${size(d.controlOut)} out, ${size(d.controlIn)} in, ${size(d.chunkIn + d.chunkOut)} of chunks; ${size((d.controlOut + d.controlIn) / (n + 1))} per update:`)
  lines.push(`    calls, replies, and the weights and gradients, which come back inline (under 64 KiB) and which it hands on as their owner`)
  for (const [peer, t] of Object.entries(result.traffic.peers)) {
    const role = [peer === result.server ? 'server' : '', result.workers.includes(peer) ? `${result.workers.filter(w => w === peer).length} worker(s)` : ''].filter(s => s !== '').join(' + ')
    lines.push(`  peer   ${short(peer)} (${role}): ${size(t.controlIn + t.chunkIn)} in, ${size(t.controlOut + t.chunkOut)} out`)
  }
  return lines.join('\n')
}

async function main (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      peers: { type: 'string', default: '3' },
      workers: { type: 'string', default: '4' },
      samples: { type: 'string', default: '20000' },
      features: { type: 'string', default: '100' },
      noise: { type: 'string', default: '1' },
      iterations: { type: 'string', default: '50' },
      'learning-rate': { type: 'string', default: '0.7' },
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
  const positive = (name: string, v: string): number => {
    const n = Number(v)
    if (!(n > 0) || !Number.isFinite(n)) throw new RangeError(`--${name} must be a positive number, not "${v}"`)
    return n
  }
  const peerCount = whole('peers', values.peers)
  const options: ParameterServerOptions = {
    workers: whole('workers', values.workers),
    samples: whole('samples', values.samples),
    features: whole('features', values.features),
    noise: positive('noise', values.noise),
    iterations: whole('iterations', values.iterations),
    learningRate: positive('learning-rate', values['learning-rate']),
    seed: whole('seed', values.seed, 0)
  }
  const interrupt = new AbortController()
  process.once('SIGINT', () => interrupt.abort(new Error('interrupted')))
  const module = fileURLToPath(import.meta.url)
  process.stdout.write(`starting ${peerCount} peer processes (refmesh peer --module examples/parameter-server.ts)...\n`)
  const peers = await spawnPeers(peerCount, { module })
  let driver: Mesh | undefined
  try {
    driver = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(driver, peers)
    options.peers = peers.map(p => p.peer)
    options.signal = interrupt.signal
    options.onIteration = s => {
      if (s.step === 1 || s.step % 10 === 0 || s.step === options.iterations) process.stdout.write(`  update ${String(s.step).padStart(3)}: loss ${s.loss.toFixed(6)}\n`)
    }
    const result = await runParameterServer(driver, options)
    const solved = performance.now()
    const optimum = solveLeastSquares(options).loss
    process.stdout.write(`\n${report(result, options, optimum, driver.peerId)}\n  (the optimum took ${((performance.now() - solved) / 1000).toFixed(2)} s in this process, by the normal equations)\n`)
  } finally {
    await driver?.stop()
    await stopAll(peers)
  }
}

if (import.meta.main) {
  await main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`parameter-server: ${err.message}\n`)
    process.exitCode = 1
  })
}
