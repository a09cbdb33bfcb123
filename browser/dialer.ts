/**
 * A tab keeps direct connections to the peers it knows: Node peers over
 * WebSockets (or WebRTC-direct), other tabs over WebRTC signalled through a
 * relay. Node peers cannot dial a tab, and the core's peer exchange dials a
 * newcomer once, so without this a tab would reach only its bootstrap peer.
 *
 * Every dial is bounded: a few attempts, each with a short timeout and the
 * caller's AbortSignal. That is the second line of defence against WebRTC
 * dials that stall (the first is the patch in browser/webrtc-init.ts): a
 * stalled attempt costs `attemptTimeoutMs`, never the dial.
 */
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { PeerDiedError } from '../core/errors.ts'
import { abortReason } from '../core/signals.ts'

const log = logger('refmesh:dialer')

export const DIALER_DEFAULTS = {
  /** how often the tab looks for known peers it has no direct connection to */
  intervalMs: 1_000,
  attempts: 4,
  /** a healthy loopback WebRTC dial takes well under a second, a loaded one a few */
  attemptTimeoutMs: 5_000,
  /** the pause before attempt n is n times this */
  backoffMs: 250,
  /**
   * Of two tabs that learn of each other, the one with the smaller peer id
   * dials; the other waits this long first, so they rarely build two WebRTC
   * connections, yet one that cannot dial out is still reached.
   */
  glareGraceMs: 6_000,
  /** the most peers a tab keeps connected on its own (others are dialed when a call needs them) */
  maxPeers: 64
} as const

/** how often connect() looks again for the addresses of a peer it knows none of */
const ADDRESS_POLL_MS = 100

export interface DialOptions {
  attempts?: number
  attemptTimeoutMs?: number
  backoffMs?: number
  signal?: AbortSignal
}

/**
 * Addresses a tab can dial, best first: WebSockets, WebRTC-direct, then WebRTC
 * through a relay. A page served over https (`secureOrigin`, by default this
 * page's own) puts plain ws:// after WebRTC-direct: it is mixed content there,
 * which browsers warn about or refuse, while WebRTC-direct needs no certificate.
 */
export function browserDialable (addrs: string[], options: { secureOrigin?: boolean } = {}): Multiaddr[] {
  const secureOrigin = options.secureOrigin ?? globalThis.location?.protocol === 'https:'
  // The rank of a transport a tab can dial, by the protocol names of an address (or the relay part of one).
  const direct = (names: string[]): number => {
    if (names.includes('wss') || (names.includes('ws') && names.includes('tls'))) return 0
    if (names.includes('ws')) return secureOrigin ? 2 : 0
    if (names.includes('webrtc-direct')) return 1
    return -1
  }
  const rank = (names: string[]): number => {
    const circuit = names.indexOf('p2p-circuit')
    if (circuit < 0) return direct(names)
    // Only WebRTC through a relay: a plain relayed connection has limits no refmesh protocol runs on.
    // The relay itself must be one a tab can reach.
    if (!names.includes('webrtc')) return -1
    const relay = direct(names.slice(0, circuit))
    return relay < 0 ? -1 : 3 + relay
  }
  return addrs
    .flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
    .map(ma => ({ ma, rank: rank(ma.getComponents().map(c => c.name)) }))
    .filter(x => x.rank >= 0)
    .sort((a, b) => a.rank - b.rank)
    .map(x => x.ma)
}

export function hasDirectConnection (libp2p: Libp2p, peer: string): boolean {
  return libp2p.getConnections(peerIdFromString(peer)).some(c => c.status === 'open' && (c.limits === undefined || c.limits === null))
}

/**
 * Dials `addrs` in order until one gives an unlimited connection, for up to
 * `attempts` rounds, each address with its own `attemptTimeoutMs`.
 */
export async function dialWithRetry (libp2p: Libp2p, addrs: Multiaddr[], options: DialOptions = {}): Promise<Connection> {
  const attempts = options.attempts ?? DIALER_DEFAULTS.attempts
  const attemptTimeoutMs = options.attemptTimeoutMs ?? DIALER_DEFAULTS.attemptTimeoutMs
  const backoffMs = options.backoffMs ?? DIALER_DEFAULTS.backoffMs
  const { signal } = options
  const failures: string[] = []
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0) await pause(attempt * backoffMs, signal)
    for (const addr of addrs) {
      if (signal?.aborted === true) throw abortReason(signal, `dial of ${addr.toString()}`)
      const attemptSignal = signal === undefined ? AbortSignal.timeout(attemptTimeoutMs) : AbortSignal.any([signal, AbortSignal.timeout(attemptTimeoutMs)])
      try {
        const conn = await libp2p.dial(addr, { signal: attemptSignal })
        if (conn.limits === undefined || conn.limits === null) {
          if (attempt > 0) log('dial of %a succeeded on attempt %d', addr, attempt + 1)
          return conn
        }
        failures.push(`${addr.toString()}: a relayed connection with limits`)
      } catch (err) {
        if (isAborted(signal)) throw abortReason(signal, `dial of ${addr.toString()}`)
        failures.push(`${addr.toString()}: ${(err as Error).message}`)
        log('dial attempt %d of %a failed: %s', attempt + 1, addr, (err as Error).message)
      }
    }
  }
  throw new PeerDiedError(`no direct connection after ${attempts} attempts: ${failures.slice(-addrs.length).join('; ')}`)
}

function isAborted (signal: AbortSignal | undefined): signal is AbortSignal {
  return signal?.aborted === true
}

/** The peer id an address ends with, if any. */
export function peerOf (ma: Multiaddr): string | undefined {
  return ma.getComponents().findLast(c => c.name === 'p2p')?.value
}

async function pause (ms: number, signal: AbortSignal | undefined): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(abortReason(signal as AbortSignal, 'dial backoff')) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** What the dialer needs from the mesh: who is out there and where they listen. */
export interface KnownPeers {
  readonly peerId: string
  peers: () => Array<{ peer: string, addrs: string[], liveness: string }>
}

export interface PeerDialerInit extends DialOptions {
  libp2p: Libp2p
  mesh: KnownPeers
  intervalMs?: number
  glareGraceMs?: number
  maxPeers?: number
}

export class PeerDialer {
  private readonly init: PeerDialerInit
  private readonly dialing = new Map<string, Promise<Connection>>()
  /** when each peer was first seen without a direct connection (for the glare rule) */
  private readonly unconnectedSince = new Map<string, number>()
  private timer: ReturnType<typeof setInterval> | undefined
  private controller = new AbortController()
  readonly stats = { dials: 0, connected: 0, failed: 0 }

  constructor (init: PeerDialerInit) {
    this.init = init
  }

  start (): void {
    if (this.timer !== undefined) return
    this.controller = new AbortController()
    this.timer = setInterval(() => { this.tick() }, this.init.intervalMs ?? DIALER_DEFAULTS.intervalMs)
    this.init.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    this.tick()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.init.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    this.controller.abort(new PeerDiedError('dialer stopped'))
    this.dialing.clear()
  }

  /**
   * A direct connection to `peer`, dialing it (with retries) if there is none.
   * With a signal, waits for the peer's addresses if none is known yet (a tab
   * has one only once a relay has given it a slot).
   */
  async connect (peer: string, options: { signal?: AbortSignal } = {}): Promise<Connection> {
    const { signal } = options
    for (;;) {
      const existing = this.init.libp2p.getConnections(peerIdFromString(peer)).find(c => c.status === 'open' && (c.limits === undefined || c.limits === null))
      if (existing !== undefined) return existing
      let dial = this.dialing.get(peer)
      if (dial === undefined) {
        const addrs = browserDialable(this.init.mesh.peers().find(p => p.peer === peer)?.addrs ?? [])
        if (addrs.length === 0) {
          if (signal === undefined) throw new PeerDiedError(`no address a browser can dial is known for ${peer}`)
          await pause(ADDRESS_POLL_MS, signal)
          continue
        }
        dial = this.dial(peer, addrs)
      }
      if (signal === undefined) return await dial
      return await Promise.race([dial, new Promise<never>((_resolve, reject) => {
        if (signal.aborted) reject(abortReason(signal, `connect to ${peer}`))
        signal.addEventListener('abort', () => { reject(abortReason(signal, `connect to ${peer}`)) }, { once: true })
      })])
    }
  }

  private dial (peer: string, addrs: Multiaddr[]): Promise<Connection> {
    this.stats.dials++
    const { attempts, attemptTimeoutMs, backoffMs } = this.init
    const dial = dialWithRetry(this.init.libp2p, addrs, { attempts, attemptTimeoutMs, backoffMs, signal: this.controller.signal })
    this.dialing.set(peer, dial)
    dial.then(() => {
      this.stats.connected++
      this.unconnectedSince.delete(peer)
    }, (err: Error) => {
      this.stats.failed++
      log('could not connect to %s: %s', peer, err.message)
    }).finally(() => { if (this.dialing.get(peer) === dial) this.dialing.delete(peer) })
    return dial
  }

  private tick (): void {
    const { libp2p, mesh } = this.init
    const now = Date.now()
    const maxPeers = this.init.maxPeers ?? DIALER_DEFAULTS.maxPeers
    const grace = this.init.glareGraceMs ?? DIALER_DEFAULTS.glareGraceMs
    let kept = libp2p.getPeers().length
    for (const p of mesh.peers()) {
      if (p.peer === mesh.peerId || p.liveness !== 'alive' || this.dialing.has(p.peer)) continue
      if (hasDirectConnection(libp2p, p.peer)) {
        this.unconnectedSince.delete(p.peer)
        continue
      }
      const addrs = browserDialable(p.addrs)
      if (addrs.length === 0 || kept >= maxPeers) continue
      const since = this.unconnectedSince.get(p.peer) ?? now
      this.unconnectedSince.set(p.peer, since)
      const isTab = addrs.every(a => a.getComponents().some(c => c.name === 'webrtc'))
      if (isTab && mesh.peerId > p.peer && now - since < grace) continue
      kept++
      this.connect(p.peer).catch(() => {})
    }
  }

  private readonly onDisconnect = (): void => {
    // A lost link is worth mending before the next tick.
    queueMicrotask(() => { if (this.timer !== undefined) this.tick() })
  }
}
