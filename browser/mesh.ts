/**
 * refmesh/browser: a tab as a full peer. Supplies the libp2p configuration and
 * the identity to the runtime-agnostic core:
 *
 * - Node peers are dialed over WebSockets or WebRTC-direct;
 * - other tabs over WebRTC: a tab listens on `/p2p-circuit` (a slot on each
 *   Node peer's relay) and `/webrtc`, so its addresses read
 *   `<relay>/p2p-circuit/webrtc/p2p/<tab>`; a tab dialing one signals through
 *   the relay and then talks to the other tab directly;
 * - the key lives in IndexedDB (browser/identity.ts), chunks are hashed with
 *   WebCrypto (the core's default);
 * - the store spills to OPFS (browser/opfs-spill.ts), and functions of worker
 *   modules run in Web Workers (browser/worker-backend.ts); functions the page
 *   registers itself run on its main thread, as they need the mesh.
 */
import { createLibp2p } from 'libp2p'
import { webSockets } from '@libp2p/websockets'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { Mesh } from '../core/mesh.ts'
import type { MeshInit } from '../core/mesh.ts'
import { PUBSUB_OPTIONS } from '../core/gossip.ts'
import type { PubSub } from '../core/gossip.ts'
import { CONTROL_PROTOCOLS } from '../core/channel.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { PeerDiedError } from '../core/errors.ts'
import { browserDialable, peerOf, PeerDialer } from './dialer.ts'
import type { PeerDialerInit } from './dialer.ts'
import { leaseIdentity } from './identity.ts'
import type { IdentityOptions } from './identity.ts'
import { LinkLog } from './links.ts'
import type { LinkInfo } from './links.ts'
import { OpfsSpill, SpillInUseError } from './opfs-spill.ts'
import { WebWorkerPool } from './worker-backend.ts'
import { assertSecureContext } from './secure-context.ts'

export * from '../core/index.ts'
export type { LinkInfo, LinkTransport } from './links.ts'
export { InsecureContextError, checkSecureContext } from './secure-context.ts'

const log = logger('refmesh:browser')

export interface BrowserMeshOptions extends Omit<MeshInit, 'libp2p' | 'pubsub' | 'backend' | 'runtime' | 'sharedMemory'> {
  /** multiaddrs (with /p2p/<id>) of Node peers to join through: their WebSockets or WebRTC-direct addresses */
  bootstrap?: string[]
  /** default: a slot on every relay reached (`/p2p-circuit`) and WebRTC through it (`/webrtc`) */
  listen?: string[]
  /**
   * for WebRTC between tabs; default no STUN/TURN servers (enough on one machine
   * or LAN). Tabs behind NATs need STUN, and TURN where no direct path exists;
   * the mesh page takes them from its server's /mesh.json (`--stun`, `--turn`).
   */
  rtcConfiguration?: RTCConfiguration
  /**
   * Dial loopback and private addresses and plain ws://. A browser libp2p node
   * refuses them by default, which is right on the public internet and wrong
   * for a mesh on one machine or LAN. Default false.
   */
  allowPrivateAddresses?: boolean
  /** where the tab's key is kept; false: a new identity on every load */
  identity?: IdentityOptions | false
  privateKey?: PrivateKey
  /** how long to wait for the bootstrap peers */
  bootstrapTimeoutMs?: number
  /** how the tab keeps its connections (see browser/dialer.ts) */
  dialer?: Omit<PeerDialerInit, 'libp2p' | 'mesh'>
  /**
   * ES module URLs (relative ones against the page) whose exported functions
   * this tab offers, run in Web Workers. Default none, and then no workers.
   */
  workerModules?: Array<string | URL>
  /** Web Workers for `workerModules`; default one per core */
  workers?: number
  /** spill the store to OPFS under memory pressure; default true. false: puts wait for room instead */
  spill?: boolean
  /** how long opening the spill and starting the workers may take */
  startTimeoutMs?: number
}

export const BROWSER_DEFAULTS = {
  listen: ['/p2p-circuit', '/webrtc'],
  rtcConfiguration: { iceServers: [] },
  /** a tab shares the machine with its browser: a smaller store than a Node peer's */
  storeCapacity: '512MiB',
  bootstrapTimeoutMs: 15_000,
  /** as Node peers: tabs of one host connecting at once */
  inboundConnectionsPerSecond: 64,
  startTimeoutMs: 15_000,
  /**
   * A reloaded tab gets its identity back as soon as the old document lets it
   * go (browser/identity.ts), but the old document's spill worker may hold the
   * spill directory a moment longer: retry for this long.
   */
  spillReopenMs: 2_000
} as const

/** The core mesh, plus what a tab adds: its dialer and the transport of each link. */
export class BrowserMesh extends Mesh {
  readonly dialer: PeerDialer
  private readonly linkLog: LinkLog
  private readonly releaseIdentity: () => void
  private readonly spill: OpfsSpill | undefined
  private readonly workers: WebWorkerPool | undefined

  constructor (init: MeshInit, parts: { releaseIdentity: () => void, dialer?: BrowserMeshOptions['dialer'], spill?: OpfsSpill, workers?: WebWorkerPool }) {
    super(init)
    this.releaseIdentity = parts.releaseIdentity
    this.spill = parts.spill
    this.workers = parts.workers
    this.linkLog = new LinkLog(init.libp2p, [...CONTROL_PROTOCOLS, CHUNK_PROTOCOL])
    this.dialer = new PeerDialer({ ...parts.dialer, libp2p: init.libp2p, mesh: this })
  }

  override async start (): Promise<void> {
    this.linkLog.start()
    await super.start()
  }

  /** Open connections, with their transports and the refmesh streams each carried. */
  links (peer?: string): LinkInfo[] {
    return this.linkLog.links(peer)
  }

  override async stop (): Promise<void> {
    this.dialer.stop()
    try {
      await super.stop()
    } finally {
      this.linkLog.stop()
      // The core closes the workers only if it got as far as starting.
      await Promise.allSettled([this.libp2p.stop(), this.workers?.close()])
      // Last: the store may still be deleting spilled objects until the mesh has stopped.
      await this.spill?.close().catch((err: Error) => { log('closing the spill: %s', err.message) })
      this.releaseIdentity()
    }
  }
}

/** Starts a peer in this tab and joins the mesh through `bootstrap`. */
export async function createBrowserMesh (options: BrowserMeshOptions = {}): Promise<BrowserMesh> {
  // Here, not as a TypeError from deep inside: an http page from another host has none of it.
  assertSecureContext()
  const lease = options.privateKey !== undefined || options.identity === false
    ? { privateKey: options.privateKey, release: () => {} }
    : await leaseIdentity(options.identity)
  let libp2p: Libp2p | undefined
  let mesh: BrowserMesh | undefined
  let spill: OpfsSpill | undefined
  let workers: WebWorkerPool | undefined
  try {
    libp2p = await createLibp2p({
      privateKey: lease.privateKey,
      addresses: { listen: options.listen ?? [...BROWSER_DEFAULTS.listen] },
      transports: [
        webSockets(),
        webRTCDirect(),
        webRTC({ rtcConfiguration: options.rtcConfiguration ?? { iceServers: [...BROWSER_DEFAULTS.rtcConfiguration.iceServers] } }),
        circuitRelayTransport()
      ],
      connectionGater: options.allowPrivateAddresses === true ? { denyDialMultiaddr: async () => false } : undefined,
      connectionManager: { inboundConnectionThreshold: BROWSER_DEFAULTS.inboundConnectionsPerSecond },
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        pubsub: gossipsub(PUBSUB_OPTIONS)
      }
    })
    const signal = AbortSignal.timeout(options.startTimeoutMs ?? BROWSER_DEFAULTS.startTimeoutMs)
    const peerId = libp2p.peerId.toString()
    const modules = options.workerModules ?? []
    // Both at once; whichever fails, the other is still closed below.
    const [opened, started] = await Promise.allSettled([
      options.store?.spill !== undefined || options.spill === false ? undefined : openSpill(peerId, signal),
      modules.length === 0 ? undefined : startWorkers(modules, options.workers, signal)
    ])
    if (opened.status === 'fulfilled') spill = opened.value
    if (started.status === 'fulfilled') workers = started.value
    if (opened.status === 'rejected') throw opened.reason
    if (started.status === 'rejected') throw started.reason
    mesh = new BrowserMesh({
      ...options,
      store: {
        ...options.store,
        capacity: options.store?.capacity ?? BROWSER_DEFAULTS.storeCapacity,
        spill: options.store?.spill ?? spill
      },
      libp2p,
      pubsub: libp2p.services.pubsub as unknown as PubSub,
      backend: workers,
      runtime: 'browser',
      // Only for workers: functions on the main thread would get views of
      // shared memory, which TextDecoder and WebCrypto refuse.
      sharedMemory: workers !== undefined && globalThis.crossOriginIsolated === true
    }, { releaseIdentity: lease.release, dialer: options.dialer, spill, workers })
    await mesh.start()
    await join(mesh, options.bootstrap ?? [], options.bootstrapTimeoutMs ?? BROWSER_DEFAULTS.bootstrapTimeoutMs)
    mesh.dialer.start()
    return mesh
  } catch (err) {
    if (mesh !== undefined) {
      await mesh.stop().catch(() => {})
    } else {
      await Promise.allSettled([libp2p?.stop(), workers?.close(), spill?.close()])
      lease.release()
    }
    throw err
  }
}

/** The tab's OPFS spill. We hold the identity, so a spill in use is the old document of a reloaded tab: wait for it to go. */
async function openSpill (peerId: string, signal: AbortSignal): Promise<OpfsSpill> {
  const deadline = performance.now() + BROWSER_DEFAULTS.spillReopenMs
  for (let wait = 50; ; wait *= 2) {
    try {
      return await OpfsSpill.open({ peerId }, { signal })
    } catch (err) {
      if (!(err instanceof SpillInUseError) || performance.now() + wait > deadline) throw err
      log('the spill of %s is still held, retrying in %d ms', peerId, wait)
      await new Promise(resolve => setTimeout(resolve, wait))
    }
  }
}

async function startWorkers (modules: Array<string | URL>, size: number | undefined, signal: AbortSignal): Promise<WebWorkerPool> {
  const pool = new WebWorkerPool({ modules, size })
  try {
    await pool.start({ signal })
    return pool
  } catch (err) {
    await pool.close()
    throw err
  }
}

/** Connects to each bootstrap peer through the first of its addresses that works. */
async function join (mesh: Mesh, bootstrap: string[], timeoutMs: number): Promise<void> {
  if (bootstrap.length === 0) return
  const byPeer = new Map<string, string[]>()
  for (const ma of browserDialable(bootstrap)) {
    const peer = peerOf(ma)
    if (peer === undefined) throw new TypeError(`bootstrap address ${ma.toString()} has no /p2p/<peer id>`)
    byPeer.set(peer, [...byPeer.get(peer) ?? [], ma.toString()])
  }
  if (byPeer.size === 0) {
    throw new PeerDiedError(`a browser can dial none of the bootstrap addresses (it needs /ws, /wss or /webrtc-direct): ${bootstrap.join(', ')}`)
  }
  const signal = AbortSignal.timeout(timeoutMs)
  const results = await Promise.allSettled([...byPeer.values()].map(async addrs => {
    const reasons: string[] = []
    for (const addr of addrs) {
      try {
        return await mesh.connect(addr, { signal })
      } catch (err) {
        log('bootstrap through %s failed: %s', addr, (err as Error).message)
        reasons.push(`${multiaddr(addr).toString()}: ${(err as Error).message}`)
      }
    }
    throw new PeerDiedError(reasons.join('; '))
  }))
  if (results.every(r => r.status === 'rejected')) {
    const reasons = results.map(r => ((r as PromiseRejectedResult).reason as Error).message).join('; ')
    throw new PeerDiedError(`could not join through any bootstrap peer: ${reasons}`)
  }
}
