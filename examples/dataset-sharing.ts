/**
 * Dataset sharing: one peer shares a dataset, volunteers find it by name and
 * compute over it.
 *
 *   owner:      table = generate(rows)                an Apache Arrow table, >= 100 MiB
 *               ref = put(tableToIPC(table))          its IPC bytes: one binary object, 1 MiB chunks
 *               publish(name, ref)
 *   volunteer:  ref = lookup(name)                    no one hands it a Ref: it knows the name
 *               table = tableFromIPC(get(ref))
 *               statistics over its share of the rows, and over the whole table
 *
 * Every volunteer needs the whole table (the whole-table statistics are its
 * cross-check), so a star would cost the owner one copy per volunteer. The
 * mesh's multicast makes it far less: the owner feeds two receivers at a time,
 * every receiver serves the chunks it has verified while it receives the
 * rest, and receivers pull from each other. `mesh.broadcast` starts that for
 * every volunteer at once, before the calls (a volunteer's get then finds its
 * copy in its own store); with --no-broadcast the volunteers' gets start it
 * themselves, at whatever moment each call arrives.
 *
 * The IPC bytes are shared, not the table object: a Uint8Array is the one kind
 * of value the mesh stores without re-encoding (its chunks are slices of the
 * buffer), and tableFromIPC reads the columns in place, without a copy.
 *
 * Volunteers offer the function with `refmesh peer --module examples/dataset-sharing.ts`;
 * `npm run examples:dataset-sharing` starts the owner here and three volunteer processes.
 */
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { tableFromArrays, tableFromIPC, tableToIPC } from 'apache-arrow'
import type { Table } from 'apache-arrow'
import type { Mesh, MeshStats } from '../core/index.ts'
import { parseBytes } from '../core/constants.ts'
import { prng } from './mapreduce.ts'

export const STATS = 'dataset.stats'

/** The columns and their element types; the bytes per row follow from them. */
const COLUMNS = {
  /** seconds since the epoch, one reading every ~0.5 s */
  time: Float64Array,
  station: Uint16Array,
  temperature: Float64Array,
  pressure: Float64Array,
  humidity: Float32Array,
  wind: Float32Array
} as const

export type Column = keyof typeof COLUMNS
export const COLUMN_NAMES = Object.keys(COLUMNS) as Column[]
const ROW_BYTES = COLUMN_NAMES.reduce((n, c) => n + COLUMNS[c].BYTES_PER_ELEMENT, 0)

export interface ColumnStats {
  count: number
  sum: number
  mean: number
  min: number
  max: number
}
export type TableStats = Record<Column, ColumnStats>

/** What a volunteer sends back: small, so it travels inline in the call's reply. */
export interface VolunteerReport {
  peer: string
  share: number
  shares: number
  /** its rows: [from, to) */
  from: number
  to: number
  shareStats: TableStats
  wholeStats: TableStats
  rows: number
  bytes: number
  lookupMs: number
  fetchMs: number
  computeMs: number
}

// ------------------------------------------------------------------ the table

/** Rows in a table of at least `bytes` bytes of column data. */
export function rowsFor (bytes: number): number {
  return Math.ceil(bytes / ROW_BYTES)
}

/** Weather-station readings, deterministic in (rows, seed). */
export function generateTable (rows: number, seed: number): Table {
  const random = prng(seed)
  const time = new Float64Array(rows)
  const station = new Uint16Array(rows)
  const temperature = new Float64Array(rows)
  const pressure = new Float64Array(rows)
  const humidity = new Float32Array(rows)
  const wind = new Float32Array(rows)
  let t = 1_767_225_600
  for (let i = 0; i < rows; i++) {
    t += random()
    time[i] = t
    const s = Math.floor(random() * 1000)
    station[i] = s
    // The sum of three uniforms: bell-shaped enough, and cheap for millions of rows.
    const bell = random() + random() + random() - 1.5
    temperature[i] = 12 + (s % 40) * 0.25 + bell * 9
    pressure[i] = 1013.25 + bell * 11 - (s % 17)
    humidity[i] = Math.min(100, Math.max(0, 65 - bell * 30 + random() * 10))
    wind[i] = random() * random() * 25
  }
  return tableFromArrays({ time, station, temperature, pressure, humidity, wind })
}

export type ColumnValues = Float64Array | Float32Array | Uint16Array

/** Each column as a typed array (views into the IPC bytes for a table read with tableFromIPC). */
export function columnsOf (table: Table): Record<Column, ColumnValues> {
  return Object.fromEntries(COLUMN_NAMES.map(c => {
    const vector = table.getChild(c)
    if (vector === null) throw new Error(`the table has no column "${c}"`)
    return [c, vector.toArray() as ColumnValues]
  })) as Record<Column, ColumnValues>
}

/** Rows per pass of the row loop: see tableStats. */
const BLOCK = 1 << 14

interface Accumulator { sum: number, min: number, max: number }

function accumulate (acc: Accumulator, v: ColumnValues, from: number, to: number): void {
  let { sum, min, max } = acc
  for (let i = from; i < to; i++) {
    const x = v[i]
    sum += x
    if (x < min) min = x
    if (x > max) max = x
  }
  acc.sum = sum
  acc.min = min
  acc.max = max
}

/**
 * Every column's statistics over rows [from, to), a block of rows per call.
 * Written as one long row loop per column, the figures came out wrong now and
 * then, in peer processes and in the owner alike (Node 24.21: one column's
 * figures under another's name, a share's count beside the whole's sum),
 * around the second call, in busy processes only, never in a lone process,
 * and not in the runs made with V8's Maglev compiler off. The suspect is a
 * loop compiled while it runs (on-stack replacement): short calls are compiled
 * between calls instead. test/dataset.test.ts checks every figure.
 */
export function tableStats (columns: Record<Column, ColumnValues>, from: number, to: number): TableStats {
  const out: Partial<TableStats> = {}
  for (const c of COLUMN_NAMES) {
    const acc: Accumulator = { sum: 0, min: Infinity, max: -Infinity }
    for (let start = from; start < to; start += BLOCK) accumulate(acc, columns[c], start, Math.min(start + BLOCK, to))
    const count = to - from
    out[c] = { count, sum: acc.sum, mean: count > 0 ? acc.sum / count : NaN, min: acc.min, max: acc.max }
  }
  return out as TableStats
}

/** The whole table's statistics from its shares' (sums add in another order: equal to a few ulps). */
export function mergeStats (parts: TableStats[]): TableStats {
  return Object.fromEntries(COLUMN_NAMES.map(c => {
    let count = 0
    let sum = 0
    let min = Infinity
    let max = -Infinity
    for (const p of parts) {
      count += p[c].count
      sum += p[c].sum
      min = Math.min(min, p[c].min)
      max = Math.max(max, p[c].max)
    }
    return [c, { count, sum, mean: count > 0 ? sum / count : NaN, min, max }]
  })) as TableStats
}

/** Rows [from, to) of share `share` of `shares`. */
export function shareRows (rows: number, share: number, shares: number): { from: number, to: number } {
  return { from: Math.floor(share * rows / shares), to: Math.floor((share + 1) * rows / shares) }
}

// ------------------------------------------------------------------ the volunteer

/** Registers the volunteer's function (`refmesh peer --module examples/dataset-sharing.ts`). */
export default function register (mesh: Mesh): void {
  mesh.register(STATS, async (name: string, share: number, shares: number, timeoutMs = 120_000): Promise<VolunteerReport> => {
    if (!Number.isInteger(shares) || shares < 1 || !Number.isInteger(share) || share < 0 || share >= shares) throw new RangeError(`share must be a whole number in [0, ${shares}), not ${share}`)
    const started = performance.now()
    const ref = await mesh.lookup<Uint8Array>(name, { timeoutMs: Math.min(timeoutMs, 30_000) })
    try {
      const found = performance.now()
      const bytes = await mesh.get(ref, { timeoutMs })
      const fetched = performance.now()
      const table = tableFromIPC(bytes)
      const columns = columnsOf(table)
      const { from, to } = shareRows(table.numRows, share, shares)
      const shareStats = tableStats(columns, from, to)
      const wholeStats = tableStats(columns, 0, table.numRows)
      return {
        peer: mesh.peerId,
        share,
        shares,
        from,
        to,
        shareStats,
        wholeStats,
        rows: table.numRows,
        bytes: bytes.byteLength,
        lookupMs: found - started,
        fetchMs: fetched - found,
        computeMs: performance.now() - fetched
      }
    } finally {
      ref.release()
    }
  })
}

// ------------------------------------------------------------------ the owner

export interface DatasetSharingOptions {
  /** bytes of column data in the table (the IPC bytes are a little more) */
  bytes: number
  seed: number
  /** the name it is published under */
  name?: string
  /** copy the table to every volunteer with mesh.broadcast before the calls (default true) */
  broadcast?: boolean
  timeoutMs?: number
  /** called as the run goes on, one line each */
  onStep?: (line: string) => void
}

type Traffic = MeshStats['traffic']

export interface VolunteerTraffic {
  peer: string
  /** chunk bytes it took in from the owner and from the other volunteers during the run */
  fromOwner: number
  fromVolunteers: number
  /** chunk bytes it sent */
  sent: number
}

export interface DatasetSharingResult {
  name: string
  rows: number
  /** the IPC bytes' size: the object every volunteer needs whole */
  tableBytes: number
  volunteers: VolunteerReport[]
  /** this process's own statistics over the table it made */
  local: TableStats
  /** the volunteers' share statistics, merged */
  merged: TableStats
  /** every volunteer's whole-table statistics equal `local` exactly */
  wholeMatches: boolean
  /** the largest relative difference between `merged` and `local` (means and sums) */
  mergedError: number
  /** chunk bytes the owner sent during the distribution and the calls */
  ownerChunkOut: number
  ownerControlOut: number
  traffic: VolunteerTraffic[]
  generateMs: number
  encodeMs: number
  broadcastMs: number
  computeMs: number
  elapsedMs: number
}

const minus = (a: Traffic, b: Traffic | undefined): Traffic => ({
  controlIn: a.controlIn - (b?.controlIn ?? 0),
  controlOut: a.controlOut - (b?.controlOut ?? 0),
  chunkIn: a.chunkIn - (b?.chunkIn ?? 0),
  chunkOut: a.chunkOut - (b?.chunkOut ?? 0)
})

/** Equal to the last bit (compared field by field: the codec may reorder an object's keys). */
export function sameStats (a: TableStats, b: TableStats): boolean {
  return COLUMN_NAMES.every(c => (['count', 'sum', 'mean', 'min', 'max'] as const).every(f => Object.is(a[c][f], b[c][f])))
}

function relativeError (a: number, b: number): number {
  return a === b ? 0 : Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b))
}

/**
 * The owner's side, on `owner`: makes the table, publishes its IPC bytes under
 * a name, and has each of `volunteers` compute its share by name. It releases
 * and unpublishes everything before it returns, so the stores empty.
 */
export async function runDatasetSharing (owner: Mesh, volunteers: string[], options: DatasetSharingOptions): Promise<DatasetSharingResult> {
  if (volunteers.length === 0) throw new RangeError('dataset sharing needs at least one volunteer')
  const timeoutMs = options.timeoutMs ?? 300_000
  const name = options.name ?? `dataset/weather-${options.seed}`
  const step = options.onStep ?? (() => {})
  const started = performance.now()

  const rows = rowsFor(options.bytes)
  const table = generateTable(rows, options.seed)
  const generated = performance.now()
  const ipc = tableToIPC(table, 'stream')
  const encoded = performance.now()
  step(`table: ${rows.toLocaleString('en-US')} rows x ${COLUMN_NAMES.length} columns (${COLUMN_NAMES.join(', ')}), ${mib(ipc.byteLength)} as Arrow IPC; made in ${secs(generated - started)}, encoded in ${secs(encoded - generated)}`)

  const ref = owner.put(ipc)
  owner.publish(name, ref)
  step(`published as "${name}"`)
  try {
    const peerStats = async (): Promise<MeshStats[]> => await Promise.all(volunteers.map(async p => await owner.peerStats(p, { timeoutMs: 10_000 })))
    const ownerBefore = owner.stats().traffic
    const volunteersBefore = await peerStats()

    let broadcastMs = 0
    if (options.broadcast !== false) {
      const b0 = performance.now()
      const { failed } = await owner.broadcast(ref, {
        peers: volunteers,
        timeoutMs,
        onProgress: p => step(`  broadcast: ${short(p.peer)} has its copy (${p.done}/${p.total}) at ${secs(performance.now() - b0)}${p.error !== undefined ? `: ${p.error.message}` : ''}`)
      })
      if (failed.length > 0) throw new Error(`broadcast failed on ${failed.map(f => `${short(f.peer)} (${f.error.message})`).join(', ')}`)
      broadcastMs = performance.now() - b0
    }

    const c0 = performance.now()
    const stats = owner.fn<(name: string, share: number, shares: number, timeoutMs: number) => VolunteerReport>(STATS)
    const calls = volunteers.map((peer, i) => stats.options({ peer, timeoutMs, retries: 0 }).remote(name, i, volunteers.length, timeoutMs))
    let reports: VolunteerReport[]
    try {
      reports = await Promise.all(calls.map(async c => await owner.get(c, { timeoutMs })))
    } finally {
      for (const c of calls) c.release()
    }
    const computeMs = performance.now() - c0
    for (const r of reports) {
      step(`  volunteer ${short(r.peer)}: rows ${r.from.toLocaleString('en-US')}-${(r.to - 1).toLocaleString('en-US')}; looked up in ${secs(r.lookupMs)}, got ${mib(r.bytes)} in ${secs(r.fetchMs)}, computed in ${secs(r.computeMs)}`)
    }

    const ownerDelta = minus(owner.stats().traffic, ownerBefore)
    const volunteersAfter = await peerStats()
    const traffic = volunteersAfter.map((s, i) => {
      const before = volunteersBefore[i]
      let fromOwner = 0
      let fromVolunteers = 0
      let sent = 0
      for (const [peer, t] of Object.entries(s.trafficByPeer)) {
        const d = minus(t, before.trafficByPeer[peer])
        if (peer === owner.peerId) fromOwner += d.chunkIn
        else if (volunteers.includes(peer)) fromVolunteers += d.chunkIn
        sent += d.chunkOut
      }
      return { peer: s.peer, fromOwner, fromVolunteers, sent }
    })

    const local = tableStats(columnsOf(table), 0, rows)
    const wholeMatches = reports.every(r => sameStats(r.wholeStats, local))
    const merged = mergeStats(reports.map(r => r.shareStats))
    let mergedError = 0
    for (const c of COLUMN_NAMES) {
      if (merged[c].count !== local[c].count || merged[c].min !== local[c].min || merged[c].max !== local[c].max) mergedError = Infinity
      mergedError = Math.max(mergedError, relativeError(merged[c].sum, local[c].sum), relativeError(merged[c].mean, local[c].mean))
    }
    return {
      name,
      rows,
      tableBytes: ipc.byteLength,
      volunteers: reports,
      local,
      merged,
      wholeMatches,
      mergedError,
      ownerChunkOut: ownerDelta.chunkOut,
      ownerControlOut: ownerDelta.controlOut,
      traffic,
      generateMs: generated - started,
      encodeMs: encoded - generated,
      broadcastMs,
      computeMs,
      elapsedMs: performance.now() - started
    }
  } finally {
    owner.unpublish(name)
    ref.release()
  }
}

// ------------------------------------------------------------------ output

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(2)} MiB`
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`
const short = (peer: string): string => '…' + peer.slice(-6)

/** The report a person reads: statistics, checks, and the bytes that moved. */
export function describe (r: DatasetSharingResult): string {
  const lines: string[] = []
  const num = (x: number): string => x.toFixed(3).padStart(16)
  lines.push('', `statistics over all ${r.rows.toLocaleString('en-US')} rows (each volunteer computed these over the whole table):`)
  lines.push(`  ${'column'.padEnd(12)}${'mean'.padStart(16)}${'min'.padStart(16)}${'max'.padStart(16)}`)
  for (const c of COLUMN_NAMES) lines.push(`  ${c.padEnd(12)}${num(r.local[c].mean)}${num(r.local[c].min)}${num(r.local[c].max)}`)
  lines.push(`  ${r.wholeMatches ? 'every volunteer\'s whole-table result equals this process\'s own computation, exactly' : 'MISMATCH: a volunteer\'s whole-table result differs from this process\'s'}`)
  lines.push(`  the ${r.volunteers.length} shares' statistics merged: counts, minima and maxima equal; sums and means within ${r.mergedError.toExponential(1)} (relative)`)
  lines.push('', 'bytes moved (chunks):')
  for (const t of r.traffic) lines.push(`  volunteer ${short(t.peer)}: took ${mib(t.fromOwner)} from the owner and ${mib(t.fromVolunteers)} from other volunteers; sent ${mib(t.sent)}`)
  const copies = r.ownerChunkOut / r.tableBytes
  lines.push(`  owner: sent ${mib(r.ownerChunkOut)} = ${copies.toFixed(2)} copies of the ${mib(r.tableBytes)} table for ${r.volunteers.length} volunteers (a star would send ${r.volunteers.length}.00 copies: ${mib(r.tableBytes * r.volunteers.length)}), and ${(r.ownerControlOut / 1024).toFixed(1)} KiB of control messages`)
  lines.push('', `time: ${secs(r.elapsedMs)} in all: made the table in ${secs(r.generateMs)}, encoded it in ${secs(r.encodeMs)}, ${r.broadcastMs > 0 ? `broadcast it in ${secs(r.broadcastMs)}, ` : ''}volunteers' calls ${secs(r.computeMs)}`)
  return lines.join('\n') + '\n'
}

// ------------------------------------------------------------------ main

const USAGE = 'usage: node examples/dataset-sharing.ts [--bytes 100MiB] [--volunteers 3] [--seed 2026] [--no-broadcast]'

async function main (argv: string[]): Promise<number> {
  let values
  try {
    values = parseArgs({
      args: argv,
      options: {
        bytes: { type: 'string', default: '100MiB' },
        volunteers: { type: 'string', default: '3' },
        seed: { type: 'string', default: '2026' },
        'no-broadcast': { type: 'boolean', default: false }
      },
      strict: true,
      allowPositionals: false
    }).values
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`)
    return 2
  }
  const bytes = parseBytes(values.bytes)
  const count = Number(values.volunteers)
  const seed = Number(values.seed)
  if (!Number.isInteger(count) || count < 1 || count > 16 || !Number.isInteger(seed) || seed < 0 || bytes < 1 || bytes > 4 * 2 ** 30) {
    process.stderr.write(`--volunteers must be 1-16, --seed a whole number, --bytes at most 4GiB\n${USAGE}\n`)
    return 2
  }
  // Imported here: a volunteer loads this module only for register().
  const { createMesh } = await import('../node/index.ts')
  const { spawnPeers, stopAll, waitForFullMesh } = await import('../node/local-cluster.ts')
  const write = (s: string): void => { process.stdout.write(s + '\n') }
  const started = performance.now()
  const owner = await createMesh()
  let peers: Awaited<ReturnType<typeof spawnPeers>> = []
  try {
    write(`owner ${short(owner.peerId)} (this process); starting ${count} volunteer processes (refmesh peer --module examples/dataset-sharing.ts)...`)
    peers = await spawnPeers(count, { module: fileURLToPath(import.meta.url), bootstrap: [owner.libp2p.getMultiaddrs()[0].toString()] })
    await waitForFullMesh(owner, peers)
    write(`volunteers ${peers.map(p => short(p.peer)).join(', ')} joined in ${secs(performance.now() - started)}`)
    const result = await runDatasetSharing(owner, peers.map(p => p.peer), { bytes, seed, broadcast: !values['no-broadcast'], onStep: write })
    process.stdout.write(describe(result))
    if (!result.wholeMatches || !(result.mergedError < 1e-9)) {
      process.stderr.write('the volunteers\' statistics do not match this process\'s\n')
      return 1
    }
    return 0
  } finally {
    await owner.stop()
    await stopAll(peers)
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)))
