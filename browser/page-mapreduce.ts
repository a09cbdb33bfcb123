/**
 * The MapReduce word count of examples/mapreduce.ts run from the page, with
 * this tab as one of the peers: the tab offers map and reduce like any peer
 * (registered when it joins), drives the run, and checks the answer against a
 * count made in a Web Worker, off the thread the tab's peer runs on (a count
 * of a large corpus takes seconds, and a tab that stops answering for that long
 * looks dead to the others).
 */
import type { Mesh } from '../core/mesh.ts'
import type { CallOptions, RemoteFunction } from '../core/mesh.ts'
import type { AnyFunction } from '../core/executor.ts'
import { runMapReduce } from '../examples/mapreduce.ts'
import type { MapReduceOptions, MapReduceResult, Stage, WordCount } from '../examples/mapreduce.ts'

export const PAGE_MAPREDUCE_DEFAULTS = {
  maps: 12,
  reduces: 4,
  shardBytes: 1024 * 1024,
  seed: 2026,
  /** the check's worker: a count of a 1 GiB corpus takes about a minute */
  checkTimeoutMs: 300_000
} as const

export interface PageRunOptions extends Partial<Pick<MapReduceOptions, 'maps' | 'reduces' | 'shardBytes' | 'seed' | 'timeoutMs'>> {
  /** ignore where the data is: place the calls on the peers offering them in turn */
  spread?: boolean
  signal?: AbortSignal
  onProgress?: (stage: Stage, done: number, total: number) => void
}

export interface PageRunResult extends MapReduceResult {
  options: Required<Pick<MapReduceOptions, 'maps' | 'reduces' | 'shardBytes' | 'seed'>>
  /** the count made in a Web Worker of this tab */
  expected: WordCount
  /** every word's count equals the worker's (top 10, totals and the digest of the whole table) */
  matches: boolean
  checkMs: number
  /** map calls this tab placed on each peer (this tab's own id included) */
  mapsPlaced: Record<string, number>
}

/** Live peers offering `fn`, this one included, in a stable order: those the scheduler would consider. */
function offering (mesh: Mesh, fn: string): string[] {
  const others = mesh.peers().filter(p => p.liveness === 'alive' && p.functions.includes(fn)).map(p => p.peer)
  return (mesh.stats().functions.includes(fn) ? [mesh.peerId, ...others] : others).sort()
}

/**
 * A mesh whose fn() places calls on the peers offering the function in turn.
 * runMapReduce places its calls with `mesh.fn(name)`, so this is how the page
 * spreads them until MapReduceOptions takes a placement of its own.
 *
 * Not the scheduler's `spread` (least loaded first): calls shorter than the
 * gap between two submissions finish before the next one, so every peer looks
 * idle each time (this tab's own most of all, as it runs a call at once) and
 * a peer may get none. The turn order is taken at the first call of each
 * function, so a peer that looks suspect for a moment keeps its turns. Each
 * call goes to its peer by `prefer`: one that is gone is passed over, and a
 * call whose peer dies is placed again as usual.
 */
function inTurn (mesh: Mesh): Mesh {
  const turns = new Map<string, { peers: string[], next: number }>()
  // With `returns` in the options, mesh.fn gives a stub whose remote() returns n Refs: passed through as it is.
  const rotating = <F extends AnyFunction>(name: string, options: CallOptions): RemoteFunction<F> => ({
    remote: (...args: Parameters<RemoteFunction<F>['remote']>) => {
      let turn = turns.get(name)
      if (turn === undefined) turns.set(name, turn = { peers: offering(mesh, name), next: 0 })
      const prefer = options.peer === undefined && turn.peers.length > 0 ? { prefer: turn.peers[turn.next++ % turn.peers.length] } : {}
      return mesh.fn<F>(name, { ...options, ...prefer }).remote(...args)
    },
    options: (more: CallOptions) => rotating<F>(name, { ...options, ...more })
  }) as unknown as RemoteFunction<F>
  return new Proxy(mesh, {
    get (target, key) {
      if (key === 'fn') return (name: string, options: CallOptions = {}) => rotating(name, options)
      const value: unknown = Reflect.get(target, key, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    }
  })
}

function minus (after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [peer, n] of Object.entries(after)) if (n - (before[peer] ?? 0) > 0) out[peer] = n - (before[peer] ?? 0)
  return out
}

/** The same word count in a Web Worker of this tab. */
async function countInWorker (options: PageRunResult['options'], signal?: AbortSignal): Promise<WordCount> {
  const worker = new Worker(new URL('./wordcount-worker.ts', import.meta.url), { type: 'module', name: 'refmesh-wordcount' })
  const timeout = AbortSignal.timeout(PAGE_MAPREDUCE_DEFAULTS.checkTimeoutMs)
  const stop = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
  try {
    return await new Promise<WordCount>((resolve, reject) => {
      stop.addEventListener('abort', () => { reject(stop.reason) }, { once: true })
      worker.addEventListener('message', (event: MessageEvent<{ count?: WordCount, error?: string }>) => {
        if (event.data.count !== undefined) resolve(event.data.count)
        else reject(new Error(`the local count failed: ${event.data.error ?? 'no reason given'}`))
      })
      worker.addEventListener('error', event => { reject(new Error(`the local count's worker failed: ${event.message ?? 'it could not start'}`)) })
      worker.postMessage(options)
    })
  } finally {
    worker.terminate()
  }
}

/** Runs the word count on the mesh from this tab, then checks it against a local count. */
export async function runPageMapReduce (mesh: Mesh, options: PageRunOptions = {}): Promise<PageRunResult> {
  const o = {
    maps: options.maps ?? PAGE_MAPREDUCE_DEFAULTS.maps,
    reduces: options.reduces ?? PAGE_MAPREDUCE_DEFAULTS.reduces,
    shardBytes: options.shardBytes ?? PAGE_MAPREDUCE_DEFAULTS.shardBytes,
    seed: options.seed ?? PAGE_MAPREDUCE_DEFAULTS.seed
  }
  const before = mesh.stats().placed
  let afterMaps: Record<string, number> | undefined
  const driver = options.spread === true ? inTurn(mesh) : mesh
  const result = await runMapReduce(driver, {
    ...o,
    timeoutMs: options.timeoutMs,
    signal: options.signal,
    onProgress: (stage, done, total) => {
      // Every map is placed (and done) once the last one is; the reduces are not placed
      // yet (they may be placed as soon as they are submitted, before the reduce stage reports).
      if (stage === 'map' && done === total) afterMaps ??= mesh.stats().placed
      options.onProgress?.(stage, done, total)
    }
  })
  const checkStarted = performance.now()
  const expected = await countInWorker(o, options.signal)
  const checkMs = performance.now() - checkStarted
  const matches = JSON.stringify(result.top) === JSON.stringify(expected.top) &&
    result.totalWords === expected.totalWords &&
    result.distinctWords === expected.distinctWords &&
    result.digest === expected.digest
  return { ...result, options: o, expected, matches, checkMs, mapsPlaced: minus(afterMaps ?? before, before) }
}
