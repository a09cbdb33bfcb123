/**
 * NAT traversal for Node peers: the libp2p pieces, and the one step libp2p does
 * not take by itself.
 *
 * - AutoNAT (@libp2p/autonat): peers dial each other's addresses back, so a peer
 *   on a public address learns it is reachable and advertises that address (libp2p
 *   advertises a public address only once some peer has confirmed it).
 * - Relay reservations (@libp2p/circuit-relay-v2's transport, listening on
 *   `/p2p-circuit`): a peer none of whose listen addresses is public is taken to be
 *   behind a NAT; it reserves a slot on the relays it meets (public refmesh peers run
 *   a relay server) and advertises `<relay>/p2p-circuit` addresses. A relayed
 *   connection is limited (128 KiB and 2 minutes by default), and refmesh's own
 *   protocols never run on one.
 * - DCUtR (@libp2p/dcutr): on a relayed connection, the side with a public address
 *   is dialled directly (the unilateral upgrade). Its TCP hole punch cannot succeed
 *   from Node: Node sockets cannot dial from their listening port (no SO_REUSEPORT), so
 *   the NAT mapping peers observe is never the one a simultaneous open needs (see
 *   libp2p/test-plans#864, where js-libp2p's DCUtR is marked known-failing for this).
 * - The hole punch itself: WebRTC (@libp2p/webrtc's `/webrtc` transport), signalled
 *   over the relayed connection; ICE learns each side's public UDP mapping from a STUN
 *   server (a public refmesh peer answers STUN with `--stun-port`) and punches through
 *   both NATs. `DirectUpgrader` below dials it: when this peer opens a relayed
 *   connection to a peer that advertises `/p2p-circuit/webrtc`, it dials that address,
 *   and libp2p then prefers the direct connection for every new stream. Behind a NAT
 *   that maps ports at random, ICE fails and the peers stay relayed (the mesh routes
 *   large objects around the relay: see core/transfer.ts).
 */
import { autoNAT } from '@libp2p/autonat'
import type { AutoNATComponents } from '@libp2p/autonat'
import { logger } from '@libp2p/logger'
import { isPrivateIp } from '@libp2p/utils'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'

const log = logger('refmesh:nat')

export interface DirectUpgraderInit {
  /** tries per meeting */
  attempts: number
  /** how long one WebRTC dial (signalling and ICE) may take */
  dialTimeoutMs: number
  /** wait between tries */
  retryDelayMs: number
  /** how often the mesh's peers are looked over for ones to reach directly */
  scanEveryMs: number
  /** after a meeting's tries all failed (a NAT that maps ports at random), when to try that peer again */
  retryPeerAfterMs: number
}

export const DIRECT_UPGRADER_DEFAULTS: DirectUpgraderInit = {
  attempts: 3,
  dialTimeoutMs: 15_000,
  retryDelayMs: 1_000,
  scanEveryMs: 1_000,
  retryPeerAfterMs: 5 * 60_000
}

export interface DirectUpgradeStats {
  /** meetings with peers reachable only through a relay that this peer tried to make direct */
  attempts: number
  /** of which a direct connection came up */
  succeeded: number
  /** of which every try failed: the peer stays relayed */
  failed: number
  /** ms from meeting (first hearing of the peer's relayed address) to the direct connection, per success (the last 100) */
  msToDirect: number[]
}

/**
 * @libp2p/autonat 3.0.28, with its dial-back made on a fresh connection. Asked to
 * dial a peer back on one address, the service calls `openConnection`, which returns
 * the connection the request itself came on (libp2p reuses an open connection unless
 * told to `force` a new one); the service then reports the address reachable, whatever
 * it is, and closes that connection, cutting the requester off (a peer behind a NAT
 * lost its relay reservation to it). Forcing a new connection for a single-address
 * dial, as only the dial-back makes, tests the address for real and closes only the test
 * connection. test/volunteers.test.ts shows peers staying connected through verification.
 */
export function autoNATDialingBackAfresh (): (components: AutoNATComponents) => unknown {
  const create = autoNAT()
  return (components) => {
    const manager = components.connectionManager
    const forcing = new Proxy(manager, {
      get (target, key, receiver) {
        if (key !== 'openConnection') return Reflect.get(target, key, receiver)
        const open: typeof manager.openConnection = async (addr, options) => {
          return await target.openConnection(addr, Array.isArray(addr) ? options : { ...options, force: true })
        }
        return open
      }
    })
    return create(new Proxy(components, {
      get (target, key, receiver) {
        return key === 'connectionManager' ? forcing : Reflect.get(target, key, receiver)
      }
    }))
  }
}

/** An address on a public IP (not loopback, private, or the unspecified 0.0.0.0 / ::). */
export function isPublicAddr (addr: string): boolean {
  const m = /^\/ip[46]\/([^/]+)\//.exec(addr)
  if (m === null) return false
  return isPrivateIp(m[1]) !== true && m[1] !== '0.0.0.0' && m[1] !== '::'
}

/** Is this connection one that bytes should not flow over: relayed, with limits. */
export function isLimited (conn: Connection): boolean {
  return conn.limits != null
}

/** What the upgrader needs of the mesh: the peers it knows, and where they listen. */
export interface KnownPeers {
  peerId: string
  /** this peer listens on a public address (peers behind NATs do not consider it, so it dials them) */
  isPublic: boolean
  peers: () => Array<{ peer: string, addrs: string[], liveness: string }>
}

/**
 * Makes relayed peers direct. Peers meet through gossip (a peer's gossiped state
 * lists its addresses, `<relay>/p2p-circuit/webrtc` among them once it holds a
 * reservation) or through a relayed connection. A public peer dials a NATed one's
 * WebRTC address; of two peers behind NATs, the one with the smaller id dials (the
 * other waits: two WebRTC dials between the same pair at once break each other).
 */
export class DirectUpgrader {
  private readonly libp2p: Libp2p
  private readonly known: KnownPeers
  private readonly init: DirectUpgraderInit
  private readonly upgrading = new Set<string>()
  /** when this peer first heard of each peer it could not reach directly */
  private readonly met = new Map<string, number>()
  /** peers whose meeting failed, and when to try again */
  private readonly gaveUp = new Map<string, number>()
  private readonly controller = new AbortController()
  private timer: ReturnType<typeof setInterval> | undefined
  readonly stats: DirectUpgradeStats = { attempts: 0, succeeded: 0, failed: 0, msToDirect: [] }

  constructor (libp2p: Libp2p, known: KnownPeers, init: Partial<DirectUpgraderInit> = {}) {
    this.libp2p = libp2p
    this.known = known
    this.init = { ...DIRECT_UPGRADER_DEFAULTS, ...init }
  }

  start (): void {
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
    this.timer = setInterval(() => { this.scan() }, this.init.scanEveryMs)
  }

  stop (): void {
    this.controller.abort()
    clearInterval(this.timer)
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
  }

  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId, connection: Connection, listenAddrs: Multiaddr[] }>): void => {
    const { peerId, connection, listenAddrs } = evt.detail
    if (!isLimited(connection)) return
    this.consider(peerId.toString(), listenAddrs.map(String))
  }

  private scan (): void {
    for (const p of this.known.peers()) {
      if (p.liveness !== 'dead' && p.peer !== this.known.peerId) this.consider(p.peer, p.addrs)
    }
  }

  private consider (peer: string, addrs: string[]): void {
    const targets = addrs.filter(a => a.includes('/p2p-circuit/webrtc'))
    // A peer with a public address of its own is dialled there as usual.
    if (targets.length === 0 || addrs.some(a => !a.includes('/p2p-circuit') && isPublicAddr(a))) return
    if (this.upgrading.has(peer) || this.hasDirect(peer)) return
    const now = performance.now()
    if ((this.gaveUp.get(peer) ?? 0) > now) return
    const met = this.met.get(peer) ?? now
    this.met.set(peer, met)
    if (!this.known.isPublic && this.known.peerId > peer) return
    void this.upgrade(peer, targets, met)
  }

  private hasDirect (peer: string): boolean {
    return this.libp2p.getConnections().some(c => c.remotePeer.toString() === peer && !isLimited(c) && c.status === 'open')
  }

  private succeeded (peer: string, since: number, via: string): void {
    const ms = Math.round(performance.now() - since)
    this.stats.succeeded++
    this.stats.msToDirect.push(ms)
    if (this.stats.msToDirect.length > 100) this.stats.msToDirect.shift()
    this.met.delete(peer)
    log('direct connection to %s %d ms after meeting, over %s', peer, ms, via)
  }

  private async upgrade (peer: string, targets: string[], since: number): Promise<void> {
    this.upgrading.add(peer)
    this.stats.attempts++
    try {
      const addrs = targets.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      for (let i = 0; i < this.init.attempts && !this.controller.signal.aborted; i++) {
        const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.dialTimeoutMs)])
        try {
          const conn = await this.libp2p.dial(addrs, { signal })
          if (!isLimited(conn)) {
            this.succeeded(peer, since, conn.remoteAddr.toString())
            return
          }
        } catch (err) {
          log('direct dial %d to %s failed: %s', i + 1, peer, (err as Error).message)
        }
        if (this.hasDirect(peer)) {
          this.succeeded(peer, since, 'its own dial')
          return
        }
        await new Promise(resolve => setTimeout(resolve, this.init.retryDelayMs))
      }
      this.stats.failed++
      this.met.delete(peer)
      this.gaveUp.set(peer, performance.now() + this.init.retryPeerAfterMs)
      log('no direct connection to %s: it stays relayed', peer)
    } finally {
      this.upgrading.delete(peer)
    }
  }
}
