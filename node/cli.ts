/**
 * The refmesh command.
 *   refmesh peer    start a headless peer and print the addresses others join through
 *   refmesh status  print the mesh as one peer sees it
 *   refmesh demo    start a local mesh of three peers and run the MapReduce example
 */
import { parseArgs } from 'node:util'
import type { ParseArgsOptionsConfig } from 'node:util'
import { pathToFileURL } from 'node:url'
import { execWithMallocTuning } from './memory.ts'
import { resolve } from 'node:path'
import { createMesh } from './index.ts'
import type { NodeMeshOptions } from './index.ts'
import type { Mesh } from '../core/mesh.ts'
import { parseBytes } from '../core/constants.ts'
import { startMetricsServer } from './metrics.ts'
import { startPageServer } from './page-server.ts'
import type { PageServer } from './page-server.ts'

export class UsageError extends Error {
  override name = 'UsageError'
}

const USAGE = `usage: refmesh <command> [options]

commands:
  peer     start a headless peer
             --listen <multiaddr>     where to listen (repeatable; default /ip4/127.0.0.1/tcp/0)
             --bootstrap <multiaddr>  a peer to join through, with /p2p/<id> (repeatable)
             --identity <file>        key file; created on first run (default: a new identity each run)
             --store-capacity <size>  memory for objects, e.g. 512MiB, 2GiB (default: 25% of this machine's memory)
             --spill-dir <dir>        where objects spill to disk above 60% of it (default: a directory per
                                      peer under the OS temp dir; emptied at start and stop)
             --spill-capacity <size>  disk space for spilled objects (default: 8x the store capacity)
             --no-spill               never spill: puts wait for room instead
             --module <file>          a module whose default export registers functions: (mesh) => void
             --worker-module <file>   a module whose exported functions run in a worker pool (repeatable)
             --workers <n>            workers in the pool (default: one per core)
             --no-prefetch            fetch a queued call's arguments only when it gets a slot (for comparison)
             --no-swarm               receivers pull only from complete holders, not from each other (for comparison)
             --metrics-port <port>    serve Prometheus metrics (/metrics) and the peer's state (/state.json)
             --metrics-host <addr>    where the metrics server listens (default 127.0.0.1)
             --page-port <port>       serve the mesh page, for browser tabs to join this peer (0: any port;
                                      built first if missing or stale); it listens on --metrics-host
             --json                   print one JSON line {peer, addrs} when ready
  status   print the mesh as one peer sees it
             --bootstrap <multiaddr>  the peer to ask (required)
             --json                   print JSON
  demo     start a local mesh of three peers and run the MapReduce example
             --maps <n> --reduces <n> --shard-bytes <size> --seed <n>
`

export interface PeerCommandOptions {
  listen: string[]
  bootstrap: string[]
  identity?: string
  storeCapacity?: number
  spillDir?: string | false
  spillCapacity?: number
  module?: string
  workerModules: string[]
  workers?: number
  metricsPort?: number
  metricsHost?: string
  pagePort?: number
  prefetch: boolean
  swarm: boolean
  json: boolean
}

function parse (argv: string[], options: ParseArgsOptionsConfig): Record<string, string | boolean | Array<string | boolean> | undefined> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

export function parsePeerArgs (argv: string[]): PeerCommandOptions {
  const v = parse(argv, {
    listen: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true },
    identity: { type: 'string' },
    'store-capacity': { type: 'string' },
    'spill-dir': { type: 'string' },
    'spill-capacity': { type: 'string' },
    'no-spill': { type: 'boolean', default: false },
    module: { type: 'string' },
    'worker-module': { type: 'string', multiple: true },
    workers: { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
    'page-port': { type: 'string' },
    'no-prefetch': { type: 'boolean', default: false },
    'no-swarm': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false }
  })
  let metricsPort: number | undefined
  if (v['metrics-port'] !== undefined) {
    metricsPort = Number(v['metrics-port'])
    if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new UsageError(`--metrics-port must be a port number, not "${String(v['metrics-port'])}"`)
  }
  let pagePort: number | undefined
  if (v['page-port'] !== undefined) {
    pagePort = Number(v['page-port'])
    if (!Number.isInteger(pagePort) || pagePort < 0 || pagePort > 65535) throw new UsageError(`--page-port must be a port number, not "${String(v['page-port'])}"`)
  }
  let workers: number | undefined
  if (v.workers !== undefined) {
    workers = Number(v.workers)
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new UsageError(`--workers must be a whole number from 1 to 256, not "${String(v.workers)}"`)
  }
  const bytesOption = (name: string): number | undefined => {
    if (v[name] === undefined) return undefined
    try {
      return parseBytes(v[name] as string)
    } catch (err) {
      throw new UsageError(`--${name}: ${(err as Error).message}`)
    }
  }
  const storeCapacity = bytesOption('store-capacity')
  const spillCapacity = bytesOption('spill-capacity')
  if (v['no-spill'] === true && v['spill-dir'] !== undefined) throw new UsageError('--no-spill and --spill-dir contradict each other')
  for (const addr of [...(v.listen as string[] ?? []), ...(v.bootstrap as string[] ?? [])]) {
    if (!addr.startsWith('/')) throw new UsageError(`"${addr}" is not a multiaddr (they look like /ip4/127.0.0.1/tcp/4001)`)
  }
  return {
    listen: v.listen as string[] ?? [],
    bootstrap: v.bootstrap as string[] ?? [],
    identity: v.identity as string | undefined,
    storeCapacity,
    spillDir: v['no-spill'] === true ? false : v['spill-dir'] as string | undefined,
    spillCapacity,
    module: v.module as string | undefined,
    workerModules: v['worker-module'] as string[] ?? [],
    workers,
    metricsPort,
    metricsHost: v['metrics-host'] as string | undefined,
    pagePort,
    prefetch: v['no-prefetch'] !== true,
    swarm: v['no-swarm'] !== true,
    json: v.json === true
  }
}

/** Loads a functions module: its default export receives the mesh and registers what the peer offers. */
export async function loadModule (mesh: Mesh, file: string): Promise<void> {
  const mod = await import(pathToFileURL(resolve(file)).href) as { default?: unknown }
  if (typeof mod.default !== 'function') throw new UsageError(`${file} must export a default function (mesh) => void`)
  await (mod.default as (mesh: Mesh) => unknown)(mesh)
}

/** `refmesh peer`; `extra` lets a test peer add mesh options the command line does not offer (test hooks). */
export async function runPeer (argv: string[], extra: Partial<NodeMeshOptions> = {}): Promise<void> {
  const opts = parsePeerArgs(argv)
  const mesh = await createMesh({
    ...extra,
    listen: opts.listen.length > 0 ? opts.listen : undefined,
    bootstrap: opts.bootstrap,
    identityFile: opts.identity,
    store: { capacity: opts.storeCapacity, spillCapacity: opts.spillCapacity },
    spillDir: opts.spillDir,
    workerModules: opts.workerModules,
    workers: opts.workers,
    prefetch: opts.prefetch,
    swarm: opts.swarm
  })
  if (opts.module !== undefined) await loadModule(mesh, opts.module)
  const metrics = opts.metricsPort === undefined ? undefined : await startMetricsServer({ mesh, port: opts.metricsPort, host: opts.metricsHost })
  const page = opts.pagePort === undefined ? undefined : await servePage(mesh, opts.pagePort, opts.metricsHost)
  const addrs = mesh.libp2p.getMultiaddrs().map(String)
  if (opts.json) {
    process.stdout.write(JSON.stringify({ peer: mesh.peerId, addrs, metrics: metrics?.url, page: page?.url }) + '\n')
  } else {
    process.stdout.write(`refmesh peer ${mesh.peerId}\njoin with:\n${addrs.map(a => `  --bootstrap ${a}`).join('\n')}\n`)
    if (metrics !== undefined) process.stdout.write(`metrics: ${metrics.url}/metrics, state: ${metrics.url}/state.json\n`)
    if (page !== undefined) process.stdout.write(`mesh page: ${page.url}/ (open it in a browser and press Join)\n`)
  }
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    Promise.all([mesh.stop(), metrics?.close(), page?.close()]).finally(() => process.exit(0))
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  // A parent that spawned us with a pipe on stdin stops us by closing it.
  if (!process.stdin.isTTY) process.stdin.on('end', stop).resume()
}

/** The mesh page, handing tabs this peer's browser addresses (it must listen on WebSockets or WebRTC-direct). */
async function servePage (mesh: Mesh, port: number, host?: string): Promise<PageServer> {
  const { ensurePageBuilt } = await import('./page-build.ts')
  await ensurePageBuilt()
  return await startPageServer({ addrs: () => mesh.libp2p.getMultiaddrs().map(String), port, host })
}

async function runStatus (argv: string[]): Promise<void> {
  const v = parse(argv, { bootstrap: { type: 'string', multiple: true }, json: { type: 'boolean', default: false } })
  const bootstrap = v.bootstrap as string[] | undefined
  if (bootstrap === undefined || bootstrap.length === 0) throw new UsageError('status needs --bootstrap <multiaddr of a peer>')
  const mesh = await createMesh({ bootstrap })
  try {
    const first = await mesh.connect(bootstrap[0], { timeoutMs: 10_000 })
    const seen = await mesh.peerStats(first, { timeoutMs: 10_000 })
    const all = await Promise.all([first, ...seen.peers.filter(p => p !== mesh.peerId && p !== first)].map(async p => {
      try { return await mesh.peerStats(p, { timeoutMs: 10_000 }) } catch (err) { return { peer: p, error: (err as Error).message } }
    }))
    if (v.json === true) {
      process.stdout.write(JSON.stringify(all, null, 2) + '\n')
    } else {
      process.stdout.write(`mesh seen from ${first}: ${all.length} peer(s)\n`)
      for (const s of all) {
        if ('error' in s) { process.stdout.write(`  ${s.peer}  unreachable: ${s.error}\n`); continue }
        const mb = (n: number): string => (n / 2 ** 20).toFixed(1) + ' MiB'
        process.stdout.write(`  ${s.peer}\n    functions: ${s.functions.join(', ') || '-'}\n    store: ${s.store.objects} objects, ${mb(s.store.bytes)} of ${mb(s.store.capacity)}\n    calls executed: ${s.calls.executed}, running: ${s.calls.running}\n    traffic: chunks in ${mb(s.traffic.chunkIn)}, out ${mb(s.traffic.chunkOut)}\n`)
      }
    }
  } finally {
    await mesh.stop()
  }
}

export async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'peer':
        execWithMallocTuning()
        await runPeer(rest)
        return -1
      case 'status': await runStatus(rest); return 0
      case 'demo': {
        const { runDemo } = await import('../examples/demo.ts')
        await runDemo(rest)
        return 0
      }
      case undefined: case '-h': case '--help': case 'help':
        process.stdout.write(USAGE)
        return command === undefined ? 2 : 0
      default:
        throw new UsageError(`unknown command "${command}"`)
    }
  } catch (err) {
    // By name: the demo has a UsageError of its own (importing this module back from it would deadlock).
    if (err instanceof Error && err.name === 'UsageError') {
      process.stderr.write(`refmesh: ${err.message}\n\n${USAGE}`)
      return 2
    }
    process.stderr.write(`refmesh: ${(err as Error).message}\n`)
    return 1
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  if (code >= 0) process.exit(code)
}
