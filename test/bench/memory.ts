/**
 * npm run bench:memory — memory pressure, each figure against its baseline in
 * the same run:
 *  - the 4x-capacity workload: three peer processes, each with a store of
 *    CAPACITY, make 4x that in 4 MiB objects and then read every one back (a
 *    checksum call placed where the object is). Peak RSS of each peer process
 *    (the kernel's VmHWM) vs capacity x 1.25 + the idle peer's RSS; wall time vs
 *    the same workload with room for everything in memory.
 *  - spill and restore throughput of a store (its file spill backend) vs plain
 *    fs writes and reads of the same bytes.
 * Ends with one `bench-result {json}` line.
 */
import { readFile, readdir, rm, writeFile, mkdtemp } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
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

function statusKiB (pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find(l => l.startsWith(`${field}:`))
  if (line === undefined) throw new Error(`no ${field} for ${pid}`)
  return Number(line.split(/\s+/)[1]) * 1024
}

interface WorkloadResult { wallMs: number, peakRss: number[], idleRss: number[], spills: number, restores: number }

/** Every peer makes 4x CAPACITY of objects, then each is read back where it lives. */
async function workload (capacity: string): Promise<WorkloadResult> {
  const peers = await spawnPeers(PEERS, { module: FIXTURES, storeCapacity: capacity, env: process.env.BENCH_PEER_ENV !== undefined ? JSON.parse(process.env.BENCH_PEER_ENV) : {} })
  let mesh: Mesh | undefined
  try {
    mesh = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(mesh, peers)
    await new Promise(resolve => setTimeout(resolve, 1500))
    const idleRss = peers.map(p => statusKiB(p.child.pid as number, 'VmRSS'))
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

async function until (check: () => boolean): Promise<void> {
  while (!check()) await new Promise(resolve => setImmediate(resolve))
}

/** One round: a store spills and restores SPILL_OBJECTS through its file backend; plain fs writes and reads the same bytes. */
async function throughputRound (dir: string, buffers: Uint8Array[]): Promise<{ spillMs: number, restoreMs: number, fsWriteMs: number, fsReadMs: number }> {
  const keys = buffers.map((_, i) => i.toString(16).padStart(8, '0'))
  // A spill mark of 0: every object put is spilled as soon as it is in.
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

  const plainDir = join(dir, 'plain')
  const plain = await FileSpill.open(plainDir)
  t0 = performance.now()
  for (let i = 0; i < buffers.length; i++) await writeFile(join(plainDir, keys[i]), buffers[i])
  const fsWriteMs = performance.now() - t0
  if ((await readdir(plainDir)).length !== buffers.length) throw new Error('plain writes missing')
  t0 = performance.now()
  for (const key of keys) {
    const b = await readFile(join(plainDir, key))
    if (b.byteLength !== SPILL_OBJECT) throw new Error('plain read short')
  }
  const fsReadMs = performance.now() - t0
  await plain.close()
  return { spillMs, restoreMs, fsWriteMs, fsReadMs }
}

/** Bytes per second a store spills and restores vs plain fs: the median of interleaved rounds. */
async function throughput (): Promise<{ spillWrite: number, restoreRead: number, fsWrite: number, fsRead: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-bench-'))
  try {
    const buffers = Array.from({ length: SPILL_OBJECTS }, (_, i) => new Uint8Array(SPILL_OBJECT).fill(i))
    const rounds: Array<Awaited<ReturnType<typeof throughputRound>>> = []
    for (let r = 0; r < 5; r++) rounds.push(await throughputRound(dir, buffers))
    const median = (k: keyof Awaited<ReturnType<typeof throughputRound>>): number => rounds.map(x => x[k]).sort((a, b) => a - b)[Math.floor(rounds.length / 2)]
    const rate = (ms: number): number => (SPILL_OBJECTS * SPILL_OBJECT) / (ms / 1000)
    return { spillWrite: rate(median('spillMs')), restoreRead: rate(median('restoreMs')), fsWrite: rate(median('fsWriteMs')), fsRead: rate(median('fsReadMs')) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const limited = await workload(`${CAPACITY}`)
const unlimited = await workload(`${8 * CAPACITY}`)
const io = await throughput()
const worst = limited.peakRss.indexOf(Math.max(...limited.peakRss))
const rssLimit = CAPACITY * 1.25 + limited.idleRss[worst]
const figures = {
  capacity_bytes: CAPACITY,
  peers: PEERS,
  live_bytes_per_peer: 4 * CAPACITY,
  limited_wall_ms: limited.wallMs,
  unlimited_wall_ms: unlimited.wallMs,
  limited_peak_rss: limited.peakRss,
  limited_idle_rss: limited.idleRss,
  unlimited_peak_rss: unlimited.peakRss,
  limited_spills: limited.spills,
  limited_restores: limited.restores,
  spill_write_bytes_per_s: io.spillWrite,
  fs_write_bytes_per_s: io.fsWrite,
  restore_read_bytes_per_s: io.restoreRead,
  fs_read_bytes_per_s: io.fsRead
}
const ratios = {
  peak_rss: limited.peakRss[worst] / rssLimit,
  slowdown: limited.wallMs / unlimited.wallMs,
  spill_write: io.spillWrite / io.fsWrite,
  restore_read: io.restoreRead / io.fsRead
}
const mb = (n: number): string => (n / MiB).toFixed(0)
const mbs = (n: number): string => `${(n / MiB).toFixed(0)} MiB/s`
console.log('| measure | refmesh | baseline | ratio | target |')
console.log('|---|---|---|---|---|')
console.log(`| peak RSS of the worst peer, ${PEERS} peers x ${mb(4 * CAPACITY)} MiB live, ${mb(CAPACITY)} MiB stores (MiB) | ${mb(limited.peakRss[worst])} | ${mb(rssLimit)} (capacity x 1.25 + idle ${mb(limited.idleRss[worst])}) | ${ratios.peak_rss.toFixed(2)} | <= 1 |`)
console.log(`| wall time of that workload (ms) | ${Math.round(limited.wallMs)} (${limited.spills} spills, ${limited.restores} restores) | ${Math.round(unlimited.wallMs)} (all in memory) | ${ratios.slowdown.toFixed(2)} (slowdown) | |`)
console.log(`| spill write, ${SPILL_OBJECTS} x ${mb(SPILL_OBJECT)} MiB, median of 5 interleaved rounds | ${mbs(io.spillWrite)} | ${mbs(io.fsWrite)} (fs.writeFile) | ${ratios.spill_write.toFixed(2)} | >= 0.7 |`)
console.log(`| restore read, same objects | ${mbs(io.restoreRead)} | ${mbs(io.fsRead)} (fs.readFile) | ${ratios.restore_read.toFixed(2)} | >= 0.7 |`)
console.log(`bench-result ${JSON.stringify({ name: 'memory', figures, ratios })}`)
