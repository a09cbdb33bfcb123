/**
 * Word count as MapReduce, the shape of the Ray paper's Figure 3a: m map calls
 * and r reduce calls that take the map outputs by Ref.
 *
 * Each map call puts its r partitions into the mesh itself and returns the r
 * Refs. The partitions stay on the mapper's peer (it owns them) until reduce j
 * is called with partition j of every map as Ref arguments: only then are those
 * bytes pulled, straight from mapper to reducer, never through the driver.
 *
 * Peers offer the functions with `refmesh peer --module examples/mapreduce.ts`.
 */
import type { Mesh, Ref } from '../core/index.ts'

export type Counts = Record<string, number>
export interface MapOutput { parts: Array<Ref<Counts>>, words: number }

export interface MapReduceOptions {
  maps: number
  reduces: number
  shardBytes: number
  seed: number
  timeoutMs?: number
  onProgress?: (stage: 'map' | 'reduce', done: number, total: number) => void
}

export interface MapReduceResult {
  top: Array<[string, number]>
  totalWords: number
  distinctWords: number
  elapsedMs: number
}

export const MAP = 'mapreduce.map'
export const REDUCE = 'mapreduce.reduce'

// ------------------------------------------------------------- the corpus

function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'xe', 'zu', 'bra', 'din', 'fel', 'gor', 'hap', 'jum']

function vocabulary (size: number, random: () => number): string[] {
  const words = new Set<string>()
  while (words.size < size) {
    const n = 1 + Math.floor(random() * 3)
    let w = ''
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(random() * SYLLABLES.length)]
    words.add(w)
  }
  return [...words]
}

/** `count` text shards of about `shardBytes` each; word k of the vocabulary is drawn with weight 1/(k+1) (Zipf). */
export function generateCorpus (count: number, shardBytes: number, seed: number): Uint8Array[] {
  const random = prng(seed)
  const vocab = vocabulary(2_000, random)
  const cumulative = new Float64Array(vocab.length)
  let total = 0
  for (let k = 0; k < vocab.length; k++) cumulative[k] = total += 1 / (k + 1)
  const encoder = new TextEncoder()
  return Array.from({ length: count }, () => {
    const words: string[] = []
    let length = 0
    while (length < shardBytes) {
      const x = random() * total
      let lo = 0
      let hi = vocab.length - 1
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (cumulative[mid] < x) lo = mid + 1
        else hi = mid
      }
      words.push(vocab[lo])
      length += vocab[lo].length + 1
    }
    return encoder.encode(words.join(' '))
  })
}

// ------------------------------------------------------------- map and reduce

function partitionOf (word: string, reduces: number): number {
  let h = 2166136261
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 16777619)
  return (h >>> 0) % reduces
}

export function countWords (shard: Uint8Array, reduces: number): { parts: Counts[], words: number } {
  const parts: Counts[] = Array.from({ length: reduces }, () => ({}))
  let words = 0
  for (const word of new TextDecoder().decode(shard).split(' ')) {
    if (word.length === 0) continue
    const part = parts[partitionOf(word, reduces)]
    part[word] = (part[word] ?? 0) + 1
    words++
  }
  return { parts, words }
}

export function mergeCounts (parts: Counts[]): Counts {
  const out: Counts = {}
  for (const part of parts) for (const [w, n] of Object.entries(part)) out[w] = (out[w] ?? 0) + n
  return out
}

/** Registers map and reduce on a peer. */
export default function register (mesh: Mesh): void {
  mesh.register(MAP, (shard: Uint8Array, reduces: number): MapOutput => {
    const { parts, words } = countWords(shard, reduces)
    return { parts: parts.map(p => mesh.put(p)), words }
  })
  mesh.register(REDUCE, (...parts: Counts[]): Counts => mergeCounts(parts))
}

// ------------------------------------------------------------- the driver

function topWords (counts: Counts, n: number): Array<[string, number]> {
  return Object.entries(counts).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, n)
}

/** Waits for every Ref, reporting each as it completes (the async wait loop). */
async function waitAll (mesh: Mesh, refs: Ref[], stage: 'map' | 'reduce', options: MapReduceOptions): Promise<void> {
  let pending = refs
  options.onProgress?.(stage, 0, refs.length)
  while (pending.length > 0) {
    const next = await mesh.wait(pending, { count: 1, timeoutMs: options.timeoutMs ?? 120_000 })
    if (next.ready.length === 0) throw new Error(`${stage} calls made no progress within the timeout`)
    pending = next.pending
    options.onProgress?.(stage, refs.length - pending.length, refs.length)
  }
}

export async function runMapReduce (mesh: Mesh, options: MapReduceOptions): Promise<MapReduceResult> {
  const started = performance.now()
  const shards = generateCorpus(options.maps, options.shardBytes, options.seed).map(s => mesh.put(s))
  const map = mesh.fn<(shard: Uint8Array, reduces: number) => MapOutput>(MAP)
  const reduce = mesh.fn<(...parts: Counts[]) => Counts>(REDUCE)
  const mapped = shards.map(shard => map.remote(shard, options.reduces))
  const held: Ref[] = [...shards, ...mapped]
  try {
    await waitAll(mesh, mapped, 'map', options)
    const outputs = await Promise.all(mapped.map(async m => await mesh.get(m)))
    for (const o of outputs) held.push(...o.parts)
    const reduced = Array.from({ length: options.reduces }, (_, j) => reduce.remote(...outputs.map(o => o.parts[j])))
    held.push(...reduced)
    await waitAll(mesh, reduced, 'reduce', options)
    const counts = mergeCounts(await Promise.all(reduced.map(async r => await mesh.get(r))))
    const totalWords = outputs.reduce((n, o) => n + o.words, 0)
    return { top: topWords(counts, 10), totalWords, distinctWords: Object.keys(counts).length, elapsedMs: performance.now() - started }
  } finally {
    for (const r of held) r.release()
  }
}

/** The same word count in this process, to check the mesh's answer. */
export function wordCountLocal (options: Pick<MapReduceOptions, 'maps' | 'shardBytes' | 'seed'>): Omit<MapReduceResult, 'elapsedMs'> {
  const shards = generateCorpus(options.maps, options.shardBytes, options.seed)
  const counted = shards.map(s => countWords(s, 1))
  const counts = mergeCounts(counted.map(c => c.parts[0]))
  return { top: topWords(counts, 10), totalWords: counted.reduce((n, c) => n + c.words, 0), distinctWords: Object.keys(counts).length }
}
