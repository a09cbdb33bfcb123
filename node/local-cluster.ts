/** Local peer processes (for the demo, tests and benchmarks): spawn, wait until ready, kill, clean up. */
import { createWriteStream } from 'node:fs'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { MALLOC_ENV } from './memory.ts'

const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url))

export interface PeerProcess {
  peer: string
  addrs: string[]
  /** the metrics server's URL, when started with --metrics-port */
  metrics?: string
  /** the mesh page's URL, when started with --page-port */
  page?: string
  child: ChildProcess
  /** stderr so far, for failure messages */
  stderr: () => string
  stop: () => Promise<void>
  kill: (signal?: NodeJS.Signals) => Promise<void>
}

export interface SpawnPeerOptions {
  bootstrap?: string[]
  /** functions module to load (refmesh peer --module) */
  module?: string
  /** modules whose exported functions run in the peer's worker pool */
  workerModules?: string[]
  workers?: number
  /** more command-line arguments */
  args?: string[]
  /** a script to run instead of the refmesh CLI; it gets the same arguments */
  entry?: string
  storeCapacity?: string
  identity?: string
  env?: Record<string, string>
  timeoutMs?: number
  /** run the peer inside this network namespace (`ip netns exec`, root only) */
  netns?: string
  /** the address to listen on; loopback by default */
  listen?: string
  /** called with the process as soon as it is spawned, before it is ready (to kill it however its start ends) */
  onSpawn?: (child: ChildProcess) => void
}

export async function spawnPeer (opts: SpawnPeerOptions = {}): Promise<PeerProcess> {
  // The peer stops when its stdin, a pipe from this process, ends: at stop(), or when this process dies, however.
  const args = [opts.entry ?? CLI, 'peer', '--json', '--stop-on-stdin-end', '--listen', opts.listen ?? '/ip4/127.0.0.1/tcp/0']
  if (opts.module !== undefined) args.push('--module', opts.module)
  for (const m of opts.workerModules ?? []) args.push('--worker-module', m)
  if (opts.workers !== undefined) args.push('--workers', String(opts.workers))
  args.push(...opts.args ?? [])
  for (const b of opts.bootstrap ?? []) args.push('--bootstrap', b)
  if (opts.storeCapacity !== undefined) args.push('--store-capacity', opts.storeCapacity)
  if (opts.identity !== undefined) args.push('--identity', opts.identity)
  // `ip netns exec` execs the command in place, so the child's pid is the peer's and a kill reaches it.
  const [command, argv] = opts.netns === undefined ? [process.execPath, args] : ['ip', ['netns', 'exec', opts.netns, process.execPath, ...args]]
  const child = spawn(command, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...MALLOC_ENV, ...opts.env } })
  opts.onSpawn?.(child)
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000) })
  // Whole debug logs for a failure that the kept tail cannot explain: PEER_LOG_DIR=<dir>.
  const logDir = process.env.PEER_LOG_DIR
  if (logDir !== undefined && child.pid !== undefined) child.stderr?.pipe(createWriteStream(`${logDir}/peer-${child.pid}.log`))
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const ready = new Promise<{ peer: string, addrs: string[], metrics?: string, page?: string }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.once('line', line => {
      try { resolve(JSON.parse(line) as { peer: string, addrs: string[], metrics?: string, page?: string }) } catch (err) { reject(err) }
    })
    child.once('exit', code => reject(new Error(`peer exited with ${code} before it was ready:\n${stderr}`)))
  })
  const timeoutMs = opts.timeoutMs ?? 45_000
  let timer: NodeJS.Timeout | undefined
  try {
    const info = await Promise.race([ready, new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error(`peer not ready within ${timeoutMs} ms:\n${stderr}`)), timeoutMs) })])
    const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      await exited
    }
    const stop = async (): Promise<void> => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.stdin?.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(t)
    }
    return { ...info, child, stderr: () => stderr, stop, kill }
  } catch (err) {
    child.kill('SIGKILL')
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** Spawns `n` peers, each joining through the first. */
export async function spawnPeers (n: number, opts: SpawnPeerOptions = {}): Promise<PeerProcess[]> {
  const first = await spawnPeer(opts)
  const rest = await Promise.allSettled(Array.from({ length: n - 1 }, async () => await spawnPeer({ ...opts, bootstrap: [...(opts.bootstrap ?? []), first.addrs[0]] })))
  const started = [first, ...rest.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])]
  const failed = rest.find(r => r.status === 'rejected')
  if (failed !== undefined) {
    // Leave nothing running behind a failed start.
    await stopAll(started)
    throw failed.reason
  }
  return started
}

export async function stopAll (peers: PeerProcess[]): Promise<void> {
  await Promise.all(peers.map(async p => await p.stop()))
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T> (what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? `: ${(last as Error).message}` : ''}`)
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
}

/** Waits until every peer process knows every other one (and the driver `mesh` knows them all). */
export async function waitForFullMesh (mesh: { peerId: string, waitForPeer: (peer: string, o: { signal?: AbortSignal }) => Promise<void>, peerStats: (peer: string, o: { timeoutMs?: number }) => Promise<{ peers: string[] }> }, peers: PeerProcess[], timeoutMs = 15_000): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs)
  for (const p of peers) await mesh.waitForPeer(p.peer, { signal })
  await waitFor('every peer to know every other', async () => {
    const views = await Promise.all(peers.map(async p => new Set((await mesh.peerStats(p.peer, { timeoutMs: 5_000 })).peers)))
    return views.every((known, i) => peers.every((q, j) => i === j || known.has(q.peer))) ? true : undefined
  }, timeoutMs, 50)
}
