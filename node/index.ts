/**
 * refmesh/node: a Node.js peer. Supplies the libp2p configuration (TCP,
 * WebSockets and WebRTC-direct for browsers, a circuit relay server so tabs can
 * signal WebRTC to each other, Noise, Yamux, identify, gossipsub) and identity
 * to the runtime-agnostic core.
 */
import { AsyncCallContext } from './call-context.ts'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import './yamux-window.ts'
import './tcp-writev.ts'
import './lp-decode.ts'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import type { PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { Mesh } from '../core/mesh.ts'
import type { MeshInit } from '../core/mesh.ts'
import { PUBSUB_OPTIONS } from '../core/gossip.ts'
import type { PubSub } from '../core/gossip.ts'
import { PeerDiedError } from '../core/errors.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { WorkerPool } from './worker-pool.ts'
import { createHash } from 'node:crypto'
import { totalmem } from 'node:os'
import { FileSpill, defaultSpillDir } from './spill.ts'
import { allocateUninitialized, collectGarbage } from './memory.ts'
import { DirectUpgrader, autoNATDialingBackAfresh, isPublicAddr } from './nat.ts'
import type { DirectUpgraderInit } from './nat.ts'
import { startStunServer } from './stun-server.ts'
import type { StunServer } from './stun-server.ts'
import type { DirectUpgradeStats } from './nat.ts'

export * from '../core/index.ts'

export interface NodeMeshOptions extends Omit<MeshInit, 'libp2p' | 'pubsub'> {
  /** multiaddrs (with /p2p/<id>) of peers to join through */
  bootstrap?: string[]
  /**
   * where to listen; default: ephemeral TCP and WebSockets ports on loopback (TCP first).
   * `/udp/0/webrtc-direct` serves tabs; `/udp/0/quic-v1` adds QUIC for Node peers (not a
   * default: it cost more CPU per byte than TCP here, test/bench/cpu-per-byte.ts).
   */
  listen?: string[]
  /**
   * the addresses other peers should dial instead of the listening ones (libp2p's
   * `addresses.announce`): a public IP or DNS name behind port forwarding, e.g.
   * `/dns4/mesh.example.org/tcp/4001`. A WebRTC-direct one gets its certhash added.
   */
  announce?: string[]
  /**
   * a public IP address or DNS name other peers reach this one at (port
   * forwarding with the same port numbers): every address this peer listens on
   * is announced with this host instead of its own. With ephemeral ports, where
   * `announce` cannot name the ports in advance.
   */
  announceHost?: string
  /**
   * a certificate and key (PEM) for WebSockets: with them, WebSockets addresses
   * in `listen` and `announce` serve wss (`/ws` becomes `/tls/ws`), which a page
   * served over https may dial
   */
  tls?: TlsFiles
  /** relay WebRTC signalling between browser tabs (circuit relay v2 server); default true */
  relay?: boolean
  /** file holding this peer's key; created on first use. Without it the identity is new each run. */
  identityFile?: string
  privateKey?: PrivateKey
  /** how long to wait for the bootstrap peers */
  bootstrapTimeoutMs?: number
  /** modules whose exported functions run in a worker_threads pool, offered under their export names */
  workerModules?: string[]
  /** workers in the pool; default one per core */
  workers?: number
  /** where this peer spills objects (emptied at start and stop); default a directory per peer under the OS temp dir; false: never spill */
  spillDir?: string | false
  /** NAT traversal for peers on home networks (see node/nat.ts); default off */
  nat?: boolean | NatOptions
}

export interface NatOptions {
  /** ICE servers for WebRTC hole punching: STUN servers tell this peer its public address, e.g. { urls: 'stun:203.0.113.5:3478' } */
  iceServers?: Array<{ urls: string | string[], username?: string, credential?: string }>
  /** answer STUN requests on this UDP port (a public peer helping peers behind NATs) */
  stunPort?: number
  /** reserve relay slots and listen for relayed connections; default: when no listen address is public */
  reserve?: boolean
  upgrader?: Partial<DirectUpgraderInit>
}

/** No bootstrap peer could be joined: each address with its own error, and how long the joins took. */
export class JoinError extends PeerDiedError {
  override name = 'JoinError'
  readonly failures: Array<{ addr: string, error: Error }>
  readonly waitedMs: number

  constructor (failures: Array<{ addr: string, error: Error }>, waitedMs: number) {
    super(`could not join through any bootstrap peer: ${failures.map(f => f.error.message).join('; ')}`)
    this.failures = failures
    this.waitedMs = waitedMs
  }
}

/** a PEM certificate (chain) and its private key, as node:tls takes them */
export interface TlsFiles {
  cert: string | Buffer
  key: string | Buffer
}

/** `/ws` becomes `/tls/ws` (wss); other addresses, and ones already secure, stay as they are. */
export function secureWebSockets (addr: string): string {
  if (/\/(tls|wss)(\/|$)/.test(addr)) return addr
  return addr.replace(/\/ws(?=\/p2p\/|$)/, '/tls/ws')
}

/** `addr` with its host (the first ip4/ip6/dns part) replaced by `host`: an IP address or a DNS name */
export function withHost (addr: string, host: string): string {
  const proto = /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? 'ip4' : host.includes(':') ? 'ip6' : 'dns'
  return addr.replace(/^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+/, `/${proto}/${host}`)
}

export const NODE_DEFAULTS = {
  // TCP first: peers and tools take a Node peer's first address as its TCP one.
  // Browsers dial the WebSockets one. Not WebRTC-direct by default: node-datachannel's
  // UDP mux can crash the whole process (SIGSEGV in its STUN callback) when a STUN
  // request meets a listener that has stopped; seen in about 1 of 5 runs of a test file
  // that starts and stops several meshes. Peers that want it list it in `listen`.
  listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'],
  /**
   * Tabs reserve a slot on every relay they connect to, and hold it while open;
   * libp2p's default of 15 would turn the 16th tab away. Relayed connections
   * keep libp2p's default limits (2 minutes, 128 KiB): they carry only WebRTC
   * signalling, and refmesh's protocols never run on a limited connection.
   */
  relayReservations: 256,
  /** the store's share of this machine's memory when no capacity is given (Ray's object store takes 30%) */
  storeMemoryFraction: 0.25,
  bootstrapTimeoutMs: 15_000,
  /** inbound connections accepted per second from one address */
  inboundConnectionsPerSecond: 64,
  /** the shortest a connection's ping may take before libp2p gives the connection up */
  pingTimeoutMs: 30_000,
  /**
   * how often libp2p pings each connection (its default: 10 s). Every direct connection
   * carries a hello each heartbeat already, and the failure detector, not the ping,
   * tells a silent peer (core/membership.ts); the ping only closes a connection gone
   * dead under libp2p (no FIN: a partition), which with its 30 s timeout took 40 s at
   * best anyway. Each ping opens a stream and runs multistream-select (ping is not
   * served here, so it ends refused): on an idle five-peer mesh a third of the CPU
   * of its hellos (bench:sched idle_cpu).
   */
  pingIntervalMs: 60_000
} as const

/**
 * WebRTC-direct only for peers that listen on it: loading @libp2p/webrtc (and
 * its native addon) costs ~0.3 s of start-up, and Node peers reach each other
 * over TCP, so a TCP-only peer never needs it.
 */
async function webRTCDirectFor (listen: string[]): Promise<Array<ReturnType<typeof import('@libp2p/webrtc').webRTCDirect>>> {
  if (!listen.some(addr => addr.includes('/webrtc-direct'))) return []
  const { webRTCDirect } = await import('@libp2p/webrtc')
  return [webRTCDirect()]
}

/**
 * QUIC (Rust, through napi: encryption and multiplexing off the JavaScript
 * thread) only for peers that listen on a `/quic-v1` address, loaded on demand
 * like WebRTC-direct: a native addon is loaded only where it is asked for.
 */
async function quicFor (listen: string[]): Promise<Array<ReturnType<typeof import('@chainsafe/libp2p-quic').quic>>> {
  if (!listen.some(addr => addr.includes('/quic-v1'))) return []
  const { quic } = await import('@chainsafe/libp2p-quic')
  await import('./quic-reads.ts')
  return [quic()]
}

/**
 * The libp2p parts of NAT traversal (node/nat.ts says what each does): AutoNAT and
 * DCUtR everywhere, STUN servers for WebRTC's ICE, and relay reservations plus WebRTC
 * listening on peers whose listen addresses are all private (behind a NAT, as far as
 * this peer can tell before any other peer has dialled it back).
 */
async function natParts (options: NodeMeshOptions, listen: string[], announcesPublic: boolean): Promise<{ listen: string[], transports: any[], services: Record<string, any>, reserve: boolean, nat?: NatOptions }> {
  if (options.nat === undefined || options.nat === false) return { listen, transports: [], services: {}, reserve: false }
  const nat: NatOptions = options.nat === true ? {} : options.nat
  const reserve = nat.reserve ?? !(announcesPublic || listen.some(isPublicAddr))
  const { webRTC } = await import('@libp2p/webrtc')
  return {
    listen: reserve ? [...listen, '/p2p-circuit', '/webrtc'] : listen,
    transports: [
      circuitRelayTransport(),
      webRTC({ rtcConfiguration: { iceServers: nat.iceServers ?? [] } })
    ],
    services: { autoNAT: autoNATDialingBackAfresh(), dcutr: dcutr() },
    reserve,
    nat
  }
}

const natUpgraders = new WeakMap<Mesh, DirectUpgrader>()

/** How this peer's relayed connections became direct ones (undefined without `nat`). */
export function natStats (mesh: Mesh): DirectUpgradeStats | undefined {
  const s = natUpgraders.get(mesh)?.stats
  return s === undefined ? undefined : { ...s, msToDirect: [...s.msToDirect] }
}

/** Starts a peer and joins the mesh through `bootstrap`. With no options: a working single-peer mesh. */
export async function createMesh (options: NodeMeshOptions = {}): Promise<Mesh> {
  const privateKey = options.privateKey ?? (options.identityFile !== undefined ? await loadOrCreateIdentity(options.identityFile) : undefined)
  const secure = (addrs: string[]): string[] => options.tls === undefined ? addrs : addrs.map(secureWebSockets)
  const announce = secure(options.announce ?? [])
  const nat = await natParts(options, secure(options.listen ?? [...NODE_DEFAULTS.listen]), announce.some(isPublicAddr) || options.announceHost !== undefined)
  const listen = nat.listen
  const libp2p = await createLibp2p({
    privateKey,
    addresses: {
      listen,
      announce,
      // Behind a NAT, the addresses others observe for this peer's TCP dials are ephemeral
      // mappings nobody can dial back (Node cannot dial from its listening port), so it keeps
      // none: asking AutoNAT to verify them only makes the verifier, which dials back over
      // the connection it already has, close that connection.
      ...nat.reserve ? { maxObservedAddresses: 0 } : {},
      // Loopback and private addresses all become the public host; a relayed
      // address names its relay's host, which stays.
      ...options.announceHost === undefined
        ? {}
        : { announceFilter: addrs => [...new Map(addrs.map(a => a.toString().includes('/p2p-circuit') ? a : multiaddr(withHost(a.toString(), options.announceHost!))).map(a => [a.toString(), a])).values()] }
    },
    transports: [tcp(), webSockets(options.tls === undefined ? {} : { https: { cert: options.tls.cert, key: options.tls.key } }), ...await webRTCDirectFor(listen), ...await quicFor(listen), ...nat.transports],
    // libp2p refuses a sixth connection per second from one host; a local cluster,
    // or peers behind one NAT, joining at once are more than that.
    connectionManager: { inboundConnectionThreshold: NODE_DEFAULTS.inboundConnectionsPerSecond },
    // libp2p aborts a connection whose ping takes over 5 s; behind a saturated home uplink
    // (20 Mbit/s, eight receivers relaying) pings queue behind megabytes of chunks and take
    // longer, and the aborts failed whole broadcasts. The mesh's own failure detector finds
    // hung peers (core/membership.ts); this only keeps slow links up.
    connectionMonitor: { pingInterval: NODE_DEFAULTS.pingIntervalMs, pingTimeout: { minTimeout: NODE_DEFAULTS.pingTimeoutMs } },
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub(PUBSUB_OPTIONS),
      ...nat.services,
      ...(options.relay === false ? {} : { relay: circuitRelayServer({ reservations: { maxReservations: NODE_DEFAULTS.relayReservations } }) })
    }
  })
  let backend: WorkerPool | undefined
  if (options.workerModules !== undefined && options.workerModules.length > 0) {
    backend = new WorkerPool({ modules: options.workerModules, size: options.workers })
    try {
      await backend.start()
    } catch (err) {
      await backend.close()
      await libp2p.stop()
      throw err
    }
  }
  let spill: FileSpill | undefined
  if (options.spillDir !== false && options.store?.spill === undefined) {
    try {
      spill = await FileSpill.open(options.spillDir ?? defaultSpillDir(libp2p.peerId.toString()))
    } catch (err) {
      await backend?.close()
      await libp2p.stop()
      throw err
    }
  }
  const mesh = new Mesh({
    ...options,
    store: {
      ...options.store,
      capacity: options.store?.capacity ?? Math.floor(totalmem() * NODE_DEFAULTS.storeMemoryFraction),
      spill: options.store?.spill ?? spill,
      reclaim: collectGarbage,
      // Restored objects are read over in whole: no need to zero the memory first.
      allocate: allocateUninitialized
    },
    libp2p,
    pubsub: libp2p.services.pubsub as unknown as PubSub,
    backend,
    sharedMemory: backend !== undefined,
    callContext: options.callContext ?? new AsyncCallContext(),
    sha256: (data) => createHash('sha256').update(data).digest()
  })
  const upgrader = nat.nat === undefined ? undefined : new DirectUpgrader(libp2p, { peerId: mesh.peerId, isPublic: !nat.reserve, peers: () => mesh.peers() }, nat.nat.upgrader)
  let stun: StunServer | undefined
  try {
    upgrader?.start()
    if (upgrader !== undefined) natUpgraders.set(mesh, upgrader)
    if (nat.nat?.stunPort !== undefined) stun = await startStunServer(nat.nat.stunPort)
    await mesh.start()
    const bootstrap = options.bootstrap ?? []
    if (bootstrap.length > 0) {
      const timeoutMs = options.bootstrapTimeoutMs ?? NODE_DEFAULTS.bootstrapTimeoutMs
      const started = performance.now()
      const results = await Promise.allSettled(bootstrap.map(addr => mesh.connect(addr, { timeoutMs })))
      if (results.every(r => r.status === 'rejected')) {
        const failures = results.map((r, i) => ({ addr: bootstrap[i], error: (r as PromiseRejectedResult).reason as Error }))
        throw new JoinError(failures, performance.now() - started)
      }
    }
  } catch (err) {
    upgrader?.stop()
    await stun?.close()
    await mesh.stop().catch(() => {})
    await libp2p.stop()
    await spill?.close()
    throw err
  }
  const stop = mesh.stop.bind(mesh)
  mesh.stop = async () => {
    upgrader?.stop()
    await stun?.close()
    await stop()
    await libp2p.stop()
    await spill?.close()
  }
  return mesh
}
