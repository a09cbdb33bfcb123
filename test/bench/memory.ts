/**
 * npm run bench:memory — memory pressure, each figure against its baseline in
 * the same run:
 *  - the 4x-capacity workload: three peer processes, each with a store of
 *    CAPACITY, make 4x that in 4 MiB objects and then read every one back (a
 *    checksum call placed where the object is). Peak RSS of each peer process
 *    (the kernel's VmHWM) vs capacity x 1.25 + that peer's settled idle RSS (after
 *    a full collection, the median of several samples); the worst peer is the one
 *    with the highest peak / bound. Wall time vs the same workload with room for
 *    everything in memory.
 *  - spill and restore throughput of a store (its file spill backend) vs plain
 *    fs writes and reads of the same bytes, at the same concurrency (the store
 *    issues its spill writes together, so the plain writes go together too; the
 *    store restores one object after another, so the plain reads do too). Neither
 *    side calls fsync: these are page-cache speeds. The disk's own rate (the same
 *    bytes written and fsynced) is printed beside them.
 * Ends with one `bench-result {json}` line.
 */
import { open, readFile, readdir, rm, writeFile, mkdtemp } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createMesh } from '../../node/index.ts'
import type { Mesh, Ref } from '../../node/index.ts'
import { spawnPeers, stopAll, waitForFullMesh } from '../../node/local-cluster.ts'
import { ObjectStore } from '../../core/store.ts'
import { FileSpill } from '../../node/spill.ts'
import { allocateUninitialized } from '../../node/memory.ts'

const FIXTURES = fileURLToPath(new URL('../fixtures/functions.ts', import.meta.url))
const MiB = 2 ** 20
const CAPACITY = 64 * MiB
const OBJECT = 4 * MiB
const PEERS = 3
const SPILL_OBJECTS = 32
const SPILL_OBJECT = 8 * MiB
const IDLE_SAMPLES = 5
const IDLE_SAMPLE_EVERY_MS = 200

function statusKiB (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find(l => l.startsWith(`${field}:`))
  if (line === undefined) throw new Error(`no ${field} for ${pid}`)
  return Number(line.split(/\s+/)[1]) * 1024
}

interface WorkloadResult { wallMs: number, peakRss: number[], idleRss: number[], spills: number, restores: number }

/** Every peer makes 4x CAPACITY of objects, then each is read back where it lives. */
async function workload (capacity: string, args: string[] = []): Promise<WorkloadResult> {
  const peers = await spawnPeers(PEERS, { module: FIXTURES, storeCapacity: capacity, args, env: process.env.BENCH_PEER_ENV !== undefined ? JSON.parse(process.env.BENCH_PEER_ENV) : {} })
  let mesh: Mesh | undefined
  try {
    mesh = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(mesh, peers)
    await new Promise(resolve => setTimeout(resolve, 1500))
    const idleRss = await settledIdleRss(mesh, peers)
    const make = mesh.fn<(n: number, seed: number) => Uint8Array>('make')
    const sum = mesh.fn<(x: Uint8Array) => { length: number }>('checksum')
    const perPeer = (4 * CAPACITY) / OBJECT
    const started = performance.now()
    const data: Array<Ref<Uint8Array>> = []
    for (let j = 0; j < perPeer; j++) for (const p of peers) data.push(make.options({ peer: p.peer }).remote(OBJECT, j))
    const made = await mesh.wait(data, { timeoutMs: 600_000 })
    if (made.pending.length > 0) throw new Error('workload: objects were not made')
    const sums = data.map(x => sum.remote(x))
    for (const s of sums) {
      const r = await mesh.get(s, { timeoutMs: 600_000 })
      if (r.length !== OBJECT) throw new Error('workload: wrong length')
      s.release()
    }
    const wallMs = performance.now() - started
    const stats = await Promise.all(peers.map(async p => await (mesh as Mesh).peerStats(p.peer)))
    const peakRss = peers.map(p => statusKiB(p.child.pid as number, 'VmHWM'))
    for (const x of data) x.release()
    return {
      wallMs,
      peakRss,
      idleRss,
      spills: stats.reduce((n, s) => n + s.store.spills, 0),
      restores: stats.reduce((n, s) => n + s.store.restores, 0)
    }
  } finally {
    await mesh?.stop()
    await stopAll(peers)
  }
}

/** Each peer's RSS once idle: after a full collection in it, the median of IDLE_SAMPLES readings. */
async function settledIdleRss (mesh: Mesh, peers: Array<{ peer: string, child: { pid?: number } }>): Promise<number[]> {
  const collect = mesh.fn<() => boolean>('collectGarbage')
  await Promise.all(peers.map(async p => { using r = collect.options({ peer: p.peer }).remote(); await mesh.get(r, { timeoutMs: 30_000 }) }))
  const samples: number[][] = peers.map(() => [])
  for (let i = 0; i < IDLE_SAMPLES; i++) {
    peers.forEach((p, j) => samples[j].push(statusKiB(p.child.pid as number, 'VmRSS')))
    await new Promise(resolve => setTimeout(resolve, IDLE_SAMPLE_EVERY_MS))
  }
  return samples.map(s => s.sort((a, b) => a - b)[Math.floor(s.length / 2)])
}

async function until (check: () => boolean): Promise<void> {
  while (!check()) await new Promise(resolve => setImmediate(resolve))
}

/** One round: a store spills and restores SPILL_OBJECTS through its file backend; plain fs writes and reads the same bytes. */
async function throughputRound (dir: string, buffers: Uint8Array[], storeFirst: boolean): Promise<{ spillMs: number, restoreMs: number, fsWriteMs: number, fsReadMs: number }> {
  const keys = buffers.map((_, i) => i.toString(16).padStart(8, '0'))
  const viaStore = async (): Promise<{ spillMs: number, restoreMs: number }> => {
    // A spill mark of 0: every object put is spilled as soon as it is in, all writes in flight together.
    const spill = await FileSpill.open(join(dir, 'spill'))
    const store = new ObjectStore({ capacity: buffers.length * SPILL_OBJECT + MiB, spill, spillFraction: 0, allocate: allocateUninitialized })
    let t0 = performance.now()
    for (let i = 0; i < buffers.length; i++) {
      await store.reserve(SPILL_OBJECT, keys[i])
      store.putComplete(keys[i], new Uint8Array([i]), 'me', { size: SPILL_OBJECT, chunkSize: MiB, hashes: [], encoding: 0 }, buffers[i], true)
    }
    await until(() => store.stats().spills === buffers.length && store.used === 0)
    const spillMs = performance.now() - t0
    t0 = performance.now()
    for (const key of keys) {
      const held = await store.read(key, key)
      if (held === undefined || held.bytes.byteLength !== SPILL_OBJECT) throw new Error(`restore of ${key} failed`)
      held.release()
    }
    const restoreMs = performance.now() - t0
    if (store.stats().restores !== buffers.length) throw new Error('not every object was restored from disk')
    await spill.close()
    return { spillMs, restoreMs }
  }
  const viaFs = async (): Promise<{ fsWriteMs: number, fsReadMs: number }> => {
    const plainDir = join(dir, 'plain')
    const plain = await FileSpill.open(plainDir)
    let t0 = performance.now()
    // As many writes in flight as the store has: all of them.
    await Promise.all(buffers.map(async (b, i) => { await writeFile(join(plainDir, keys[i]), b) }))
    const fsWriteMs = performance.now() - t0
    if ((await readdir(plainDir)).length !== buffers.length) throw new Error('plain writes missing')
    t0 = performance.now()
    for (const key of keys) {
      const b = await readFile(join(plainDir, key))
      if (b.byteLength !== SPILL_OBJECT) throw new Error('plain read short')
    }
    const fsReadMs = performance.now() - t0
    await plain.close()
    return { fsWriteMs, fsReadMs }
  }
  if (storeFirst) {
    const a = await viaStore()
    return { ...a, ...await viaFs() }
  }
  const b = await viaFs()
  return { ...await viaStore(), ...b }
}

/** The disk's own write rate: the same bytes written one file after another, each fsynced. */
async function diskWrite (dir: string, buffers: Uint8Array[]): Promise<number> {
  const t0 = performance.now()
  for (let i = 0; i < buffers.length; i++) {
    const file = await open(join(dir, `synced-${i}`), 'w')
    try {
      await file.writeFile(buffers[i])
      await file.sync()
    } finally {
      await file.close()
    }
  }
  const ms = performance.now() - t0
  for (let i = 0; i < buffers.length; i++) await rm(join(dir, `synced-${i}`))
  return (buffers.length * SPILL_OBJECT) / (ms / 1000)
}

/** Bytes per second a store spills and restores vs plain fs: the median of interleaved rounds. */
async function throughput (): Promise<{ spillWrite: number, restoreRead: number, fsWrite: number, fsRead: number, diskWrite: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-bench-'))
  try {
    const buffers = Array.from({ length: SPILL_OBJECTS }, (_, i) => new Uint8Array(SPILL_OBJECT).fill(i))
    const rounds: Array<Awaited<ReturnType<typeof throughputRound>>> = []
    // The side that goes first alternates: the first writer meets a page cache the other has not filled.
    for (let r = 0; r < 5; r++) rounds.push(await throughputRound(dir, buffers, r % 2 === 0))
    const median = (k: keyof Awaited<ReturnType<typeof throughputRound>>): number => rounds.map(x => x[k]).sort((a, b) => a - b)[Math.floor(rounds.length / 2)]
    const rate = (ms: number): number => (SPILL_OBJECTS * SPILL_OBJECT) / (ms / 1000)
    return { spillWrite: rate(median('spillMs')), restoreRead: rate(median('restoreMs')), fsWrite: rate(median('fsWriteMs')), fsRead: rate(median('fsReadMs')), diskWrite: await diskWrite(dir, buffers) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const limited = await workload(`${CAPACITY}`)
const unlimited = await workload(`${8 * CAPACITY}`)
// The same limited workload with call admission off: what admission saves.
const unadmitted = await workload(`${CAPACITY}`, ['--no-admission'])
const io = await throughput()
const bounds = limited.idleRss.map(idle => CAPACITY * 1.25 + idle)
const rssRatios = limited.peakRss.map((peak, i) => peak / bounds[i])
const worst = rssRatios.indexOf(Math.max(...rssRatios))
const rssLimit = bounds[worst]
const figures = {
  capacity_bytes: CAPACITY,
  peers: PEERS,
  live_bytes_per_peer: 4 * CAPACITY,
  limited_wall_ms: limited.wallMs,
  unlimited_wall_ms: unlimited.wallMs,
  limited_peak_rss: limited.peakRss,
  limited_idle_rss: limited.idleRss,
  unlimited_peak_rss: unlimited.peakRss,
  no_admission_peak_rss: unadmitted.peakRss,
  limited_spills: limited.spills,
  limited_restores: limited.restores,
  spill_write_bytes_per_s: io.spillWrite,
  fs_write_bytes_per_s: io.fsWrite,
  restore_read_bytes_per_s: io.restoreRead,
  fs_read_bytes_per_s: io.fsRead,
  disk_write_fsync_bytes_per_s: io.diskWrite,
  loadavg_1m: loadavg()[0]
}
const ratios = {
  peak_rss: rssRatios[worst],
  slowdown: limited.wallMs / unlimited.wallMs,
  spill_write: io.spillWrite / io.fsWrite,
  restore_read: io.restoreRead / io.fsRead
}
const mb = (n: number): string => (n / MiB).toFixed(0)
const mbs = (n: number): string => `${(n / MiB).toFixed(0)} MiB/s`
console.log('| measure | refmesh | baseline | ratio | target |')
console.log('|---|---|---|---|---|')
console.log(`| peak RSS of the worst peer (highest peak / own bound), ${PEERS} peers x ${mb(4 * CAPACITY)} MiB live, ${mb(CAPACITY)} MiB stores (MiB) | ${mb(limited.peakRss[worst])} | ${mb(rssLimit)} (capacity x 1.25 + settled idle ${mb(limited.idleRss[worst])}) | ${ratios.peak_rss.toFixed(2)} | <= 1 |`)
console.log(`| the same without call admission (peers run with --no-admission): peak RSS of each peer (MiB) | ${unadmitted.peakRss.map(mb).join(', ')} | | | |`)
console.log(`| wall time of that workload (ms) | ${Math.round(limited.wallMs)} (${limited.spills} spills, ${limited.restores} restores) | ${Math.round(unlimited.wallMs)} (all in memory) | ${ratios.slowdown.toFixed(2)} (slowdown) | |`)
console.log(`| spill write, ${SPILL_OBJECTS} x ${mb(SPILL_OBJECT)} MiB all in flight, page cache (no fsync), median of 5 interleaved rounds | ${mbs(io.spillWrite)} | ${mbs(io.fsWrite)} (fs.writeFile, all in flight) | ${ratios.spill_write.toFixed(2)} | >= 0.7 |`)
console.log(`| restore read, same objects, one after another | ${mbs(io.restoreRead)} | ${mbs(io.fsRead)} (fs.readFile) | ${ratios.restore_read.toFixed(2)} | >= 0.7 |`)
console.log(`| the disk: the same bytes written and fsynced, one file after another | ${mbs(io.diskWrite)} | | | |`)
console.log(`load average (1 min) at the end: ${figures.loadavg_1m.toFixed(2)}`)
console.log(`bench-result ${JSON.stringify({ name: 'memory', figures, ratios })}`)
