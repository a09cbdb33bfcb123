/**
 * Peers: meeting other peers and telling them about this one. A Hello on each
 * new connection says which functions this peer offers and where it listens,
 * and passes on up to `helloPeers` peers it knows (peer exchange), so a mesh
 * closes up from one introduction; announce() says Hello again when the
 * functions change. state() is what this peer gossips of itself each heartbeat
 * (load, store, bandwidth, links, names), which placement reads. When a
 * peer's last connection closes it is redialled (redial.ts): a refused redial
 * makes it dead at once, not after the heartbeat bound.
 *
 * Answers: `hello`; on a public peer, a private mesh's auth challenge (refused,
 * and noted, so connect() can say why that peer will never greet this one).
 */
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, Libp2p } from '@libp2p/interface'
import type { EnvelopeBody } from './channel.ts'
import { DEFAULTS } from './constants.ts'
import type { PeerContext } from './context.ts'
import type { Executor } from './executor.ts'
import { AUTH_PROTOCOL, NotAMemberError } from './auth.ts'
import type { ChunkFlow, DeathCause, Liveness, PeerRecord, PeerState } from './membership.ts'
import { redial } from './redial.ts'
import { raceSignal, withTimeout } from './signals.ts'
import type { TrafficCounter } from './traffic.ts'
import type { GetOptions } from './types.ts'

const log = logger('refmesh:peers')

export interface PeersInit {
  ctx: PeerContext
  libp2p: Libp2p
  executor: Pick<Executor, 'names' | 'slots' | 'queued' | 'running' | 'pooledNames'>
  traffic: TrafficCounter
  /** what this peer runs in, told to others ('node' or 'browser') */
  runtime: string
  /** a private mesh: resolves when `peer` has proved the secret (auth.ts); absent on a public peer */
  admit?: (peer: string, signal?: AbortSignal) => Promise<void>
  /** the names this peer publishes (names.ts) */
  names: () => string[]
  /** gossip this peer's state now (gossip.ts) */
  gossipNow: () => void
  /** whether the mesh is running */
  running: () => boolean
}

export class Peers {
  private readonly init: PeersInit
  private readonly ctx: PeerContext
  private readonly libp2p: Libp2p
  /** the state last gossiped */
  private lastState: Omit<PeerState, 'seq'> | undefined
  private flowSample = { at: 0, chunkIn: new Map<string, number>() }
  /** public peers only: peers that challenged this one to prove a mesh secret (they are in a private mesh) */
  private readonly challengedBy = new Set<string>()

  constructor (init: PeersInit) {
    this.ctx = init.ctx
    this.libp2p = init.libp2p
    this.init = init
  }

  /** A public peer (no `admit`) refuses a private mesh's challenge, but notes who sent it. */
  async start (): Promise<void> {
    this.libp2p.addEventListener('connection:close', this.onConnectionClose)
    if (this.init.admit !== undefined) return
    await this.libp2p.handle(AUTH_PROTOCOL, (stream, connection) => {
      this.challengedBy.add(connection.remotePeer.toString())
      stream.abort(new NotAMemberError('this peer is not in a private mesh'))
    }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
  }

  async stop (): Promise<void> {
    this.libp2p.removeEventListener('connection:close', this.onConnectionClose)
    if (this.init.admit === undefined) await this.libp2p.unhandle(AUTH_PROTOCOL).catch(() => {})
  }

  /** The failure detector declared `peer` dead. */
  onDead (peer: string, cause: DeathCause): void {
    log('peer %s is dead (%s)', peer, cause === 'refused' ? 'its connections closed and a redial was refused' : 'silent past the heartbeat bound')
  }

  /** This peer's state, as it gossips it (and remembers it for view()). */
  gossipedState (): Omit<PeerState, 'seq'> {
    return (this.lastState = this.state())
  }

  /** Connects to a peer by multiaddr (with its /p2p/ id) and waits for its Hello. */
  async connect (addr: string, options: GetOptions = {}): Promise<string> {
    const signal = withTimeout(options.signal, options.timeoutMs ?? 10_000, `connect(${addr})`)
    const conn = await this.libp2p.dial(multiaddr(addr), { signal })
    const peer = conn.remotePeer.toString()
    // In a private mesh a peer that fails the challenge (a wrong secret, here or there) is known
    // at once; waiting for its hello would only run out the clock.
    await this.init.admit?.(peer, signal)
    // A private mesh's peer says Hello only to peers that answer its challenge, which one without the secret cannot.
    const challenged = new Promise<never>((_resolve, reject) => {
      const check = (): void => {
        if (this.challengedBy.has(peer)) reject(new NotAMemberError(`${peer} is in a private mesh, and this peer has no mesh secret`))
        else if (signal?.aborted !== true && !this.ctx.membership.isAlive(peer)) setTimeout(check, 50)
      }
      check()
    })
    challenged.catch(() => {})
    await Promise.race([this.waitForPeer(peer, { signal }), challenged])
    return peer
  }

  /** Resolves when `peer` has said Hello (or at once if it already has). */
  async waitForPeer (peer: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.ctx.membership.isAlive(peer)) return
    let unsubscribe = (): void => {}
    const known = new Promise<void>(resolve => {
      unsubscribe = this.ctx.membership.onChange(() => { if (this.ctx.membership.isAlive(peer)) resolve() })
    })
    try {
      await raceSignal(known, options.signal, `waiting for ${peer}`)
    } finally {
      unsubscribe()
    }
  }

  /** Peers this peer knows, with the functions they offer, their liveness and last gossiped state. */
  peers (): Array<{ peer: string, functions: string[], addrs: string[], liveness: Liveness, state?: PeerState }> {
    return this.ctx.membership.all().map(p => ({ peer: p.peer, functions: [...p.functions], addrs: p.addrs, liveness: p.liveness, state: p.state }))
  }

  /** This peer's state, as it gossips it. */
  state (): Omit<PeerState, 'seq'> {
    const store = this.ctx.store.stats()
    return {
      peer: this.ctx.peerId,
      functions: this.init.executor.names(),
      addrs: this.ownAddrs(),
      slots: this.init.executor.slots,
      queued: this.init.executor.queued,
      running: this.init.executor.running,
      storeUsed: store.bytes,
      storeCapacity: store.capacity,
      spilledBytes: store.spilledBytes,
      admitBytes: this.ctx.admitBytes(),
      bandwidth: this.ctx.transfer.bandwidth(),
      pooledFunctions: this.init.executor.pooledNames(),
      runtime: this.init.runtime,
      links: this.libp2p.getConnections().map(c => ({ peer: c.remotePeer.toString(), transport: transportOf(c.remoteAddr.toString(), c.limits !== undefined) })),
      flows: this.chunkFlows(),
      names: this.init.names().slice(0, DEFAULTS.namesGossiped)
    }
  }

  /**
   * This peer's addresses, asked of libp2p each time (~1 ms a heartbeat). Kept until
   * `self:peer:update` they went stale in tabs: a tab's relayed WebRTC address came
   * late to the others and tab-to-tab dials found none (test/browser/webrtc-init).
   */
  private ownAddrs (): string[] {
    return this.libp2p.getMultiaddrs().map(a => a.toString())
  }

  /** Chunk bytes per second from each source since the last sample (one sample per heartbeat). */
  private chunkFlows (): ChunkFlow[] {
    const now = performance.now()
    const seconds = (now - this.flowSample.at) / 1000
    const flows: ChunkFlow[] = []
    const chunkIn = new Map<string, number>()
    for (const [peer, t] of Object.entries(this.init.traffic.snapshot())) {
      chunkIn.set(peer, t.chunkIn)
      const before = this.flowSample.chunkIn.get(peer)
      if (before !== undefined && t.chunkIn > before && seconds > 0) flows.push({ from: peer, bytesPerSecond: (t.chunkIn - before) / seconds })
    }
    this.flowSample = { at: now, chunkIn }
    return flows
  }

  /** Every peer this one knows and its last gossiped state, itself included (what the mesh page draws). */
  view (): Array<{ peer: string, self: boolean, liveness: Liveness, state?: Omit<PeerState, 'seq'> }> {
    const others = this.ctx.membership.all().map(p => ({ peer: p.peer, self: false, liveness: p.liveness, state: p.state }))
    return [{ peer: this.ctx.peerId, self: true, liveness: 'alive' as Liveness, state: this.lastState ?? this.state() }, ...others]
  }

  readonly onConnect = (evt: CustomEvent<{ toString(): string }>): void => {
    const peer = evt.detail.toString()
    this.ctx.membership.connected(peer)
    this.sayHello(peer)
  }

  /**
   * peers whose redial probe this peer is closing, and since when: their disconnect is not
   * probed again. A mark counts only for `redialTimeoutMs`: the probe's own disconnect comes
   * at once, and a mark that outlived it (another connection came up as the probe closed, so
   * no disconnect came) would swallow the next real one; a peer SIGKILLed then was declared
   * dead by the heartbeats, 5 s late, instead of by its refused redial.
   */
  private readonly probed = new Map<string, number>()

  /**
   * peers whose last closed connection was relayed (limited), and when: their redial probe
   * keeps the connection it opens. That connection is the direct one (a WebRTC connection
   * punched through the NATs, often the very dial the NAT upgrader has under way, which the
   * probe's dial joins): closing it cut two volunteers behind NATs apart as they met.
   */
  private readonly lostRelayed = new Map<string, number>()

  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    const peer = conn.remotePeer.toString()
    if (conn.limits != null) this.lostRelayed.set(peer, performance.now())
    else this.lostRelayed.delete(peer)
  }

  readonly onDisconnect = (evt: CustomEvent<{ toString(): string }>): void => {
    const peer = evt.detail.toString()
    log('peer %s disconnected', peer)
    // Calls waiting on it fail now (and are retried elsewhere); what it borrows
    // or holds is forgotten only once the failure detector declares it dead.
    this.ctx.channels.dropPeer(peer)
    this.ctx.membership.disconnected(peer)
    // A peer whose process died refuses the redial: dead now, not after the heartbeat bound.
    const probing = this.probed.get(peer)
    this.probed.delete(peer)
    if (probing !== undefined && performance.now() - probing < DEFAULTS.redialTimeoutMs) return
    // The redial is a probe: a connection it opens is closed again (its own disconnect is
    // not probed), so a peer that hung up on this one (a quota) is not dialled back into;
    // but a direct one that replaces a relayed connection is kept (lostRelayed).
    const dial = async (addrs: Multiaddr[], o: { signal: AbortSignal }): Promise<void> => {
      // A connection that came up meanwhile (the peer dialled back, an upgrade) is returned
      // by the dial as it is: it is not the probe's to close.
      const before = new Set(this.libp2p.getConnections(peerIdFromString(peer)).map(c => c.id))
      const probe = await this.libp2p.dial(addrs, o)
      if (before.has(probe.id) || probe.direction === 'inbound' || this.libp2p.getConnections(probe.remotePeer).length > 1) return
      // libp2p tells of the disconnect before the connection's own close event, so this is read after the dial.
      const relayedAt = this.lostRelayed.get(peer)
      this.lostRelayed.delete(peer)
      if (relayedAt !== undefined && performance.now() - relayedAt < 2 * DEFAULTS.redialTimeoutMs && probe.limits == null) {
        log('redial probe of %s came back direct (%s) where a relayed connection closed: kept', peer, probe.remoteAddr.toString())
        return
      }
      this.probed.set(peer, performance.now())
      log('redial probe of %s opened %s; closing it', peer, probe.remoteAddr.toString())
      // A graceful close that times out (a stream the other end keeps open) leaves libp2p's
      // connection half-closed: listed as open, yet refusing every new stream. Abort it then.
      await probe.close().catch((err: Error) => {
        this.probed.delete(peer)
        log('redial probe of %s did not close: %s; aborting it', peer, err.message)
        probe.abort(err)
      })
      // Another connection came up while the probe closed (the peer's own redial of this one):
      // the probe's close was no disconnect, and a mark left behind would swallow the next real
      // one (a peer that then dies would be declared dead by the heartbeats, not the redial).
      if (this.libp2p.getConnections(probe.remotePeer).some(c => c.id !== probe.id)) this.probed.delete(peer)
    }
    redial({ dial, timeoutMs: DEFAULTS.redialTimeoutMs }, peer, this.ctx.membership.get(peer)?.addrs ?? [], this.ctx.stopSignal)
      .then(verdict => { if (verdict === 'refused' && this.libp2p.getConnections(peerIdFromString(peer)).length === 0) this.ctx.membership.declareDead(peer, 'refused') })
      .catch((err: Error) => { log('redial of %s: %s', peer, err.message) })
  }

  private hello (): EnvelopeBody {
    return {
      hello: {
        functions: this.init.executor.names(),
        addrs: this.ownAddrs(),
        peers: this.ctx.membership.all().filter(p => p.liveness !== 'dead').slice(0, DEFAULTS.helloPeers).map(p => ({ peer: p.peer, addrs: p.addrs }))
      }
    }
  }

  /**
   * The liveness beat in a heartbeat with no state gossiped (gossip.ts): a hello
   * with no peer exchange on the control stream of each peer in the view. It
   * costs a frame per peer, where a state costs a signature, a check by every
   * receiver and copies relayed between them. False, and nothing sent, when some
   * peer of the view has no direct connection from this one (unconnected, or only
   * relayed: control streams do not run there), as only gossip reaches it. `resend`,
   * this peer's unchanged state, goes in the hellos for peers that missed its gossip.
   */
  sayAlive (state: Pick<PeerState, 'functions' | 'addrs'>, resend?: PeerState): boolean {
    const view = this.directView()
    if (view === undefined) return false
    const beat: EnvelopeBody = { hello: { functions: state.functions, addrs: state.addrs, peers: [], state: resend } }
    for (const p of view) {
      this.ctx.channels.send(p.peer, beat, { signal: this.ctx.stopSignal }).catch((err: Error) => {
        log('liveness hello to %s failed: %s', p.peer, err.message)
      })
    }
    return true
  }

  /** Whether sayAlive would reach every peer of the view now. */
  reachesView (): boolean {
    return this.directView() !== undefined
  }

  /** The peers of the view (not dead), if this peer has a direct connection to each; else undefined. */
  private directView (): PeerRecord[] | undefined {
    const direct = new Set<string>()
    for (const c of this.libp2p.getConnections()) if (c.limits == null && c.status === 'open') direct.add(c.remotePeer.toString())
    const view = this.ctx.membership.all().filter(p => p.liveness !== 'dead')
    return view.every(p => direct.has(p.peer)) ? view : undefined
  }

  sayHello (peer: string): void {
    this.ctx.channels.send(peer, this.hello(), { signal: this.ctx.stopSignal }).catch((err: Error) => {
      log('hello to %s failed: %s', peer, err.message)
    })
  }

  announce (): void {
    if (!this.init.running()) return
    for (const conn of this.libp2p.getConnections()) this.sayHello(conn.remotePeer.toString())
    this.init.gossipNow()
  }

  onHello (from: string, functions: string[], addrs: string[], peers: Array<{ peer: string, addrs: string[] }>): void {
    const isNew = !this.ctx.membership.has(from)
    this.ctx.membership.heard(from, { functions, addrs })
    this.ctx.membership.connected(from)
    // Peer exchange: remember where our neighbour's peers listen, and meet them.
    for (const p of peers) {
      if (p.peer === this.ctx.peerId || this.ctx.membership.has(p.peer) || p.addrs.length === 0) continue
      let peerId
      try { peerId = peerIdFromString(p.peer) } catch { continue }
      const multiaddrs = p.addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
      if (this.libp2p.getConnections(peerId).length > 0) continue
      this.libp2p.peerStore.merge(peerId, { multiaddrs })
        .then(async () => await this.libp2p.dial(peerId, { signal: AbortSignal.timeout(10_000) }))
        .catch((err: Error) => { log('dial of %s from peer exchange failed: %s', p.peer, err.message) })
    }
    // Tell our other neighbours about a newcomer, so the mesh closes up without waiting for them to ask.
    if (isNew) {
      for (const conn of this.libp2p.getConnections()) {
        const peer = conn.remotePeer.toString()
        if (peer !== from) this.sayHello(peer)
      }
    }
  }
}

/**
 * How a connection runs, from its remote address and whether it is limited (a relayed
 * connection is; a WebRTC connection signalled through a relay is not, and its address
 * may still name the relay).
 */
export function transportOf (addr: string, limited = false): string {
  if (/\/webrtc(\/|$)/.test(addr)) return 'webrtc'
  if (limited || addr.includes('/p2p-circuit')) return 'relay'
  if (addr.includes('/webrtc-direct')) return 'webrtc-direct'
  if (/\/wss?(\/|$)/.test(addr)) return 'ws'
  return 'tcp'
}
