/**
 * `refmesh demo` (and `npm start`): a local mesh of three Node peer processes
 * runs the MapReduce word count of examples/mapreduce.ts, with a progress bar,
 * checks the answer against a count in this process, and shows how many bytes
 * moved between which peers.
 *
 *   refmesh demo [--maps N] [--reduces N] [--shard-bytes SIZE] [--seed N] [--serve [--page-port N]] [--mesh-secret S]
 *                [--listen IP] [--page-host IP] [--announce HOST] [--tls-cert FILE --tls-key FILE] [--stun URL] [--turn URL ...]
 *
 * With --serve (`npm start`) the peers also listen where browsers reach them
 * (WebSockets, WebRTC-direct), the first serves the mesh page (built first if
 * missing or stale), and the mesh stays up after the run until Ctrl-C, so tabs
 * can join it, watch it and run the word count themselves. Without it the demo
 * exits after its check. --listen (an IP address of this machine, or 0.0.0.0)
 * and --page-host open it to other machines, whose tabs need https
 * (--tls-cert/--tls-key; node/serve-flags.ts has the rest).
 *
 * However it is stopped, it leaves nothing running: SIGINT or SIGTERM to the
 * demo, or to any of its peers (a peer that exits ends the demo), or its
 * parent's exit (npm passes a signal only to its script's shell, which exits
 * and leaves the demo to pid 1) stops every peer and exits 0. Its peers stop
 * at the end of their stdin, a pipe from the demo, so they do not outlive it
 * even when it is killed with SIGKILL.
 */
import { parseArgs } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createMesh } from '../node/index.ts'
import type { Mesh, MeshStats } from '../node/index.ts'
import { parseBytes } from '../core/constants.ts'
import { spawnPeer } from '../node/local-cluster.ts'
import { ensurePageBuilt } from '../node/page-build.ts'
import { UsageError } from '../node/cli-errors.ts'
import { onStopRequest } from '../node/shutdown.ts'
import type { PeerProcess } from '../node/local-cluster.ts'
import { runMapReduce, wordCountLocal } from './mapreduce.ts'
import type { MapReduceOptions, Stage } from './mapreduce.ts'
import { SERVE_FLAGS, ServeFlagError, insecurePageNote, parseServeFlags } from '../node/serve-flags.ts'
import type { ServeOptions } from '../node/serve-flags.ts'

const MODULE = fileURLToPath(new URL('./mapreduce.ts', import.meta.url))
const PEERS = 3
/**
 * A peer process is up in 1-2 s on a quiet machine; two starting at once on a
 * 2-core machine at load 25 took 18-22 s (measured), past the 20 s this was.
 */
const JOIN_TIMEOUT_MS = 45_000
/** where the peers of a served mesh listen besides TCP: tabs reach Node peers over WebSockets or WebRTC-direct only */
const browserListen = (ip: string): string[] => [`/ip4/${ip}/tcp/0/ws`, `/ip4/${ip}/udp/0/webrtc-direct`]
const DRIVER_LISTEN = ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']

// From node/cli-errors.ts, not node/cli.ts: the CLI imports this module while its
// own top-level await is still pending, so importing it back would deadlock.
export { UsageError }

export interface DemoOptions {
  maps: number
  reduces: number
  shardBytes: number
  seed: number
  /** serve the mesh page and keep the mesh up after the run, until Ctrl-C */
  serve: boolean
  /** the page's port with `serve` (0: any free port) */
  pagePort: number
  /** a private mesh (or REFMESH_MESH_SECRET): the page asks a tab for it before joining */
  secret?: string
  /** the IPv4 address the peers listen on (default 127.0.0.1; 0.0.0.0: every interface) */
  listenIp: string
  /** --page-host, --announce (a host only), --tls-cert/--tls-key, --stun/--turn, as for refmesh peer */
  reach: ServeOptions
}

/** Parses the demo's flags; a bad flag is a UsageError that names it. */
export function parseDemoArgs (argv: string[]): DemoOptions {
  let values
  try {
    values = parseArgs({
      args: argv,
      options: {
        maps: { type: 'string', default: '12' },
        reduces: { type: 'string', default: '4' },
        'shard-bytes': { type: 'string', default: '2MiB' },
        seed: { type: 'string', default: '2026' },
        serve: { type: 'boolean', default: false },
        'page-port': { type: 'string' },
        'mesh-secret': { type: 'string' },
        listen: { type: 'string' },
        ...SERVE_FLAGS
      },
      strict: true,
      allowPositionals: false
    }).values
  } catch (err) {
    throw new UsageError(`demo: ${(err as Error).message}`)
  }
  const whole = (name: string, v: string, min: number, max: number): number => {
    const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`demo: --${name} must be a whole number from ${min} to ${max}, not "${v}"`)
    return n
  }
  let shardBytes: number
  try {
    shardBytes = parseBytes(values['shard-bytes'])
  } catch (err) {
    throw new UsageError(`demo: --shard-bytes: ${(err as Error).message}`)
  }
  if (shardBytes < 1024 || shardBytes > 64 * 2 ** 20) throw new UsageError(`demo: --shard-bytes must be from 1KiB to 64MiB, not "${values['shard-bytes']}"`)
  if (values['page-port'] !== undefined && values.serve !== true) throw new UsageError('demo: --page-port serves the page, which needs --serve')
  let serve: ServeOptions
  try {
    serve = parseServeFlags(values)
  } catch (err) {
    throw err instanceof ServeFlagError ? new UsageError(`demo: ${err.message}`) : err
  }
  if (serve.announce.length > 0) throw new UsageError('demo: --announce takes a host name or IP address here (the demo\'s peers take ports as they start); for fixed ports run refmesh peer')
  const listenIp = values.listen ?? '127.0.0.1'
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(listenIp)) throw new UsageError(`demo: --listen takes an IPv4 address of this machine (or 0.0.0.0), not "${listenIp}"`)
  if ((serve.pageHost !== undefined || serve.tls !== undefined || serve.iceServers.length > 0) && values.serve !== true) throw new UsageError('demo: --page-host, --tls-cert, --stun and --turn are for the page, which needs --serve')
  const options = {
    maps: whole('maps', values.maps, 1, 1000),
    reduces: whole('reduces', values.reduces, 1, 256),
    shardBytes,
    seed: whole('seed', values.seed, 0, 2 ** 32 - 1),
    serve: values.serve === true,
    pagePort: whole('page-port', values['page-port'] ?? '0', 0, 65535),
    secret: values['mesh-secret'] ?? process.env.REFMESH_MESH_SECRET,
    listenIp,
    // The page is where the peers are, unless told otherwise.
    reach: { ...serve, pageHost: serve.pageHost ?? listenIp }
  }
  if (options.secret !== undefined && options.secret.length === 0) throw new UsageError('demo: --mesh-secret must not be empty')
  if (options.maps * shardBytes > 2 ** 30) throw new UsageError(`demo: --maps x --shard-bytes is ${mib(options.maps * shardBytes)}; keep the corpus under 1 GiB`)
  return options
}

// ------------------------------------------------------------------ output

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(2)} MiB`
const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`
/** bytes, in the unit that reads best */
const size = (n: number): string => n >= 2 ** 20 ? mib(n) : n >= 1024 ? kib(n) : `${n} B`
const short = (peer: string): string => '…' + peer.slice(-6)
const write = (s: string): void => { process.stdout.write(s) }

/**
 * A progress bar: one line redrawn in place on a terminal; on a pipe or a
 * file, a plain line at the start, then at most one a second, and at the end.
 */
function progressBar (): (stage: Stage, done: number, total: number) => void {
  const tty = process.stdout.isTTY === true
  const width = 30
  let stageStarted = performance.now()
  let lastLine = 0
  return (stage, done, total) => {
    const now = performance.now()
    if (done === 0) stageStarted = now
    const filled = Math.round(width * done / Math.max(total, 1))
    const line = `${stage.padEnd(6)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}  ${((now - stageStarted) / 1000).toFixed(1)} s`
    if (tty) {
      write(`\r${line}\x1b[K${done === total ? '\n' : ''}`)
    } else if (done === 0 || done === total || now - lastLine >= 1000) {
      write(`${line}\n`)
      lastLine = now
    }
  }
}

type Traffic = MeshStats['traffic']
const ZERO: Traffic = { controlIn: 0, controlOut: 0, chunkIn: 0, chunkOut: 0 }
const minus = (a: Traffic, b: Traffic | undefined): Traffic => ({
  controlIn: a.controlIn - (b?.controlIn ?? 0),
  controlOut: a.controlOut - (b?.controlOut ?? 0),
  chunkIn: a.chunkIn - (b?.chunkIn ?? 0),
  chunkOut: a.chunkOut - (b?.chunkOut ?? 0)
})
const plus = (a: Traffic, b: Traffic): Traffic => ({
  controlIn: a.controlIn + b.controlIn, controlOut: a.controlOut + b.controlOut, chunkIn: a.chunkIn + b.chunkIn, chunkOut: a.chunkOut + b.chunkOut
})

/**
 * Every mesh's stats (driver first). The driver's own are taken after the
 * peers' replies at the start of the run and before the requests at its end,
 * so its counts leave out the stats traffic of this table.
 */
async function trafficSnapshot (driver: Mesh, peers: PeerProcess[], when: 'before' | 'after'): Promise<MeshStats[]> {
  const own = when === 'after' ? driver.stats() : undefined
  const theirs = await Promise.all(peers.map(async p => await driver.peerStats(p.peer, { timeoutMs: 10_000 })))
  return [own ?? driver.stats(), ...theirs]
}

/** The traffic of the run (after minus before), as a table: each mesh's bytes with the driver and with the other peers. */
function printTraffic (before: MeshStats[], after: MeshStats[], driver: string, corpusBytes: number): void {
  const col = (s: string, n = 12): string => s.padStart(n)
  write(`\nbytes moved during the run, as each process counted them:\n`)
  write(`  ${'process'.padEnd(18)}${col('calls run', 10)}${col('chunks in')}${col('chunks out')}${col('control in')}${col('control out')}\n`)
  let peerToPeer = ZERO
  after.forEach((s, i) => {
    const prior = before[i]
    let withDriver = ZERO
    let withPeers = ZERO
    for (const [remote, t] of Object.entries(s.trafficByPeer)) {
      const delta = minus(t, prior.trafficByPeer[remote])
      if (remote === driver) withDriver = plus(withDriver, delta)
      else withPeers = plus(withPeers, delta)
    }
    const t = plus(withDriver, withPeers)
    const calls = s.calls.executed - prior.calls.executed
    const name = i === 0 ? `driver ${short(s.peer)}` : `peer   ${short(s.peer)}`
    write(`  ${name.padEnd(18)}${col(i === 0 ? '-' : String(calls), 10)}${col(size(t.chunkIn))}${col(size(t.chunkOut))}${col(size(t.controlIn))}${col(size(t.controlOut))}\n`)
    if (i > 0) peerToPeer = plus(peerToPeer, withPeers)
  })
  const d = minus(after[0].traffic, before[0].traffic)
  const copies = d.chunkOut / Math.max(corpusBytes, 1)
  const why = Math.abs(copies - 1) < 0.01
    ? 'each shard pulled once, by the peer that mapped it'
    : d.chunkOut === 0
      ? 'shards under the 64 KiB inline threshold travel in control messages'
      : `${copies.toFixed(2)}x the corpus: some shard went to more than one peer`
  write(`\n  driver: sent ${size(d.chunkOut)} of chunks for a ${size(corpusBytes)} corpus (${why}),\n`)
  write(`          received ${size(d.chunkIn)} of chunks, and moved only ${size(d.controlIn + d.controlOut)} of control messages (calls, Ref descriptors, final counts).\n`)
  write(`  peers:  ${size(peerToPeer.chunkIn + peerToPeer.controlIn)} of partitions went from mappers to reducers directly, not through the driver.\n`)
}

// ------------------------------------------------------------------ the demo

export async function runDemo (argv: string[]): Promise<void> {
  const options: DemoOptions = parseDemoArgs(argv)

  // A stop request aborts whatever is under way; the finally below then
  // stops the driver and every peer. A second signal kills the peers at once.
  const interrupt = new AbortController()
  const peers: PeerProcess[] = []
  /** peers still starting: waited for in finally, so none is left behind */
  const starting: Array<Promise<unknown>> = []
  let stopping = false
  /** a peer that crashed: the demo fails with its message once everything is stopped */
  let failure: Error | undefined
  const requestStop = (reason: string): void => {
    if (interrupt.signal.aborted) return
    process.stderr.write(`\n${reason}: stopping the peers...\n`)
    interrupt.abort(new Error(`stopped: ${reason}`))
  }
  /** every peer process, from its spawn: a second signal kills those still starting too */
  const children = new Set<ChildProcess>()
  const stopListening = onStopRequest(requestStop, { parent: true, onForce: () => { for (const child of children) child.kill('SIGKILL') } })
  /** A peer that exits before the demo stops it ends the demo: a signal to it is a signal to the demo. */
  const watch = (p: PeerProcess): void => {
    p.child.once('exit', (code, sig) => {
      if (stopping) return
      const how = sig !== null ? `by ${sig}` : `with status ${code}`
      if (code === 0 || sig === 'SIGTERM' || sig === 'SIGINT') requestStop(`peer ${short(p.peer)} stopped ${how}`)
      else { failure = new Error(`peer ${p.peer} exited ${how}: ${p.stderr().trim().split('\n').pop() ?? ''}`); requestStop(`peer ${short(p.peer)} exited ${how}`) }
    })
  }
  const signal = interrupt.signal
  /** `promise`, unless Ctrl-C comes first */
  const orInterrupt = async <T>(promise: Promise<T>): Promise<T> => await new Promise<T>((resolve, reject) => {
    if (signal.aborted) { reject(signal.reason as Error); return }
    const onAbort = (): void => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })

  let driver: Mesh | undefined
  let served = false
  const started = performance.now()
  try {
    if (options.serve) {
      // Here rather than in the peer, whose start would wait on it: a first build takes a while.
      write('building the mesh page (when missing or older than its sources)...\n')
      await orInterrupt(ensurePageBuilt())
    }
    write(`starting ${PEERS} peer processes (refmesh peer --module examples/mapreduce.ts)...\n`)
    // Peers 2 and 3 join through peer 1, and meet each other by peer exchange.
    // Each is recorded the moment it is up, so a failure or Ctrl-C stops it too.
    const { reach: serve } = options
    const listen = options.serve ? browserListen(options.listenIp).flatMap(addr => ['--listen', addr]) : []
    // Every peer: tabs reach each of them, over wss when there is a certificate.
    const reachFlags = [
      ...serve.announceHost === undefined ? [] : ['--announce', serve.announceHost],
      ...serve.tls === undefined ? [] : ['--tls-cert', serve.tls.certFile, '--tls-key', serve.tls.keyFile]
    ]
    // The first peer: the page.
    const page = [
      '--page-port', String(options.pagePort), '--page-host', serve.pageHost ?? '127.0.0.1',
      ...serve.iceServers.flatMap(iceServerFlags)
    ]
    const spawn = async (bootstrap: string[], args: string[] = []): Promise<PeerProcess> => {
      const env = options.secret === undefined ? undefined : { REFMESH_MESH_SECRET: options.secret }
      const spawned = spawnPeer({ module: MODULE, bootstrap, timeoutMs: JOIN_TIMEOUT_MS, listen: `/ip4/${options.listenIp}/tcp/0`, args: [...listen, ...reachFlags, ...args], env, onSpawn: child => children.add(child) })
      starting.push(spawned.catch(() => {}))
      const p = await spawned
      peers.push(p)
      watch(p)
      return p
    }
    const first = await orInterrupt(spawn([], options.serve ? page : []))
    if (first.page !== undefined) write(`mesh page: ${first.page}/  (open it in a browser${options.secret !== undefined ? ', enter the mesh secret' : ''} and press Join; the mesh stays up after the run)\n`)
    const note = first.page === undefined ? undefined : insecurePageNote(first.page)
    if (note !== undefined) write(`${note}\n`)
    const rest = await orInterrupt(Promise.allSettled([spawn(first.addrs), spawn(first.addrs)]))
    for (const r of rest) if (r.status === 'rejected') throw r.reason

    // The driver: an in-process peer that offers nothing; it only calls.
    // TCP for the peers, WebSockets for tabs; not WebRTC-direct, whose native
    // module can abort this process as it exits.
    driver = await orInterrupt(createMesh({ bootstrap: peers.map(p => p.addrs[0]), listen: DRIVER_LISTEN, secret: options.secret }))
    const joined = AbortSignal.any([signal, AbortSignal.timeout(JOIN_TIMEOUT_MS)])
    for (const p of peers) {
      await driver.waitForPeer(p.peer, { signal: joined }).catch((err: Error) => {
        throw new Error(`peer ${p.peer} did not answer the driver within ${JOIN_TIMEOUT_MS / 1000} s: ${err.message}`)
      })
    }
    await orInterrupt(waitForPeersToMeet(driver, peers, joined))
    write(`driver ${short(driver.peerId)} joined ${peers.map(p => `${short(p.peer)} ${p.addrs[0].replace(/\/p2p\/.*/, '')}`).join(', ')}  (${((performance.now() - started) / 1000).toFixed(1)} s)\n`)

    const run: MapReduceOptions = { ...options, signal, onProgress: progressBar() }
    write(`\nword count: ${run.maps} maps over ${mib(run.shardBytes)} shards (${mib(run.maps * run.shardBytes)}), ${run.reduces} reduces\n`)
    const before = await orInterrupt(trafficSnapshot(driver, peers, 'before'))
    const result = await runMapReduce(driver, run)
    const after = await orInterrupt(trafficSnapshot(driver, peers, 'after'))

    write(`\ntop words (${result.totalWords.toLocaleString('en-US')} words, ${result.distinctWords.toLocaleString('en-US')} distinct, ${mib(result.corpusBytes)} of text):\n`)
    const widest = Math.max(...result.top.map(([w]) => w.length))
    result.top.forEach(([word, n], i) => {
      write(`  ${String(i + 1).padStart(2)}. ${word.padEnd(widest)}  ${n.toLocaleString('en-US').padStart(10)}  ${(100 * n / result.totalWords).toFixed(2).padStart(5)}%\n`)
    })
    write(`  total: ${result.totalWords.toLocaleString('en-US')} words in ${(result.elapsedMs / 1000).toFixed(2)} s (maps done at ${(result.mapMs / 1000).toFixed(2)} s, including making the corpus)\n`)

    printTraffic(before, after, driver.peerId, result.corpusBytes)

    const localStarted = performance.now()
    const expected = wordCountLocal(options)
    const localMs = performance.now() - localStarted
    const mismatches = [
      JSON.stringify(result.top) !== JSON.stringify(expected.top) ? `top 10 ${JSON.stringify(result.top)} vs ${JSON.stringify(expected.top)}` : '',
      result.totalWords !== expected.totalWords ? `total ${result.totalWords} vs ${expected.totalWords}` : '',
      result.distinctWords !== expected.distinctWords ? `distinct ${result.distinctWords} vs ${expected.distinctWords}` : '',
      result.digest !== expected.digest ? `table digest ${result.digest} vs ${expected.digest}` : ''
    ].filter(s => s !== '')
    if (mismatches.length > 0) throw new Error(`the mesh's answer differs from the local count: ${mismatches.join('; ')}`)
    write(`\nresult matches a local single-process count (every word's count, digest ${result.digest}; ${(localMs / 1000).toFixed(2)} s in this process).\n`)

    if (first.page !== undefined) {
      // The driver offers nothing and has nothing left to do; the peers stay for the tabs.
      await driver.stop()
      driver = undefined
      served = true
      write(`\nthe mesh stays up: open ${first.page}/ in a browser, press Join, then Run MapReduce. Ctrl-C (or SIGTERM) stops it.\n`)
      await new Promise(resolve => signal.addEventListener('abort', resolve, { once: true }))
    }
  } catch (err) {
    if (!signal.aborted) throw err
  } finally {
    stopping = true
    await driver?.stop().catch((err: Error) => { process.stderr.write(`stopping the driver: ${err.message}\n`) })
    // Peers still starting get SIGTERM: one still loading its modules dies of it at once,
    // one further on stops as soon as its start allows.
    for (const child of children) if (!peers.some(p => p.child === child)) child.kill('SIGTERM')
    await Promise.allSettled(starting)
    await Promise.allSettled(peers.map(async p => await p.stop()))
    stopListening()
  }
  if (failure !== undefined) throw failure
  if (signal.aborted) write(served ? 'every peer is stopped.\n' : 'stopped before the end of the run; every peer is stopped.\n')
}

/** --stun and --turn again, for the peer that serves the page */
function iceServerFlags (server: ServeOptions['iceServers'][number]): string[] {
  const urls = typeof server.urls === 'string' ? [server.urls] : server.urls
  if (server.username === undefined) return urls.flatMap(u => ['--stun', u])
  return [...urls.flatMap(u => ['--turn', u]), '--turn-username', server.username, '--turn-credential', server.credential ?? '']
}

/** Waits until each peer process knows the other two (reducers fetch partitions straight from mappers). */
async function waitForPeersToMeet (driver: Mesh, peers: PeerProcess[], signal: AbortSignal): Promise<void> {
  for (;;) {
    const views = await Promise.all(peers.map(async p => new Set((await driver.peerStats(p.peer, { signal })).peers)))
    if (views.every((known, i) => peers.every((q, j) => i === j || known.has(q.peer)))) return
    signal.throwIfAborted()
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
