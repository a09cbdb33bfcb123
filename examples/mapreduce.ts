/**
 * Word count as MapReduce, the shape of the Ray paper's Figure 3a: m map calls
 * and r reduce calls that take the map outputs by Ref.
 *
 *   driver:  shard_i = put(text_i)                      m objects of 1-4 MiB (chunked)
 *            out_i   = map.remote(shard_i, r)           -> { parts: [Ref<Partition> x r], words }
 *            red_j   = reduce.remote(j, out_0.parts[j], ..., out_{m-1}.parts[j])
 *
 * The design choice: each map puts its r partitions into the mesh itself and
 * returns their r Refs (nested Refs in a small result), and reduce j gets
 * partition j of every map as top-level Ref arguments, which the mesh
 * dereferences for it. This is Ray's `num_returns=r`, which refmesh has no
 * other way to express. We measured the alternative, "map returns one object
 * holding all r partitions, reduce j takes every map output by Ref and picks
 * partition j", and rejected it:
 *
 *   - Every reducer would pull every whole map output: r times the
 *     intermediate bytes, of which it throws (r-1)/r away.
 *   - A map output of this corpus is ~42 KiB, under the 64 KiB inline
 *     threshold, so it would travel inline in the call reply to the driver (its
 *     owner), and every reducer would then fetch it from the driver: all
 *     intermediate data would go through the driver, r times over. With nested
 *     Refs the partitions are owned and stored by the mapper that made them, and
 *     reducer j pulls partition j straight from each mapper. The driver sees
 *     only Ref descriptors and the final counts.
 *   Measured (3 peer processes, 12 maps x 2 MiB, 4 reduces; a whole map
 *   output is ~42 KiB): the driver's control traffic was 77 KiB with nested
 *   Refs and 2.5 MiB with whole outputs; the peers took in 0.35 vs 2 MiB of
 *   control messages.
 *
 * The price: the driver reads each map's small result as it completes, to
 * learn the partition Refs, before it can submit the reduces (with whole
 * outputs it could submit them at once). That costs nothing here: a reduce
 * needs every map anyway, and the mesh sends a call only once its Ref
 * arguments are ready. No partition is copied to the driver; it borrows them
 * until their reduce is done, then drops them, and their owners free them.
 *
 * Peers offer the functions with `refmesh peer --module examples/mapreduce.ts`.
 */
import type { Mesh, Ref, RemoteFunction } from '../core/index.ts'
import { TimeoutError } from '../core/errors.ts'

/** word -> occurrences */
export type Counts = Record<string, number>

/** Partition `j` (of `r`) of one map's output: the counts of the words w with partitionOf(w, r) === j. */
export interface Partition {
  j: number
  r: number
  counts: Counts
}

/** What a map call returns: small, whatever the shard size. */
export interface MapOutput {
  /** partition j is parts[j]; each is owned and stored by the peer that ran the map */
  parts: Array<Ref<Partition>>
  words: number
}

export type Stage = 'map' | 'reduce'

export interface MapReduceOptions {
  /** map calls (= text shards) */
  maps: number
  /** reduce calls (= partitions of the key space) */
  reduces: number
  /** bytes of text per shard */
  shardBytes: number
  /** corpus seed: the same seed gives the same corpus */
  seed: number
  /** gives up when no call completes for this long (default 120 s) */
  timeoutMs?: number
  signal?: AbortSignal
  /** called as calls complete: (stage, done, total), starting with done = 0 */
  onProgress?: (stage: Stage, done: number, total: number) => void
  /** maps run again because the peer holding their partitions died (default at most 32) */
  maxMapReruns?: number
}

export interface WordCount {
  /** the 10 most frequent words, most frequent first (ties: alphabetical) */
  top: Array<[string, number]>
  totalWords: number
  distinctWords: number
  /** a digest of the whole table (every word and its count), to compare results beyond the top 10 */
  digest: string
}

export interface MapReduceResult extends WordCount {
  elapsedMs: number
  /** when the last map and the last reduce completed, from the start */
  mapMs: number
  reduceMs: number
  /** bytes of text in the corpus */
  corpusBytes: number
}

export const MAP = 'mapreduce.map'
export const REDUCE = 'mapreduce.reduce'

// ------------------------------------------------------------------ the corpus

/** mulberry32: a small, fast, seeded PRNG (uniform in [0, 1)). */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

/** An independent seed per (corpus seed, stream) pair, so every shard can be made on its own. */
function mixSeed (seed: number, stream: number): number {
  let h = Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(stream + 1, 0xc2b2ae35)
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d)
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b)
  return (h ^ (h >>> 16)) >>> 0
}

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'xe', 'zu', 'bra', 'din', 'fel', 'gor', 'hap', 'jum', 'qua', 'wen', 'yor', 'pli']

export const VOCABULARY_SIZE = 4000
/** the Zipf exponent: word k (from 0) has weight 1 / (k + 1)^s */
const ZIPF_S = 1.05

interface Vocabulary {
  words: string[]
  bytes: Uint8Array[]
  /** cumulative Zipf weights, for inverse-CDF sampling */
  cumulative: Float64Array
}

const vocabularies = new Map<number, Vocabulary>()

/** The corpus's vocabulary (deterministic in the seed): made-up words of 1-4 syllables, ranked at random. */
export function vocabulary (seed: number): Vocabulary {
  let v = vocabularies.get(seed)
  if (v !== undefined) return v
  const random = prng(mixSeed(seed, -1))
  const set = new Set<string>()
  while (set.size < VOCABULARY_SIZE) {
    const n = 1 + Math.floor(random() * 4)
    let w = ''
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(random() * SYLLABLES.length)]
    set.add(w)
  }
  const words = [...set]
  const encoder = new TextEncoder()
  const cumulative = new Float64Array(words.length)
  let total = 0
  for (let k = 0; k < words.length; k++) cumulative[k] = total += 1 / (k + 1) ** ZIPF_S
  v = { words, bytes: words.map(w => encoder.encode(w)), cumulative }
  vocabularies.set(seed, v)
  return v
}

/**
 * Text shard `index` of the corpus `seed`: at most `shardBytes` bytes of ASCII
 * words drawn from the vocabulary with Zipf frequencies, separated by spaces,
 * in lines of 8-15 words. Deterministic in (seed, index, shardBytes).
 */
export function generateShard (index: number, shardBytes: number, seed: number): Uint8Array {
  const { bytes, cumulative } = vocabulary(seed)
  const random = prng(mixSeed(seed, index))
  const total = cumulative[cumulative.length - 1]
  const out = new Uint8Array(shardBytes)
  let pos = 0
  let lineLeft = 8 + Math.floor(random() * 8)
  for (;;) {
    // inverse CDF: the first k with cumulative[k] >= x
    const x = random() * total
    let lo = 0
    let hi = cumulative.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cumulative[mid] < x) lo = mid + 1
      else hi = mid
    }
    const word = bytes[lo]
    if (pos + word.length + 1 > shardBytes) break
    for (let i = 0; i < word.length; i++) out[pos++] = word[i]
    if (--lineLeft === 0) {
      out[pos++] = 10 // \n
      lineLeft = 8 + Math.floor(random() * 8)
    } else {
      out[pos++] = 32
    }
  }
  return out.subarray(0, pos)
}

/** The whole corpus, shard by shard (the driver makes and puts one at a time). */
export function * generateCorpus (maps: number, shardBytes: number, seed: number): Generator<Uint8Array> {
  for (let i = 0; i < maps; i++) yield generateShard(i, shardBytes, seed)
}

// ------------------------------------------------------------- map and reduce

/** Which reduce a word goes to: FNV-1a of the word, mod r. */
export function partitionOf (word: string, r: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619)
  return (h >>> 0) % r
}

const decoder = new TextDecoder()

/** Counts the words of a text (split on spaces, tabs and line ends). */
export function countWords (shard: string | Uint8Array): { counts: Map<string, number>, words: number } {
  // TextDecoder refuses views of shared memory (a tab with worker modules keeps objects there).
  const text = typeof shard === 'string' ? shard : decoder.decode(shard.buffer instanceof ArrayBuffer ? shard : shard.slice())
  const counts = new Map<string, number>()
  let words = 0
  let start = 0
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 32
    if (c === 32 || c === 10 || c === 9 || c === 13) {
      if (i > start) {
        const w = text.slice(start, i)
        counts.set(w, (counts.get(w) ?? 0) + 1)
        words++
      }
      start = i + 1
    }
  }
  return { counts, words }
}

/** The map step without the mesh: a shard's counts split into r partitions. */
export function mapShard (shard: string | Uint8Array, r: number): { parts: Partition[], words: number } {
  if (!Number.isInteger(r) || r < 1) throw new RangeError(`map: r must be a whole number >= 1, not ${r}`)
  const { counts, words } = countWords(shard)
  const split = Array.from({ length: r }, () => new Array<[string, number]>())
  for (const entry of counts) split[partitionOf(entry[0], r)].push(entry)
  // fromEntries defines own properties, so even a word like "__proto__" is just a word
  return { parts: split.map((entries, j) => ({ j, r, counts: Object.fromEntries(entries) })), words }
}

/** The reduce step without the mesh: merges partition j of every map output. */
export function reducePartitions (j: number, parts: Partition[]): Counts {
  const merged = new Map<string, number>()
  for (const [i, part] of parts.entries()) {
    // A wrong wiring in the driver would give a plausible but wrong count: fail loudly instead.
    if (part.j !== j) throw new Error(`reduce ${j}: argument ${i + 1} is partition ${part.j}, not ${j}`)
    for (const [w, n] of Object.entries(part.counts)) merged.set(w, (merged.get(w) ?? 0) + n)
  }
  return Object.fromEntries(merged)
}

/** Registers map and reduce on a peer (`refmesh peer --module examples/mapreduce.ts`). */
export default function register (mesh: Mesh): void {
  mesh.register(MAP, (shard: string | Uint8Array, r: number): MapOutput => {
    const { parts, words } = mapShard(shard, r)
    // This peer owns the partitions; the Refs in the result make the caller a borrower.
    return { parts: parts.map(p => mesh.put(p)), words }
  })
  mesh.register(REDUCE, (j: number, ...parts: Partition[]): Counts => reducePartitions(j, parts))
}

// ------------------------------------------------------------------ the result

function topWords (counts: Map<string, number>, n: number): Array<[string, number]> {
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).slice(0, n)
}

/** FNV-1a over the table sorted by word: equal digests mean equal tables (for our purposes). */
function digestOf (counts: Map<string, number>): string {
  let h = 0x811c9dc5
  for (const w of [...counts.keys()].sort()) {
    const s = `${w}:${counts.get(w)}\n`
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
  }
  return (h >>> 0).toString(16).padStart(8, '0')
}

function summarize (counts: Map<string, number>, totalWords: number): WordCount {
  return { top: topWords(counts, 10), totalWords, distinctWords: counts.size, digest: digestOf(counts) }
}

/** The same word count in this process, to check the mesh's answer. */
export function wordCountLocal (options: Pick<MapReduceOptions, 'maps' | 'shardBytes' | 'seed'>): WordCount {
  const counts = new Map<string, number>()
  let totalWords = 0
  for (const shard of generateCorpus(options.maps, options.shardBytes, options.seed)) {
    const c = countWords(shard)
    for (const [w, n] of c.counts) counts.set(w, (counts.get(w) ?? 0) + n)
    totalWords += c.words
  }
  return summarize(counts, totalWords)
}

// ------------------------------------------------------------------ the driver

/** An error that means an input is gone (its holder or owner died), so running its maker again helps. */
function lostData (err: unknown): boolean {
  const names = new Set(['OwnerDiedError', 'ObjectLostError', 'PeerDiedError'])
  const e = err as { name?: string, remoteName?: string }
  return names.has(e?.name ?? '') || names.has(e?.remoteName ?? '')
}

/**
 * Runs again every map whose partitions needed by the `failed` reduces are owned
 * by a peer that is no longer alive, and swaps in the new partitions. Returns how
 * many maps ran. A reduce can fail before the failure detector has a verdict on
 * the mapper, so this waits (bounded) until some owner is seen to be gone.
 */
async function rerunLostMaps (
  mesh: Mesh,
  partsOf: Array<Array<Ref<Partition>>>,
  failed: number[],
  ctx: MapReduceOptions & { hold: <T extends Ref>(ref: T) => T, drop: (ref: Ref) => void, reruns: number, reducedAlready: Set<number>, cause?: Error, map: RemoteFunction<(shard: Uint8Array, r: number) => MapOutput> }
): Promise<number> {
  const deadline = performance.now() + 30_000
  let lost: number[] = []
  while (lost.length === 0) {
    const alive = new Set([mesh.peerId, ...mesh.peers().filter(p => p.liveness === 'alive').map(p => p.peer)])
    lost = partsOf.flatMap((parts, i) => failed.some(j => !alive.has(parts[j].owner)) ? [i] : [])
    if (lost.length > 0) break
    if (performance.now() > deadline) throw new Error(`reduces ${failed.join(', ')} lost an input, but every mapper still looks alive`, { cause: ctx.cause })
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  if (ctx.reruns + lost.length > (ctx.maxMapReruns ?? 32)) throw new Error(`more than ${ctx.maxMapReruns ?? 32} maps had to run again; giving up`)
  const r = partsOf[0].length
  const again = lost.map(i => {
    const shard = ctx.hold(mesh.put(generateShard(i, ctx.shardBytes, ctx.seed)))
    return { i, shard, out: ctx.hold(ctx.map.remote(shard, r)) }
  })
  for (const { i, shard, out } of again) {
    const result = await mesh.get(out, { signal: ctx.signal, timeoutMs: ctx.timeoutMs ?? 120_000 })
    // Partitions of reduces already done are not needed again; the others are replaced.
    for (const p of partsOf[i]) ctx.drop(p)
    partsOf[i] = result.parts.map((p, j) => { if (ctx.reducedAlready.has(j)) { p.release(); return p } return ctx.hold(p) })
    ctx.drop(out)
    ctx.drop(shard)
  }
  return lost.length
}

function checkOptions (o: MapReduceOptions): void {
  const whole = (name: string, v: number, min: number): void => {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be a whole number >= ${min}, not ${v}`)
  }
  whole('maps', o.maps, 1)
  whole('reduces', o.reduces, 1)
  whole('shardBytes', o.shardBytes, 1)
  whole('seed', o.seed, 0)
}

/**
 * A list of Refs that may still grow while the wait loop runs: the driver
 * submits maps while it makes the corpus, and the loop takes in each new call.
 */
class Submitted {
  readonly refs: Ref[] = []
  closed = false
  private wake = new AbortController()
  /** aborts at the next push() or close(): the wait loop's cue to look again */
  get changed (): AbortSignal { return this.wake.signal }
  push (ref: Ref): void { this.refs.push(ref); this.poke() }
  close (): void { this.closed = true; this.poke() }
  private poke (): void {
    const wake = this.wake
    this.wake = new AbortController()
    wake.abort()
  }

  static of (refs: Ref[]): Submitted {
    const s = new Submitted()
    s.refs.push(...refs)
    s.closed = true
    return s
  }
}

/**
 * The async wait loop: `mesh.wait(pending, { count: 1 })` until none is left,
 * handing each completed Ref to `onReady` (in completion order) and reporting
 * progress. It also wakes when a new Ref is submitted.
 */
async function waitEach (mesh: Mesh, calls: Submitted, total: number, stage: Stage, options: MapReduceOptions, onReady: (ref: Ref) => Promise<void>): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 120_000
  const done = new Set<Ref>()
  options.onProgress?.(stage, 0, total)
  while (!calls.closed || done.size < calls.refs.length) {
    options.signal?.throwIfAborted()
    const changed = calls.changed
    const pending = calls.refs.filter(ref => !done.has(ref))
    const signal = options.signal === undefined ? changed : AbortSignal.any([changed, options.signal])
    if (pending.length === 0) {
      await new Promise(resolve => signal.addEventListener('abort', resolve, { once: true }))
    } else {
      const next = await mesh.wait(pending, { count: 1, timeoutMs, signal })
      if (next.ready.length === 0 && !changed.aborted) {
        options.signal?.throwIfAborted()
        throw new TimeoutError(`${stage}: no call completed within ${timeoutMs} ms (${pending.length} of ${total} still pending)`)
      }
      // get() throws the call's error (a RemoteError with the remote stack) for a failed call.
      for (const ref of next.ready) {
        await onReady(ref)
        done.add(ref)
      }
      if (next.ready.length > 0) options.onProgress?.(stage, done.size, total)
    }
  }
}

/**
 * Runs the word count on the mesh: puts m shards, m map calls, r reduce calls.
 * Every Ref it makes or receives is released before it returns (or throws), so
 * afterwards no store in the mesh holds anything of this run.
 */
export async function runMapReduce (mesh: Mesh, options: MapReduceOptions): Promise<MapReduceResult> {
  checkOptions(options)
  const { maps: m, reduces: r } = options
  const started = performance.now()
  const map = mesh.fn<(shard: Uint8Array, r: number) => MapOutput>(MAP)
  const reduce = mesh.fn<(j: number, ...parts: Partition[]) => Counts>(REDUCE)
  const held = new Set<Ref>()
  const hold = <T extends Ref>(ref: T): T => { held.add(ref); return ref }
  const drop = (ref: Ref): void => { ref.release(); held.delete(ref) }
  /** the Ref arguments of each call, dropped when it is done */
  const argsOf = new Map<Ref, Ref[]>()
  const stopSubmitting = new AbortController()
  let submitting: Promise<void> = Promise.resolve()
  /** aborted when a peer dies (a mapper, perhaps, whose partitions died with it) */
  let mapperDied = new AbortController()
  const stopWatching = mesh.onPeerDeath(() => { mapperDied.abort() })
  try {
    // Map: the driver makes the corpus shard by shard; each shard becomes an
    // object it owns (put) and a map call, which goes out while the next shard
    // is made. A shard is dropped when its map is done, so it is freed (here and
    // on the mapper) while other maps still run. (A call pins its Ref
    // arguments, so dropping the handle right after remote() ought to be
    // enough, but core re-encodes the arguments of a call whose Ref arguments
    // were still pending at submit, which fails for a released handle.)
    let corpusBytes = 0
    const mapped = new Submitted()
    submitting = (async () => {
      try {
        for (const text of generateCorpus(m, options.shardBytes, options.seed)) {
          if (stopSubmitting.signal.aborted || options.signal?.aborted === true) return
          corpusBytes += text.byteLength
          const shard = hold(mesh.put(text))
          const out = hold(map.remote(shard, r))
          argsOf.set(out, [shard])
          mapped.push(out)
          await new Promise(resolve => setTimeout(resolve, 0)) // let the call go out, and see an abort
        }
      } finally {
        mapped.close()
      }
    })()
    /** partsOf[i]: the r partition Refs of map i, owned by the peer that ran it */
    const partsOf: Array<Array<Ref<Partition>>> = []
    let totalWords = 0
    /** Map i again: its mapper died between finishing and our reading its output (whose partitions it owned). */
    const mapAgain = async (i: number): Promise<MapOutput> => {
      for (let attempt = 0; ; attempt++) {
        const shard = hold(mesh.put(generateShard(i, options.shardBytes, options.seed)))
        const again = hold(map.remote(shard, r))
        try {
          return await mesh.get(again, { signal: options.signal, timeoutMs: options.timeoutMs ?? 120_000 })
        } catch (err) {
          if (!lostData(err) || attempt >= 2) throw err
        } finally {
          drop(again)
          drop(shard)
        }
      }
    }
    await waitEach(mesh, mapped, m, 'map', options, async ref => {
      let out: MapOutput
      try {
        out = await mesh.get(ref as Ref<MapOutput>, { signal: options.signal })
      } catch (err) {
        if (!lostData(err)) throw err
        out = await mapAgain(mapped.refs.indexOf(ref))
      }
      for (const p of out.parts) hold(p)
      partsOf[mapped.refs.indexOf(ref)] = out.parts
      totalWords += out.words
      for (const arg of argsOf.get(ref) ?? []) drop(arg)
      drop(ref) // the partitions' Refs are ours now; the small result itself is not needed
    })
    await submitting
    options.signal?.throwIfAborted()
    const mapMs = performance.now() - started

    // Reduce j: partition j of every map, as Ref arguments pulled from the
    // mappers. Each partition is dropped when its reduce is done, and its
    // owner (the mapper) frees it.
    //
    // The partitions are put() by the mapper inside its call, so the mapper owns
    // them and the mesh cannot compute them again (lineage covers call results,
    // not values a call put): a mapper that dies takes them with it, and a reduce
    // that needs one fails with OwnerDiedError. The driver then runs those maps
    // again (the corpus is deterministic) and resubmits the failed reduces. Ray has
    // the same rule for objects put inside a task.
    const submitReduce = (j: number): Ref<Counts> => {
      const parts = partsOf.map(p => p[j])
      const red = hold(reduce.remote(j, ...parts))
      reduceOf.set(red, j)
      argsOf.set(red, parts)
      return red
    }
    const reduceOf = new Map<Ref, number>()
    let pending = Array.from({ length: r }, (_, j) => submitReduce(j))
    const counts = new Map<string, number>()
    let reducedWords = 0
    let reduceDone = 0
    let reruns = 0
    const reducedAlready = new Set<number>()
    let lastLoss: Error | undefined
    const timeoutMs = options.timeoutMs ?? 120_000
    options.onProgress?.('reduce', 0, r)
    while (pending.length > 0) {
      // A mapper's death ends the wait at once: its maps run again now, not after a reduce fails.
      const death = mapperDied
      const signal = options.signal === undefined ? death.signal : AbortSignal.any([death.signal, options.signal])
      const { ready } = await mesh.wait(pending, { count: 1, timeoutMs, signal })
      options.signal?.throwIfAborted()
      if (ready.length === 0 && !death.signal.aborted) throw new TimeoutError(`reduce: no call completed within ${timeoutMs} ms (${pending.length} of ${r} still pending)`)
      const failed: number[] = []
      const resubmit: number[] = []
      for (const ref of ready) {
        const j = reduceOf.get(ref) as number
        let part: Counts
        try {
          part = await mesh.get(ref as Ref<Counts>, { signal: options.signal })
        } catch (err) {
          if (!lostData(err)) throw err
          // Submitted before a rerun replaced its inputs: just submit it again.
          const stale = (argsOf.get(ref) ?? []).some((p, i) => p !== partsOf[i][j])
          if (stale) resubmit.push(j)
          else failed.push(j)
          lastLoss = err as Error
          continue
        } finally {
          drop(ref)
        }
        for (const p of partsOf) drop(p[j])
        reducedAlready.add(j)
        reduceDone++
        for (const [w, n] of Object.entries(part)) {
          if (counts.has(w)) throw new Error(`word "${w}" came out of two reduces`)
          counts.set(w, n)
          reducedWords += n
        }
      }
      pending = pending.filter(ref => !ready.includes(ref))
      if (failed.length > 0) reruns += await rerunLostMaps(mesh, partsOf, failed, { ...options, hold, drop, reruns, map, reducedAlready, cause: lastLoss })
      pending.push(...[...failed, ...resubmit].map(submitReduce))
      if (ready.length > failed.length + resubmit.length) options.onProgress?.('reduce', reduceDone, r)
      if (death.signal.aborted) {
        mapperDied = new AbortController()
        const alive = new Set([mesh.peerId, ...mesh.peers().filter(p => p.liveness === 'alive').map(p => p.peer)])
        const lost = Array.from({ length: r }, (_, j) => j).filter(j => !reducedAlready.has(j) && partsOf.some(p => !alive.has(p[j].owner)))
        if (lost.length > 0) {
          reruns += await rerunLostMaps(mesh, partsOf, lost, { ...options, hold, drop, reruns, map, reducedAlready })
          // Their reduces in flight took the lost partitions: submitted again with the new ones.
          const stale = pending.filter(ref => lost.includes(reduceOf.get(ref) as number))
          for (const ref of stale) drop(ref)
          pending = pending.filter(ref => !stale.includes(ref))
          pending.push(...stale.map(ref => submitReduce(reduceOf.get(ref) as number)))
        }
      }
    }
    if (reducedWords !== totalWords) throw new Error(`the reduces counted ${reducedWords} words, the maps ${totalWords}`)
    const reduceMs = performance.now() - started
    return { ...summarize(counts, totalWords), elapsedMs: performance.now() - started, mapMs, reduceMs, corpusBytes }
  } finally {
    // Stop making calls, then drop every handle still held (also on failure).
    stopWatching()
    stopSubmitting.abort()
    await submitting.catch(() => {})
    for (const ref of held) ref.release()
  }
}
