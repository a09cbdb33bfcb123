/**
 * The refmesh command.
 *   refmesh peer    start a headless peer and print the addresses others join through
 *   refmesh status  print the mesh as one peer sees it
 *   refmesh demo    start a local mesh of three peers and run the MapReduce example
 *                   (--serve: then keep it up and serve the mesh page; npm start)
 */
import { parseArgs } from 'node:util'
import type { ParseArgsOptionsConfig } from 'node:util'
import { pathToFileURL } from 'node:url'
import { execWithMallocTuning } from './memory.ts'
import { basename, dirname, join, resolve } from 'node:path'
import { createReadStream } from 'node:fs'
import { open, rename, stat, unlink } from 'node:fs/promises'
import { createMesh } from './index.ts'
import type { NodeMeshOptions } from './index.ts'
import type { Mesh } from '../core/mesh.ts'
import { parseBytes } from '../core/constants.ts'
import { startMetricsServer } from './metrics.ts'
import { startPageServer } from './page-server.ts'
import type { IceServer, PageServer } from './page-server.ts'
import { UsageError, checkMultiaddr, describeError, oneLine } from './cli-errors.ts'
import { SHUTDOWN_DEFAULTS, serveUntilStopped, within } from './shutdown.ts'
import { SERVE_FLAGS, SERVE_USAGE, ServeFlagError, insecurePageNote, loadTls, parseServeFlags, publicHostOf } from './serve-flags.ts'
import type { ServeOptions } from './serve-flags.ts'

export { UsageError }

const USAGE = `usage: refmesh <command> [options]

commands:
  peer     start a headless peer
             --listen <multiaddr>     where to listen (repeatable; default /ip4/127.0.0.1/tcp/0 and
                                      /ip4/127.0.0.1/tcp/0/ws; add /ip4/.../udp/0/webrtc-direct for tabs,
                                      /ip4/.../udp/0/quic-v1 for QUIC between Node peers)
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
             --inline-threshold <size> results up to this size travel in the reply to their owner; larger
                                      ones stay on this peer until pulled (default 64KiB)
             --no-admission           start every call at once, without waiting for room in memory (for comparison)
             --metrics-port <port>    serve Prometheus metrics (/metrics) and the peer's state (/state.json)
             --metrics-host <addr>    where the metrics server listens (default 127.0.0.1)
             --page-port <port>       serve the mesh page, for browser tabs to join this peer (0: any port;
                                      built first if missing or stale)${SERVE_USAGE}
             --mesh-secret <secret>   a private mesh: only peers that prove this secret talk refmesh with
                                      this one (or set REFMESH_MESH_SECRET, which keeps it out of ps)
             --nat                    NAT traversal, for a peer on a home network or a public peer that
                                      helps them: AutoNAT, relay reservations when no listen address is
                                      public, WebRTC hole punching (through the --stun/--turn servers)
                                      to peers behind other NATs
             --stun-port <port>       answer STUN requests on this UDP port (a public peer; implies --nat)
             --json                   print one JSON line {peer, addrs} when ready
             --stop-on-stdin-end      also stop when stdin ends (for a parent that stops it by closing a pipe);
                                      otherwise it runs until SIGINT or SIGTERM, whatever stdin is
  status   print the mesh as one peer sees it: its peers, their functions and the names they publish
             --bootstrap <multiaddr>  the peer to ask (required)
             --timeout <seconds>      how long to wait for it (default 10)
             --mesh-secret <secret>   the mesh's secret, when it is private (or set REFMESH_MESH_SECRET)
             --json                   print JSON
  share <file>         put a file into the mesh, publish it under a name, and serve it until stopped
             --name <name>            the name others fetch it by (required)
             --listen, --bootstrap, --identity, --store-capacity, --spill-dir, --spill-capacity, --no-spill,
             --mesh-secret, --stop-on-stdin-end
                                      as for peer (a file larger than the store goes to disk as it is read)
             --json                   print one JSON line {peer, addrs, name, size} when it is published
  fetch <name> <out>   write out the file published under <name>, pulling from every peer that holds chunks
             --bootstrap <multiaddr>  a peer of the mesh to join through (required; repeatable)
             --timeout <seconds>      how long to wait to join, and then to find a peer that publishes <name>
                                      (default 15)
             --store-capacity <size>  memory for the object on its way (default as for peer; the rest spills)
             --mesh-secret <secret>   the mesh's secret, when it is private (or set REFMESH_MESH_SECRET)
  demo     start a local mesh of three peers and run the MapReduce example
             --maps <n> --reduces <n> --shard-bytes <size> --seed <n>
             --serve                  then keep the mesh up (until SIGINT or SIGTERM, to it or any of its
                                      peers, or its parent's exit) and serve the mesh page for browser tabs
                                      to join it (built first if missing or stale; npm start)
             --page-port <port>       the page's port with --serve (default 0: any free port)
             --mesh-secret <secret>   a private mesh (or set REFMESH_MESH_SECRET): the page asks tabs for it
             --listen <ip>            the address the peers listen on (default 127.0.0.1; 0.0.0.0: every
                                      interface); the page listens there too unless --page-host says otherwise
             --page-host, --announce <host>, --tls-cert, --tls-key, --stun, --turn   as for peer
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
  inlineThresholdBytes?: number
  admission: boolean
  secret?: string
  /** NAT traversal (--nat, --stun-port; ICE servers from --stun/--turn); undefined: off */
  nat?: { iceServers: IceServer[], stunPort?: number }
  json: boolean
  /** stop at the end of stdin, not only on SIGINT or SIGTERM */
  stopOnStdinEnd: boolean
  /** --page-host, --announce, --tls-cert/--tls-key, --stun/--turn (node/serve-flags.ts) */
  serve: ServeOptions
}

function parse (argv: string[], options: ParseArgsOptionsConfig): Record<string, string | boolean | Array<string | boolean> | undefined> {
  return parseWithPositionals(argv, options, 0).values
}

/** Flags and exactly `count` positional arguments, named in `what` for the message when they are missing. */
function parseWithPositionals (argv: string[], options: ParseArgsOptionsConfig, count: number, what = ''): { values: Record<string, string | boolean | Array<string | boolean> | undefined>, positionals: string[] } {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: count > 0 })
  } catch (err) {
    throw new UsageError(oneLine((err as Error).message))
  }
  if (count > 0 && parsed.positionals.length !== count) {
    throw new UsageError(parsed.positionals.length < count ? `${what} is missing` : `unexpected argument "${parsed.positionals[count]}"`)
  }
  return parsed
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
    'inline-threshold': { type: 'string' },
    'no-admission': { type: 'boolean', default: false },
    'mesh-secret': { type: 'string' },
    nat: { type: 'boolean', default: false },
    'stun-port': { type: 'string' },
    json: { type: 'boolean', default: false },
    'stop-on-stdin-end': { type: 'boolean', default: false },
    ...SERVE_FLAGS
  })
  let serve: ServeOptions
  try {
    serve = parseServeFlags(v)
  } catch (err) {
    throw err instanceof ServeFlagError ? new UsageError(err.message) : err
  }
  const secret = v['mesh-secret'] as string | undefined ?? process.env.REFMESH_MESH_SECRET
  if (secret !== undefined && secret.length === 0) throw new UsageError('--mesh-secret must not be empty')
  let stunPort: number | undefined
  if (v['stun-port'] !== undefined) {
    stunPort = Number(v['stun-port'])
    if (!Number.isInteger(stunPort) || stunPort < 1 || stunPort > 65535) throw new UsageError(`--stun-port must be a port number, not "${String(v['stun-port'])}"`)
  }
  const nat = v.nat === true || stunPort !== undefined ? { iceServers: serve.iceServers, stunPort } : undefined
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
  if (pagePort === undefined && (serve.pageHost !== undefined || (serve.iceServers.length > 0 && nat === undefined))) throw new UsageError('--page-host, --stun and --turn are for the mesh page, which needs --page-port (or --nat, for this peer\'s own hole punching)')
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
  for (const addr of v.listen as string[] ?? []) checkMultiaddr('--listen', addr)
  for (const addr of v.bootstrap as string[] ?? []) checkMultiaddr('--bootstrap', addr)
  for (const addr of serve.announce) checkMultiaddr('--announce', addr)
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
    inlineThresholdBytes: bytesOption('inline-threshold'),
    admission: v['no-admission'] !== true,
    secret,
    nat,
    json: v.json === true,
    stopOnStdinEnd: v['stop-on-stdin-end'] === true,
    serve
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
  // Stop requests are heard from the start (a start can take seconds): one that comes
  // while the peer starts gives the start a moment to end, then closes what it opened
  // (a service manager must not wait out a 15 s bootstrap).
  const closers: Array<() => Promise<unknown>> = []
  const closeAll = async (): Promise<void> => { await Promise.all(closers.splice(0).map(async close => await close())) }
  let starting: Promise<unknown> = Promise.resolve()
  let stopRequested = false
  const stopListening = serveUntilStopped(async () => {
    stopRequested = true
    await within(starting.catch(() => {}), SHUTDOWN_DEFAULTS.startGraceMs)
    await closeAll()
  }, { stdin: opts.stopOnStdinEnd })
  const start = async (): Promise<{ mesh: Mesh, metrics?: { url: string }, page?: PageServer }> => {
    const tls = await loadTls(opts.serve.tls)
    const mesh = await createMesh({
      ...extra,
      listen: opts.listen.length > 0 ? opts.listen : undefined,
      announce: opts.serve.announce,
      announceHost: opts.serve.announceHost,
      tls,
      bootstrap: opts.bootstrap,
      identityFile: opts.identity,
      store: { capacity: opts.storeCapacity, spillCapacity: opts.spillCapacity },
      spillDir: opts.spillDir,
      workerModules: opts.workerModules,
      workers: opts.workers,
      prefetch: opts.prefetch,
      swarm: opts.swarm,
      admission: opts.admission,
      inlineThresholdBytes: opts.inlineThresholdBytes,
      secret: opts.secret,
      nat: opts.nat
    })
    closers.push(async () => await mesh.stop())
    if (opts.module !== undefined) await loadModule(mesh, opts.module)
    const metrics = opts.metricsPort === undefined ? undefined : await startMetricsServer({ mesh, port: opts.metricsPort, host: opts.metricsHost })
    if (metrics !== undefined) closers.push(async () => await metrics.close())
    const page = opts.pagePort === undefined ? undefined : await servePage(mesh, opts.pagePort, { ...opts.serve, pageHost: opts.serve.pageHost ?? opts.metricsHost }, tls)
    if (page !== undefined) closers.push(async () => await page.close())
    return { mesh, metrics, page }
  }
  const startup = start()
  starting = startup
  let started
  try {
    started = await startup
  } catch (err) {
    stopListening()
    await closeAll().catch(() => {})
    throw err
  }
  if (stopRequested) return
  const { mesh, metrics, page } = started
  const addrs = mesh.libp2p.getMultiaddrs().map(String)
  if (opts.json) {
    process.stdout.write(JSON.stringify({ peer: mesh.peerId, addrs, metrics: metrics?.url, page: page?.url }) + '\n')
  } else {
    process.stdout.write(`refmesh peer ${mesh.peerId}\njoin with:\n${addrs.map(a => `  --bootstrap ${a}`).join('\n')}\n`)
    if (metrics !== undefined) process.stdout.write(`metrics: ${metrics.url}/metrics, state: ${metrics.url}/state.json\n`)
    if (page !== undefined) process.stdout.write(`mesh page: ${page.url}/ (open it in a browser and press Join)\n`)
    const note = page === undefined ? undefined : insecurePageNote(page.url)
    if (note !== undefined) process.stdout.write(`${note}\n`)
  }
}

/** The mesh page, handing tabs this peer's browser addresses (it must listen on WebSockets or WebRTC-direct). */
async function servePage (mesh: Mesh, port: number, serve: ServeOptions, tls: Awaited<ReturnType<typeof loadTls>>): Promise<PageServer> {
  const { ensurePageBuilt } = await import('./page-build.ts')
  await ensurePageBuilt()
  return await startPageServer({
    addrs: () => mesh.libp2p.getMultiaddrs().map(String),
    port,
    host: serve.pageHost,
    publicHost: publicHostOf(serve),
    tls,
    iceServers: serve.iceServers,
    private: mesh.stats().auth.private
  })
}

/**
 * `refmesh status`: each peer the given one knows, with its functions, store
 * and traffic, then the names published in the mesh with their sizes and publishers.
 */
async function runStatus (argv: string[]): Promise<void> {
  const v = parse(argv, {
    bootstrap: { type: 'string', multiple: true },
    timeout: { type: 'string' },
    'mesh-secret': { type: 'string' },
    json: { type: 'boolean', default: false }
  })
  const bootstrap = v.bootstrap as string[] | undefined
  if (bootstrap === undefined || bootstrap.length === 0) throw new UsageError('status needs --bootstrap <multiaddr of a peer>')
  checkMultiaddrs('--bootstrap', bootstrap)
  const timeoutMs = timeoutFlag(v.timeout, 10_000)
  const mesh = await createMesh({ bootstrap: bootstrap.slice(0, 1), bootstrapTimeoutMs: timeoutMs, secret: secretFlag(v['mesh-secret']) })
  try {
    const first = await mesh.connect(bootstrap[0], { timeoutMs })
    const seen = await mesh.peerStats(first, { timeoutMs })
    const all = await Promise.all([first, ...seen.peers.filter(p => p !== mesh.peerId && p !== first)].map(async p => {
      try { return await mesh.peerStats(p, { timeoutMs }) } catch (err) { return { peer: p, error: (err as Error).message } }
    }))
    if (v.json === true) {
      process.stdout.write(JSON.stringify(all, null, 2) + '\n')
      return
    }
    process.stdout.write(`mesh seen from ${first}: ${all.length} peer(s)\n`)
    const names = new Map<string, Array<{ peer: string, bytes?: number }>>()
    for (const s of all) {
      if ('error' in s) { process.stdout.write(`  ${s.peer}  unreachable: ${s.error}\n`); continue }
      process.stdout.write(`  ${s.peer}\n    functions: ${s.functions.join(', ') || '-'}\n    store: ${s.store.objects} objects, ${mib(s.store.bytes)} of ${mib(s.store.capacity)}\n    calls executed: ${s.calls.executed}, running: ${s.calls.running}\n    traffic: chunks in ${mib(s.traffic.chunkIn)}, out ${mib(s.traffic.chunkOut)}\n`)
      for (const [peer, r] of Object.entries(s.suspects ?? {})) {
        process.stdout.write(`    suspect ${peer}: ${r.badChunks} bad chunk(s), ${r.falseClaims} false claim(s), outvoted ${r.outvoted} time(s), ${r.refused} request(s) refused\n`)
      }
      // Peers older than the names field report none.
      for (const n of s.names ?? []) names.set(n.name, [...names.get(n.name) ?? [], { peer: s.peer, bytes: n.bytes }])
    }
    process.stdout.write(`published names: ${names.size === 0 ? 'none' : names.size}\n`)
    for (const [name, publishers] of [...names].sort(([a], [b]) => a.localeCompare(b))) {
      for (const p of publishers) process.stdout.write(`  ${name}  ${p.bytes === undefined ? 'size unknown' : `${p.bytes} bytes (${mib(p.bytes)})`}  published by ${p.peer}\n`)
    }
  } finally {
    await mesh.stop()
  }
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`

function checkMultiaddrs (flag: string, addrs: string[]): void {
  for (const addr of addrs) checkMultiaddr(flag, addr)
}

/** --mesh-secret, or REFMESH_MESH_SECRET (which keeps it out of ps), as for peer. */
function secretFlag (value: unknown): string | undefined {
  const secret = value as string | undefined ?? process.env.REFMESH_MESH_SECRET
  if (secret !== undefined && secret.length === 0) throw new UsageError('--mesh-secret must not be empty')
  return secret
}

/** --timeout <seconds>, in milliseconds. */
function timeoutFlag (value: unknown, defaultMs: number): number {
  if (value === undefined) return defaultMs
  const seconds = Number(value)
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) throw new UsageError(`--timeout must be a number of seconds from 0 to 86400, not "${String(value)}"`)
  return seconds * 1000
}

function bytesFlag (flag: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  try {
    return parseBytes(value as string)
  } catch (err) {
    throw new UsageError(`--${flag}: ${(err as Error).message}`)
  }
}

/**
 * Progress of a byte transfer on stderr: on a terminal one bar redrawn in
 * place; otherwise (a pipe, a log file) a plain line at each tenth, so a log
 * gets a dozen lines whatever the size.
 */
export function byteProgress (label: string, out: NodeJS.WriteStream = process.stderr): { update: (bytes: number, total: number) => void, end: () => void } {
  const tty = out.isTTY === true
  const started = performance.now()
  let lastDraw = 0
  let lastTenth = -1
  let drawn = false
  const update = (bytes: number, total: number): void => {
    const fraction = total === 0 ? 1 : Math.min(1, bytes / total)
    const percent = Math.floor(fraction * 100)
    if (tty) {
      const now = performance.now()
      // Chunks arrive by the hundred per second; a redraw every 100 ms is plenty.
      if (now - lastDraw < 100 && fraction < 1) return
      lastDraw = now
      const width = 30
      const filled = Math.round(width * fraction)
      const rate = bytes / 2 ** 20 / Math.max((now - started) / 1000, 0.001)
      out.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(percent).padStart(3)}%  ${mib(bytes)} of ${mib(total)}  ${rate.toFixed(1)} MiB/s\x1b[K`)
      drawn = true
    } else {
      const tenth = Math.floor(percent / 10)
      if (tenth === lastTenth) return
      lastTenth = tenth
      out.write(`${label}: ${tenth * 10}% (${mib(bytes)} of ${mib(total)})\n`)
    }
  }
  return { update, end: () => { if (tty && drawn) out.write('\n') } }
}

export interface ShareCommandOptions {
  file: string
  name: string
  listen: string[]
  bootstrap: string[]
  identity?: string
  storeCapacity?: number
  spillDir?: string | false
  spillCapacity?: number
  secret?: string
  json: boolean
  stopOnStdinEnd: boolean
}

export function parseShareArgs (argv: string[]): ShareCommandOptions {
  const { values: v, positionals } = parseWithPositionals(argv, {
    name: { type: 'string' },
    listen: { type: 'string', multiple: true },
    bootstrap: { type: 'string', multiple: true },
    identity: { type: 'string' },
    'store-capacity': { type: 'string' },
    'spill-dir': { type: 'string' },
    'spill-capacity': { type: 'string' },
    'no-spill': { type: 'boolean', default: false },
    'mesh-secret': { type: 'string' },
    json: { type: 'boolean', default: false },
    'stop-on-stdin-end': { type: 'boolean', default: false }
  }, 1, 'share needs a file: refmesh share <file> --name <name>')
  const name = v.name as string | undefined
  if (name === undefined || name.length === 0) throw new UsageError('share needs --name <name>, the name others fetch the file by')
  if (name.length > 256) throw new UsageError('--name must be at most 256 characters')
  if (v['no-spill'] === true && v['spill-dir'] !== undefined) throw new UsageError('--no-spill and --spill-dir contradict each other')
  const listen = v.listen as string[] ?? []
  const bootstrap = v.bootstrap as string[] ?? []
  checkMultiaddrs('--listen', listen)
  checkMultiaddrs('--bootstrap', bootstrap)
  return {
    file: positionals[0],
    name,
    listen,
    bootstrap,
    identity: v.identity as string | undefined,
    storeCapacity: bytesFlag('store-capacity', v['store-capacity']),
    spillDir: v['no-spill'] === true ? false : v['spill-dir'] as string | undefined,
    spillCapacity: bytesFlag('spill-capacity', v['spill-capacity']),
    secret: secretFlag(v['mesh-secret']),
    json: v.json === true,
    stopOnStdinEnd: v['stop-on-stdin-end'] === true
  }
}

/** `refmesh share`: reads the file into the mesh chunk by chunk, publishes it, and serves it until stopped. */
export async function runShare (argv: string[]): Promise<void> {
  const opts = parseShareArgs(argv)
  let size: number
  try {
    const st = await stat(opts.file)
    if (!st.isFile()) throw new Error('not a regular file')
    size = st.size
  } catch (err) {
    throw new Error(`share: cannot read "${opts.file}": ${(err as Error).message}`)
  }
  // Only now: re-executing first would only delay the message for a bad flag or file.
  execWithMallocTuning()
  const interrupted = new AbortController()
  let stopping = false
  let mesh: Mesh | undefined
  let starting: Promise<Mesh> | undefined
  // Heard from the start, as for peer: a stop while the mesh starts waits for it, then stops it.
  const stopListening = serveUntilStopped(async () => {
    stopping = true
    interrupted.abort(new Error('interrupted'))
    const started = mesh ?? await within(starting?.catch(() => undefined) ?? Promise.resolve(undefined), SHUTDOWN_DEFAULTS.startGraceMs)
    started?.unpublish(opts.name)
    await started?.stop()
  }, { stdin: opts.stopOnStdinEnd })
  starting = createMesh({
    listen: opts.listen.length > 0 ? opts.listen : undefined,
    bootstrap: opts.bootstrap,
    identityFile: opts.identity,
    store: { capacity: opts.storeCapacity, spillCapacity: opts.spillCapacity },
    spillDir: opts.spillDir,
    secret: opts.secret
  })
  try {
    mesh = await starting
  } catch (err) {
    stopListening()
    throw err
  }
  if (stopping) return
  const started = performance.now()
  const progress = byteProgress(`reading ${basename(opts.file)}`)
  let read = 0
  const file = createReadStream(opts.file, { highWaterMark: 1 << 20 })
  async function * counted (): AsyncGenerator<Uint8Array> {
    for await (const piece of file as AsyncIterable<Buffer>) {
      read += piece.byteLength
      progress.update(read, size)
      yield piece
    }
  }
  let ref
  try {
    ref = await mesh.putStream(counted(), size, { signal: interrupted.signal })
  } catch (err) {
    file.destroy()
    // Stopping already: the handler above exits once the mesh has stopped.
    if (interrupted.signal.aborted) return
    stopListening()
    await mesh.stop()
    throw new Error(`share: reading "${opts.file}" into the mesh failed: ${(err as Error).message}`)
  } finally {
    progress.end()
  }
  if (stopping) return
  mesh.publish(opts.name, ref)
  // publish holds its own handle, for as long as this peer publishes the name.
  ref.release()
  const seconds = (performance.now() - started) / 1000
  const addrs = mesh.libp2p.getMultiaddrs().map(String)
  if (opts.json) {
    process.stdout.write(JSON.stringify({ peer: mesh.peerId, addrs, name: opts.name, size }) + '\n')
  } else {
    process.stdout.write(`shared "${opts.name}": ${size} bytes (${mib(size)}) from ${opts.file}, read in ${seconds.toFixed(1)} s\n`)
    // fetch runs a TCP and WebSockets peer: a WebRTC-direct address is for browser tabs.
    const dialable = addrs.find(a => !a.includes('/webrtc')) ?? addrs[0]
    process.stdout.write(`refmesh peer ${mesh.peerId}\naddresses:\n${addrs.map(a => `  ${a}`).join('\n')}\n`)
    process.stdout.write(`fetch it with:\n  refmesh fetch ${opts.name} <out> --bootstrap ${dialable}\n`)
    process.stdout.write('serving until SIGINT (Ctrl-C) or SIGTERM\n')
  }
}

export interface FetchCommandOptions {
  name: string
  out: string
  bootstrap: string[]
  timeoutMs: number
  storeCapacity?: number
  secret?: string
}

export function parseFetchArgs (argv: string[]): FetchCommandOptions {
  const { values: v, positionals } = parseWithPositionals(argv, {
    bootstrap: { type: 'string', multiple: true },
    timeout: { type: 'string' },
    'store-capacity': { type: 'string' },
    'mesh-secret': { type: 'string' }
  }, 2, 'fetch needs a name and an output file: refmesh fetch <name> <out> --bootstrap <multiaddr>')
  const bootstrap = v.bootstrap as string[] ?? []
  if (bootstrap.length === 0) throw new UsageError('fetch needs --bootstrap <multiaddr of a peer in the mesh>')
  checkMultiaddrs('--bootstrap', bootstrap)
  const timeoutMs = timeoutFlag(v.timeout, 15_000)
  return { name: positionals[0], out: positionals[1], bootstrap, timeoutMs, storeCapacity: bytesFlag('store-capacity', v['store-capacity']), secret: secretFlag(v['mesh-secret']) }
}

/**
 * `refmesh fetch`: looks the name up, pulls the object (from every holder at
 * once), and writes it to a temporary file beside <out>, renamed into place
 * only once every byte is there; a failed or interrupted fetch leaves no <out>.
 */
export async function runFetch (argv: string[]): Promise<void> {
  const opts = parseFetchArgs(argv)
  const out = resolve(opts.out)
  const partial = join(dirname(out), `.${basename(out)}.refmesh-part`)
  const interrupted = new AbortController()
  const stop = (): void => { interrupted.abort(new Error('interrupted')) }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  let mesh: Mesh | undefined
  let file: Awaited<ReturnType<typeof open>> | undefined
  try {
    mesh = await createMesh({ bootstrap: opts.bootstrap, bootstrapTimeoutMs: opts.timeoutMs, store: { capacity: opts.storeCapacity }, secret: opts.secret })
    const started = performance.now()
    let ref
    try {
      ref = await mesh.lookup<Uint8Array>(opts.name, { timeoutMs: opts.timeoutMs, signal: interrupted.signal })
    } catch (err) {
      if ((err as Error).name === 'NameNotFoundError') throw new Error(`fetch: no peer in the mesh publishes "${opts.name}" (looked for ${opts.timeoutMs / 1000} s through ${opts.bootstrap.join(', ')})`)
      throw err
    }
    const publisher = ref.owner
    const { trafficByPeer: before, transfer: { duplicateChunks: duplicatesBefore } } = mesh.stats()
    const progress = byteProgress(`fetching ${opts.name}`)
    let total = -1
    let written = 0
    try {
      file = await open(partial, 'w')
      for await (const chunk of mesh.getStream(ref, { signal: interrupted.signal, onProgress: (bytes, of) => { total = of; progress.update(bytes, of) } })) {
        await file.write(chunk)
        written += chunk.byteLength
      }
      await file.close()
      file = undefined
    } catch (err) {
      throw new Error(`fetch: "${opts.name}" could not be fetched: ${(err as Error).message}`)
    } finally {
      progress.end()
      ref.release()
    }
    if (written !== total) throw new Error(`fetch: got ${written} bytes of "${opts.name}", but it has ${total}`)
    await rename(partial, out)
    const seconds = (performance.now() - started) / 1000
    const from = Object.entries(mesh.stats().trafficByPeer)
      .map(([peer, t]) => ({ peer, bytes: t.chunkIn - (before[peer]?.chunkIn ?? 0) }))
      .filter(p => p.bytes > 0)
      .sort((a, b) => b.bytes - a.bytes)
    process.stdout.write(`fetched "${opts.name}": ${written} bytes (${mib(written)}) to ${opts.out} in ${seconds.toFixed(1)} s\n`)
    if (from.length > 0) process.stdout.write(chunkSources(from, publisher, mesh.stats().transfer.duplicateChunks - duplicatesBefore))
  } catch (err) {
    await file?.close().catch(() => {})
    await unlink(partial).catch(() => {})
    if (interrupted.signal.aborted) throw new Error(`fetch of "${opts.name}" interrupted`)
    throw err
  } finally {
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
    await mesh?.stop()
  }
}

/**
 * Where a fetch's chunks came from, by peer, counted on the wire (frames
 * included). Near the end a pull asks for the last chunks from more than one
 * holder, so some arrive twice: the table counts both copies and says so,
 * rather than let a sum above the file's size puzzle a reader.
 */
export function chunkSources (from: Array<{ peer: string, bytes: number }>, publisher: string, duplicateChunks: number): string {
  const received = from.reduce((n, p) => n + p.bytes, 0)
  const rows = from.map(p => `  ${p.peer}  ${mib(p.bytes).padStart(10)}${p.peer === publisher ? '  (the publisher)' : ''}\n`)
  const twice = duplicateChunks === 0
    ? ''
    : `${duplicateChunks} chunk(s) came twice, and count twice above: the last chunks are asked of a second peer as well, to finish sooner\n`
  return `chunks received from ${from.length} peer(s), ${mib(received)} on the wire:\n${rows.join('')}${twice}`
}

/** The part of USAGE about one command, for `refmesh <command> --help`. */
export function commandUsage (command: string): string | undefined {
  const lines = USAGE.split('\n')
  const first = lines.findIndex(l => l.startsWith(`  ${command} `))
  if (first < 0) return undefined
  const next = lines.findIndex((l, i) => i > first && /^ {2}\S/.test(l))
  return `usage: refmesh ${command} ...\n\n${lines.slice(first, next < 0 ? undefined : next).join('\n').trimEnd()}\n`
}

const COMMANDS = ['peer', 'status', 'share', 'fetch', 'demo']

export async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command !== undefined && COMMANDS.includes(command) && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(commandUsage(command) ?? USAGE)
    return 0
  }
  try {
    switch (command) {
      case 'peer':
        // Only now: re-executing first would only delay the message for a bad flag.
        parsePeerArgs(rest)
        execWithMallocTuning()
        await runPeer(rest)
        return -1
      case 'status': await runStatus(rest); return 0
      case 'share': await runShare(rest); return -1
      case 'fetch': await runFetch(rest); return 0
      case 'demo': {
        const { runDemo } = await import('../examples/demo.ts')
        await runDemo(rest)
        return 0
      }
      case undefined: case '-h': case '--help': case 'help':
        process.stdout.write(USAGE)
        return command === undefined ? 2 : 0
      default:
        throw new UsageError(`unknown command "${command}"; the commands are ${COMMANDS.join(', ')} (refmesh --help)`)
    }
  } catch (err) {
    // By name as well: a UsageError class loaded twice (the demo imports this module's helpers) is still one.
    if (err instanceof Error && err.name === 'UsageError') {
      const help = command !== undefined && COMMANDS.includes(command) ? `refmesh ${command} --help` : 'refmesh --help'
      process.stderr.write(`refmesh: ${oneLine(err.message)} (${help} lists the options)\n`)
      return 2
    }
    const secret = rest.includes('--mesh-secret') || process.env.REFMESH_MESH_SECRET !== undefined
    process.stderr.write(describeError(err, secret).split('\n').map(line => line.startsWith('    at ') ? line : `refmesh: ${line}`).join('\n') + '\n')
    return 1
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2))
  if (code >= 0) process.exit(code)
}
