/**
 * Word count as MapReduce, the shape of the Ray paper's Figure 3a: m map calls
 * and r reduce calls that take the map outputs by Ref.
 *
 *   driver:  shard_i = put(text_i)                                m objects of 1-4 MiB (chunked)
 *            [p_i0, ..., p_i(r-1), words_i]
 *                    = map.options({ returns: r + 1 }).remote(shard_i, r)
 *            red_j   = reduce.remote(j, p_0j, ..., p_(m-1)j)
 *
 * Each map returns its r partitions (and its word count) as separate return
 * values, Ray's `num_returns`: the call gives the driver r + 1 Refs at once,
 * each an object of its own, owned by the driver, and reduce j gets partition j
 * of every map as top-level Ref arguments, which the mesh dereferences for it.
 * Reduce j pulls only partition j of each map, never a whole map output.
 *
 * Because the driver owns the partitions, the mesh can make them again: when
 * every copy of a partition is lost (the peer that made it and held it died),
 * the owner runs its map again, once for all of that map's lost partitions
 * (lineage). The driver has no recovery code of its own. A map's lineage needs
 * its shard, so the driver keeps every shard until the last reduce is done
 * (the mesh does not keep arguments alive for lineage).
 *
 * Where the partitions live depends on their size, as in Ray: a partition of
 * this corpus is a few KiB, under the 64 KiB inline threshold, so it travels
 * in the map's reply and lives on the driver (reducers fetch it from there,
 * and nothing is lost when a mapper dies after its reply); larger ones stay on
 * the mapper until a reducer pulls them, and are what lineage rebuilds. The
 * earlier version put the partitions inside the map call, owned by the mapper,
 * so they died with it and the driver ran maps again by hand.
 *
 * Peers offer the functions with `refmesh peer --module examples/mapreduce.ts`.
 */
import type { Mesh, Ref } from '../core/index.ts'
import { TimeoutError } from '../core/errors.ts'

/** word -> occurrences */
export type Counts = Record<string, number>

/** Partition `j` (of `r`) of one map's output: the counts of the words w with partitionOf(w, r) === j. */
export interface Partition {
  j: number
  r: number
  counts: Counts
}

/** What a map call returns, as `returns: r + 1` values: partition j is item j, the shard's word count is the last. */
export type MapOutput = Array<Partition | number>

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
  /**
   * times a map or reduce runs again elsewhere when its peer dies under it (Ray's
   * `max_retries`; the mesh's default, 3, when unset): raise it where peers come and go often
   */
  retries?: number
  signal?: AbortSignal
  /** called as calls complete: (stage, done, total), starting with done = 0 */
  onProgress?: (stage: Stage, done: number, total: number) => void
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
  // Called with returns: r + 1, so each partition becomes an object of its own, owned by the caller.
  mesh.register(MAP, (shard: string | Uint8Array, r: number): MapOutput => {
    const { parts, words } = mapShard(shard, r)
    return [...parts, words]
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
 * afterwards no store in the mesh holds anything of this run. Peers that die
 * meanwhile cost it nothing but time: calls in flight on them are placed again,
 * and partitions lost with them are made again by lineage.
 */
export async function runMapReduce (mesh: Mesh, options: MapReduceOptions): Promise<MapReduceResult> {
  checkOptions(options)
  const { maps: m, reduces: r } = options
  const started = performance.now()
  const retries = options.retries === undefined ? {} : { retries: options.retries }
  const map = mesh.fn<(shard: Uint8Array, r: number) => MapOutput>(MAP).options({ returns: r + 1, ...retries })
  const reduce = mesh.fn<(j: number, ...parts: Partition[]) => Counts>(REDUCE).options(retries)
  const held = new Set<Ref>()
  const hold = <T extends Ref>(ref: T): T => { held.add(ref); return ref }
  const drop = (ref: Ref): void => { ref.release(); held.delete(ref) }
  const stopSubmitting = new AbortController()
  let submitting: Promise<void> = Promise.resolve()
  try {
    // Map: the driver makes the corpus shard by shard; each shard becomes an
    // object it owns (put) and a map call, which goes out while the next shard
    // is made. Shards are kept until the end: lineage reruns a map from its shard.
    let corpusBytes = 0
    /** the word count of each map, ready when its map is done (all r + 1 results come in one reply) */
    const mapped = new Submitted()
    /** partsOf[i]: the r partition Refs of map i, owned by this driver */
    const partsOf: Array<Array<Ref<Partition>>> = []
    submitting = (async () => {
      try {
        for (const text of generateCorpus(m, options.shardBytes, options.seed)) {
          if (stopSubmitting.signal.aborted || options.signal?.aborted === true) return
          corpusBytes += text.byteLength
          const shard = hold(mesh.put(text))
          const out = map.remote(shard, r).map(hold)
          partsOf.push(out.slice(0, r) as Array<Ref<Partition>>)
          mapped.push(out[r])
          await new Promise(resolve => setTimeout(resolve, 0)) // let the call go out, and see an abort
        }
      } finally {
        mapped.close()
      }
    })()
    let totalWords = 0
    await waitEach(mesh, mapped, m, 'map', options, async ref => {
      totalWords += await mesh.get(ref as Ref<number>, { signal: options.signal })
      drop(ref)
    })
    await submitting
    options.signal?.throwIfAborted()
    const mapMs = performance.now() - started

    // Reduce j: partition j of every map, as Ref arguments. Each partition is
    // dropped when its reduce is done, and freed (here, and wherever it was).
    const reduceOf = new Map<Ref, number>()
    const reduced = Submitted.of(Array.from({ length: r }, (_, j) => {
      const red = hold(reduce.remote(j, ...partsOf.map(p => p[j])))
      reduceOf.set(red, j)
      return red
    }))
    const counts = new Map<string, number>()
    let reducedWords = 0
    await waitEach(mesh, reduced, r, 'reduce', options, async ref => {
      const part = await mesh.get(ref as Ref<Counts>, { signal: options.signal })
      drop(ref)
      for (const p of partsOf) drop(p[reduceOf.get(ref) as number])
      for (const [w, n] of Object.entries(part)) {
        if (counts.has(w)) throw new Error(`word "${w}" came out of two reduces`)
        counts.set(w, n)
        reducedWords += n
      }
    })
    if (reducedWords !== totalWords) throw new Error(`the reduces counted ${reducedWords} words, the maps ${totalWords}`)
    const reduceMs = performance.now() - started
    return { ...summarize(counts, totalWords), elapsedMs: performance.now() - started, mapMs, reduceMs, corpusBytes }
  } finally {
    // Stop making calls, then drop every handle still held (also on failure).
    stopSubmitting.abort()
    await submitting.catch(() => {})
    for (const ref of held) ref.release()
  }
}
