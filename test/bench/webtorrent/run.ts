/**
 * The WebTorrent baseline of bench:broadcast, on loopback: one seeding process
 * and `receivers` leeching processes (WebTorrent 3.0.21, TCP only, no trackers,
 * DHT or LSD; every leecher is told every other peer's port at once). Installs
 * WebTorrent on first use into node_modules/.cache/refmesh-webtorrent-<version>
 * at the project's root: git-ignored and outside the source tree, like other
 * tools' caches, and never into the project's dependencies (its install scripts
 * do not work here; see ../../../../shared/STACK-NOTES.md). Returns the
 * milliseconds from telling the leechers their peers until the last one has
 * every piece.
 */
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { processCpuS } from '../proc-cpu.ts'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const VERSION = '3.0.21'
const CACHE = fileURLToPath(new URL(`../../../node_modules/.cache/refmesh-webtorrent-${VERSION}`, import.meta.url))
const ENTRY = `${CACHE}/node_modules/webtorrent/index.js`

async function ensureInstalled (): Promise<void> {
  if (existsSync(ENTRY)) return
  await mkdir(CACHE, { recursive: true })
  await promisify(execFile)('npm', ['install', '--prefix', CACHE, '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', `webtorrent@${VERSION}`], { cwd: CACHE, timeout: 300_000 })
}

interface Peer { child: ChildProcess, lines: AsyncIterator<string> }

function start (args: string[]): Peer {
  const child = spawn(process.execPath, ['--import', `${HERE}/hook.mjs`, `${HERE}/peer.mjs`, ...args], {
    cwd: CACHE,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, WEBTORRENT_ENTRY: pathToFileURL(ENTRY).href }
  })
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  return { child, lines }
}

async function nextLine (p: Peer, prefix: string, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  try {
    for (;;) {
      const r = await Promise.race([p.lines.next(), new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error(`no "${prefix}" from a WebTorrent peer within ${timeoutMs} ms`)), timeoutMs) })])
      clearTimeout(timer)
      if (r.done === true) throw new Error(`a WebTorrent peer exited before "${prefix}"`)
      if (r.value.startsWith(prefix)) return r.value
    }
  } finally {
    clearTimeout(timer)
  }
}

export async function webtorrentBroadcast (size: number, receivers: number): Promise<number> {
  return (await webtorrentRun(size, receivers)).ms
}

/** The same, with the CPU seconds all its processes (seeder and leechers) spent meanwhile, from /proc. */
export async function webtorrentRun (size: number, receivers: number): Promise<{ ms: number, cpuS: number }> {
  await ensureInstalled()
  const peers: Peer[] = []
  try {
    const seed = start(['seed', String(size), '7'])
    peers.push(seed)
    const [, seedPort, torrent] = (await nextLine(seed, 'ready ', 60_000)).split(' ')
    const leeches = Array.from({ length: receivers }, () => start(['leech', torrent, '']))
    peers.push(...leeches)
    const ports = await Promise.all(leeches.map(async l => (await nextLine(l, 'ready ', 60_000)).split(' ')[1]))
    const pids = peers.map(p => p.child.pid as number)
    const cpuBefore = pids.reduce((n, pid) => n + processCpuS(pid), 0)
    const started = performance.now()
    leeches.forEach((l, i) => l.child.stdin?.write(`peers ${[seedPort, ...ports.filter((_, j) => j !== i)].join(',')}\n`))
    await Promise.all(leeches.map(async l => await nextLine(l, 'done ', 300_000)))
    const ms = performance.now() - started
    return { ms, cpuS: pids.reduce((n, pid) => n + processCpuS(pid), 0) - cpuBefore }
  } finally {
    for (const p of peers) {
      p.child.stdin?.end()
      setTimeout(() => p.child.kill('SIGKILL'), 3_000).unref()
    }
  }
}
