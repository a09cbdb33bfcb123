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
import { logger } from '@libp2p/logger'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const log = logger('refmesh:nat')

export interface DirectUpgraderInit {
  /** tries per relayed connection */
  attempts: number
  /** how long one WebRTC dial (signalling and ICE) may take */
  dialTimeoutMs: number
  /** wait between tries */
  retryDelayMs: number
}

export const DIRECT_UPGRADER_DEFAULTS: DirectUpgraderInit = {
  attempts: 3,
  dialTimeoutMs: 15_000,
  retryDelayMs: 1_000
}

export interface DirectUpgradeStats {
  /** relayed connections this peer tried to upgrade */
  attempts: number
  /** of which a direct connection came up */
  succeeded: number
  failed: number
  /** ms from the relayed connection's opening to the direct one's, per success (the last 100) */
  msToDirect: number[]
}

/** Is this connection one that bytes should not flow over: relayed, with limits. */
export function isLimited (conn: Connection): boolean {
  return conn.limits != null
}

export class DirectUpgrader {
  private readonly libp2p: Libp2p
  private readonly init: DirectUpgraderInit
  private readonly upgrading = new Set<string>()
  private readonly controller = new AbortController()
  readonly stats: DirectUpgradeStats = { attempts: 0, succeeded: 0, failed: 0, msToDirect: [] }

  constructor (libp2p: Libp2p, init: Partial<DirectUpgraderInit> = {}) {
    this.libp2p = libp2p
    this.init = { ...DIRECT_UPGRADER_DEFAULTS, ...init }
  }

  start (): void {
    this.libp2p.addEventListener('peer:identify', this.onIdentify)
  }

  stop (): void {
    this.controller.abort()
    this.libp2p.removeEventListener('peer:identify', this.onIdentify)
  }

  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId, connection: Connection, listenAddrs: Multiaddr[] }>): void => {
    const { peerId, connection, listenAddrs } = evt.detail
    // The side that dialled the relayed connection dials the direct one, so the two
    // do not race each other with two WebRTC connections.
    if (!isLimited(connection) || connection.direction !== 'outbound') return
    const targets = listenAddrs.filter(a => a.toString().includes('/p2p-circuit/webrtc'))
    if (targets.length === 0) return
    void this.upgrade(peerId, targets, performance.now())
  }

  private hasDirect (peer: PeerId): boolean {
    return this.libp2p.getConnections(peer).some(c => !isLimited(c) && c.status === 'open')
  }

  private async upgrade (peer: PeerId, targets: Multiaddr[], since: number): Promise<void> {
    const key = peer.toString()
    if (this.upgrading.has(key) || this.hasDirect(peer)) return
    this.upgrading.add(key)
    this.stats.attempts++
    try {
      for (let i = 0; i < this.init.attempts && !this.controller.signal.aborted; i++) {
        const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.init.dialTimeoutMs)])
        try {
          const conn = await this.libp2p.dial(targets, { signal })
          if (!isLimited(conn)) {
            const ms = performance.now() - since
            this.stats.succeeded++
            this.stats.msToDirect.push(Math.round(ms))
            if (this.stats.msToDirect.length > 100) this.stats.msToDirect.shift()
            log('direct connection to %p after %d ms over %a', peer, Math.round(ms), conn.remoteAddr)
            return
          }
        } catch (err) {
          log('direct dial %d to %p failed: %s', i + 1, peer, (err as Error).message)
        }
        if (this.hasDirect(peer)) {
          this.stats.succeeded++
          this.stats.msToDirect.push(Math.round(performance.now() - since))
          return
        }
        await new Promise(resolve => setTimeout(resolve, this.init.retryDelayMs))
      }
      this.stats.failed++
      log('no direct connection to %p: it stays relayed', peer)
    } finally {
      this.upgrading.delete(key)
    }
  }
}
