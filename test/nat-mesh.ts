/**
 * A volunteer mesh across NATs, for test/volunteers.test.ts and test/bench/nat.ts: a
 * public bootstrap peer P (relay, STUN responder, and with a certificate the mesh
 * page over https) and a caller D on the internet, and `refmesh peer`s on home
 * networks behind NAT routers (test/nat-topology.ts); homes for browser tabs get no peer.
 */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { spawnPeer, waitFor } from '../node/local-cluster.ts'
import type { PeerProcess } from '../node/local-cluster.ts'
import { createNatTopology } from './nat-topology.ts'
import type { HomeInit, NatTopology } from './nat-topology.ts'

const FUNCTIONS = fileURLToPath(new URL('./fixtures/nat-functions.ts', import.meta.url))
const DRIVER = fileURLToPath(new URL('./fixtures/nat-driver.ts', import.meta.url))
export const P_PORT = 4001
export const STUN_PORT = 3478

export interface Link { peer: string, addr: string, limited: boolean, direct: boolean, status: string }

export interface Driver {
  peer: string
  call: <T = unknown>(fn: string, args?: unknown[], opts?: { peer?: string, keep?: string, timeoutMs?: number }) => Promise<T>
  release: (name: string) => Promise<void>
  stop: () => Promise<void>
}

export interface NatMeshInit {
  homes: HomeInit[]
  /** homes with no refmesh peer (a browser tab runs there) */
  tabHomes?: string[]
  /** the functions module of each home's peer, by home name (default: test/fixtures/nat-functions.ts) */
  modules?: Record<string, string>
  /** P serves the mesh page over https on PAGE_PORT (and WebSockets as wss) with the certificate this makes for its address */
  certificate?: (addr: string) => Promise<{ certFile: string, keyFile: string }>
  /** called as soon as the namespaces exist, to start more there while the peers start */
  onTopology?: (topology: NatTopology) => void
}

export const WSS_PORT = 4002
export const PAGE_PORT = 8443

export interface NatMesh {
  topology: NatTopology
  p: PeerProcess
  bootstrap: string
  stun: string
  driver: Driver
  /** the refmesh peer in each home, by home name */
  homes: Map<string, PeerProcess>
  /** starts (again) the peer of a home */
  startHome: (name: string) => Promise<PeerProcess>
  links: (home: string) => Promise<Link[]>
  stop: () => Promise<void>
}

async function startDriver (ns: string, listen: string, bootstrap: string, stun: string): Promise<Driver> {
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns, process.execPath, DRIVER, '--listen', listen, '--bootstrap', bootstrap, '--stun', stun], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000) })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  let ready: (peer: string) => void
  let failed: (err: Error) => void
  const started = new Promise<string>((resolve, reject) => { ready = resolve; failed = reject })
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', line => {
    const msg = JSON.parse(line) as { id?: number, peer?: string, value?: unknown, error?: string }
    if (msg.id === undefined) { ready(msg.peer as string); return }
    const p = pending.get(msg.id)
    pending.delete(msg.id)
    if (msg.error !== undefined) p?.reject(new Error(msg.error))
    else p?.resolve(msg.value)
  })
  child.once('exit', code => {
    failed(new Error(`driver exited with ${code}:\n${stderr}`))
    for (const p of pending.values()) p.reject(new Error(`driver exited with ${code}:\n${stderr}`))
  })
  const timer = setTimeout(() => failed(new Error(`driver not ready:\n${stderr}`)), 45_000)
  const peer = await started.finally(() => clearTimeout(timer))
  let next = 0
  const send = async <T>(cmd: Record<string, unknown>): Promise<T> => await new Promise<T>((resolve, reject) => {
    const id = ++next
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
    child.stdin!.write(JSON.stringify({ id, ...cmd }) + '\n')
  })
  return {
    peer,
    call: async (fn, args = [], opts = {}) => await send({ fn, args, ...opts }),
    release: async (name) => { await send({ release: name }) },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.stdin?.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(t)
    }
  }
}

/** NAT_DEBUG=<DEBUG pattern> turns on the peers' debug logs (their stderr: PeerProcess.stderr()). */
function debugEnv (): Record<string, string> | undefined {
  return process.env.NAT_DEBUG === undefined ? undefined : { DEBUG: process.env.NAT_DEBUG }
}

/** The topology, P, the driver, and a peer in each home but the tab homes (started in parallel). */
export async function startNatMesh (init: NatMeshInit): Promise<NatMesh> {
  const { homes } = init
  const topology = await createNatTopology({ publicHosts: ['P'], homes })
  init.onTopology?.(topology)
  const started: Array<{ stop: () => Promise<void> }> = []
  const stop = async (): Promise<void> => {
    await Promise.all(started.map(async s => await s.stop().catch(() => {})))
    await topology.stop()
  }
  try {
    const pHost = topology.publicHost('P')
    const stun = `stun:${pHost.addr}:${STUN_PORT}`
    // With a certificate, P is also what a volunteer's tab opens: the page over https, wss for
    // the tab's connection, and the STUN server handed to tabs in /mesh.json. It announces its
    // addresses, as README's public peer does: libp2p hands out an unannounced public address
    // only once AutoNAT has verified it, and no peer here can verify wss (none trusts the test CA),
    // so the page would have no address a tab can dial.
    const tls = await init.certificate?.(pHost.addr)
    const page = tls === undefined
      ? []
      : ['--listen', `/ip4/${pHost.addr}/tcp/${WSS_PORT}/ws`, '--announce', `/ip4/${pHost.addr}/tcp/${P_PORT}`, '--announce', `/ip4/${pHost.addr}/tcp/${WSS_PORT}/ws`, '--tls-cert', tls.certFile, '--tls-key', tls.keyFile,
          '--page-port', String(PAGE_PORT), '--page-host', pHost.addr, '--stun', stun]
    const p = await spawnPeer({ netns: pHost.ns, listen: `/ip4/${pHost.addr}/tcp/${P_PORT}`, args: ['--stun-port', String(STUN_PORT), ...page], env: debugEnv(), timeoutMs: 90_000 })
    started.push(p)
    const bootstrap = `/ip4/${pHost.addr}/tcp/${P_PORT}/p2p/${p.peer}`
    const driver = await startDriver(pHost.ns, `/ip4/${pHost.addr}/tcp/0`, bootstrap, stun)
    started.push(driver)
    const peers = new Map<string, PeerProcess>()
    const startHome = async (name: string): Promise<PeerProcess> => {
      const home = topology.home(name)
      const peer = await spawnPeer({ netns: home.ns, listen: `/ip4/${home.addr}/tcp/${P_PORT}`, module: init.modules?.[name] ?? FUNCTIONS, bootstrap: [bootstrap], args: ['--nat', '--stun', stun], env: debugEnv(), timeoutMs: 90_000 })
      started.push(peer)
      peers.set(name, peer)
      // The driver hears of it through gossip (a hello does not reach it: they are not connected).
      await waitFor(`the driver to reach ${name}`, async () => await driver.call('links', [], { peer: peer.peer, timeoutMs: 5_000 }).then(() => true), 30_000, 500)
      return peer
    }
    await Promise.all(homes.filter(h => init.tabHomes?.includes(h.name) !== true).map(async h => await startHome(h.name)))
    const links = async (home: string): Promise<Link[]> => await driver.call<Link[]>('links', [], { peer: peers.get(home)?.peer })
    return { topology, p, bootstrap, stun, driver, homes: peers, startHome, links, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Waits until the peer in `from` has a direct, unlimited connection to `to`'s peer; resolves with it. */
export async function waitForDirect (mesh: NatMesh, from: string, to: string, timeoutMs: number): Promise<Link> {
  const target = mesh.homes.get(to)?.peer
  return await waitFor(`a direct connection from ${from} to ${to}`, async () => {
    const links = await mesh.links(from)
    return links.find(l => l.peer === target && !l.limited && l.direct && l.status === 'open')
  }, timeoutMs, 250)
}
