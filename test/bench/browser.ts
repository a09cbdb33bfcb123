/**
 * npm run bench:browser: how fast a 64 MiB object leaves a browser tab, through
 * refmesh and through a raw libp2p stream over the same connection, in one run.
 *
 *   tab -> tab   tab A holds the object; tab B reads it, over their direct
 *                WebRTC connection (signalled through the Node peer's relay)
 *   tab -> Node  tab A holds the object; a Node peer process reads it, over the
 *                tab's WebSocket connection to it
 *
 * refmesh: A puts the object (a fresh one each run), then asks the reader to
 * `get` it (`bench.timedGet`, given a SharedRef): the reader times its get, from
 * asking the owner where the object is to the last chunk verified and stored.
 * raw: the reader opens a stream to A on the same connection, asks for the same
 * number of bytes and times it from opening the stream to the last byte
 * (`bench.rawPull`, browser/raw-stream.ts). Both readers run the same code in
 * tabs and in Node (browser/bench-functions.ts).
 *
 * The machine is usually shared, so refmesh and raw runs alternate (which goes
 * first alternates too), after a warm-up of each; every figure is the median
 * of its runs. Prints a table, then one last line `bench-result {json}` with
 * `name`, `figures` and `ratios` {tab_to_tab, tab_to_node}, each refmesh / raw
 * (target >= 0.7).
 *
 * Options: --rounds N (default 3), --mib N (object size, default 64).
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { startBrowserCluster } from '../browser/harness.ts'
import type { BrowserCluster, Tab } from '../browser/harness.ts'
import { checksum, pattern } from '../../browser/bench-functions.ts'

const BENCH_TIMEOUT_MS = 900_000
const RUN_TIMEOUT_MS = 180_000
const TARGET = 0.7

type Path = 'tab_to_tab' | 'tab_to_node'
type Way = 'refmesh' | 'raw'

interface Run { ms: number, mbps: number }

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function log (message: string): void {
  process.stderr.write(`${message}\n`)
}

async function within<T> (what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not done within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** One refmesh read: A puts a fresh object, `reader` gets it and times the get; then every copy is freed. */
async function refmeshRun (a: Tab, reader: string, bytes: number, seed: number): Promise<number> {
  const result = await a.page.evaluate(async ({ reader, bytes, seed, timeoutMs }) => {
    const r = window.refmesh
    const mesh = r.mesh!
    const x = mesh.put(r.pattern(bytes, seed))
    try {
      await mesh.wait([x], { timeoutMs })
      const timed = mesh.fn<(x: unknown) => { ms: number, bytes: number, checksum: number }>('bench.timedGet').options({ peer: reader, timeoutMs }).remote(r.shared(x))
      try {
        return await mesh.get(timed, { timeoutMs })
      } finally {
        timed.release()
      }
    } finally {
      x.release()
    }
  }, { reader, bytes, seed, timeoutMs: RUN_TIMEOUT_MS })
  if (result.bytes !== bytes || result.checksum !== checksum(pattern(bytes, seed))) {
    throw new Error(`${reader} read ${result.bytes} bytes with checksum ${result.checksum}: not the object`)
  }
  return result.ms
}

/** One raw read: `reader` pulls `bytes` from A over a stream of its own. */
async function rawRun (a: Tab, reader: string, bytes: number): Promise<number> {
  const result = await a.page.evaluate(async ({ reader, bytes, timeoutMs }) => {
    const mesh = window.refmesh.mesh!
    const timed = mesh.fn<(peer: string, bytes: number) => { ms: number, bytes: number }>('bench.rawPull').options({ peer: reader, timeoutMs }).remote(mesh.peerId, bytes)
    try {
      return await mesh.get(timed, { timeoutMs })
    } finally {
      timed.release()
    }
  }, { reader, bytes, timeoutMs: RUN_TIMEOUT_MS })
  if (result.bytes !== bytes) throw new Error(`${reader} pulled ${result.bytes} of ${bytes} raw bytes`)
  return result.ms
}

/** Waits until A and the reader hold nothing: the next run starts from empty stores. */
async function settle (c: BrowserCluster, a: Tab, reader: string): Promise<void> {
  await a.page.waitForFunction(async (reader) => {
    const mesh = window.refmesh.mesh!
    const theirs = await mesh.peerStats(reader, { timeoutMs: 10_000 })
    const mine = mesh.stats()
    return theirs.store.objects === 0 && mine.store.objects === 0 && mine.refs.owned === 0
  }, reader, { timeout: 30_000, polling: 100 })
}

/** The transport of the connection between A and `peer`, as A sees it (the one that is not limited). */
async function transportTo (a: Tab, peer: string): Promise<string> {
  return await a.page.evaluate((peer) => window.refmesh.links(peer).filter(l => !l.limited).map(l => l.transport).join('+'), peer)
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, mib: { type: 'string', default: '64' } } })
  const rounds = Number(values.rounds)
  const mib = Number(values.mib)
  if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(mib) || mib < 1) throw new Error('--rounds and --mib take whole numbers')
  const bytes = mib * 2 ** 20
  const loadStart = loadavg()[0]
  log('starting a Node peer, the page and two Chromium tabs...')
  const c = await startBrowserCluster({ tabs: 2, nodes: 1 })
  try {
    const [a, b] = c.tabs
    const node = c.peers[0]
    const readers: Record<Path, string> = { tab_to_tab: b.peer, tab_to_node: node.peer }
    const transports: Record<Path, string> = { tab_to_tab: await transportTo(a, b.peer), tab_to_node: await transportTo(a, node.peer) }
    log(`links: tab->tab over ${transports.tab_to_tab}, tab->Node over ${transports.tab_to_node}`)
    const runs: Record<Path, Record<Way, Run[]>> = { tab_to_tab: { refmesh: [], raw: [] }, tab_to_node: { refmesh: [], raw: [] } }
    let seed = 0
    const once = async (path: Path, way: Way, size: number): Promise<number> => {
      const ms = await within(`${path} ${way}`, RUN_TIMEOUT_MS, way === 'refmesh' ? refmeshRun(a, readers[path], size, ++seed) : rawRun(a, readers[path], size))
      if (way === 'refmesh') await settle(c, a, readers[path])
      return ms
    }
    for (const path of ['tab_to_tab', 'tab_to_node'] as const) {
      log(`${path}: warming up`)
      await once(path, 'refmesh', Math.min(bytes, 8 * 2 ** 20))
      await once(path, 'raw', Math.min(bytes, 8 * 2 ** 20))
      for (let round = 0; round < rounds; round++) {
        const order: Way[] = round % 2 === 0 ? ['refmesh', 'raw'] : ['raw', 'refmesh']
        for (const way of order) {
          const ms = await once(path, way, bytes)
          const mbps = bytes / 1e6 / (ms / 1000)
          runs[path][way].push({ ms, mbps })
          log(`${path} ${way} round ${round + 1}: ${Math.round(ms)} ms, ${mbps.toFixed(1)} MB/s`)
        }
      }
    }
    const loadEnd = loadavg()[0]
    const mbps = (path: Path, way: Way): number => median(runs[path][way].map(r => r.mbps))
    const ratios: Record<Path, number> = {
      tab_to_tab: mbps('tab_to_tab', 'refmesh') / mbps('tab_to_tab', 'raw'),
      tab_to_node: mbps('tab_to_node', 'refmesh') / mbps('tab_to_node', 'raw')
    }
    const figures = {
      object_bytes: bytes,
      rounds,
      tab_to_tab_transport: transports.tab_to_tab,
      tab_to_node_transport: transports.tab_to_node,
      tab_to_tab_refmesh_mbps: mbps('tab_to_tab', 'refmesh'),
      tab_to_tab_raw_mbps: mbps('tab_to_tab', 'raw'),
      tab_to_node_refmesh_mbps: mbps('tab_to_node', 'refmesh'),
      tab_to_node_raw_mbps: mbps('tab_to_node', 'raw'),
      runs,
      load_start: loadStart,
      load_end: loadEnd
    }
    const rows: string[][] = [['path', 'transport', 'refmesh MB/s', 'raw stream MB/s', 'ratio', 'target', 'met?']]
    for (const path of ['tab_to_tab', 'tab_to_node'] as const) {
      rows.push([path === 'tab_to_tab' ? 'tab -> tab' : 'tab -> Node', transports[path], mbps(path, 'refmesh').toFixed(1), mbps(path, 'raw').toFixed(1), ratios[path].toFixed(2), `>= ${TARGET}`, ratios[path] >= TARGET ? 'yes' : 'NO'])
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
    console.log(`${mib} MiB object, median of ${rounds} interleaved rounds; load average ${loadStart.toFixed(1)} at start, ${loadEnd.toFixed(1)} at end`)
    for (const r of rows) console.log('| ' + r.map((cell, i) => i === 0 || i === 1 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join(' | ') + ' |')
    console.log(`bench-result ${JSON.stringify({ name: 'browser', figures, ratios })}`)
  } catch (err) {
    log(c.logs().slice(-5_000))
    throw err
  } finally {
    await c.close()
  }
}

const deadline = setTimeout(() => {
  log(`bench:browser did not finish within ${BENCH_TIMEOUT_MS / 1000} s`)
  process.exit(1)
}, BENCH_TIMEOUT_MS)
deadline.unref()
try {
  await main()
} catch (err) {
  log((err as Error).stack ?? String(err))
  process.exitCode = 1
}
