/**
 * A peer, as the API of DESIGN.md section 1: the facade and the wiring. It
 * builds the parts and routes each message to the part that answers it; the
 * logic lives in the parts, each a module of its own. A call's path, by file:
 *
 *   remote()        calls.ts    encode arguments, pin the Refs they mention, own the result
 *   placed          calls.ts    wait for owned arguments, place (scheduler.ts), send, retry, spillback
 *   runs            serve.ts    admit, fetch dereferenced arguments, run (executor.ts)
 *   result stored   serve.ts    inline in the reply, or in the executor's store for its owner
 *   onReply()       calls.ts    record where the result is, unpin the arguments
 *   get()           objects.ts  find the value (local, owner, or pull its chunks: transfer.ts)
 *   freed           objects.ts  freeOwned(), when no peer refers to it (ownership.ts counts)
 *
 * The other parts: replicas.ts (quorum calls), lineage.ts (a lost result is
 * computed again), broadcast.ts (copies ahead of calls, the owner's
 * distribution tree), streams.ts (objects larger than memory), names.ts
 * (publish, lookup), handoffs.ts (Refs in flight stay pinned), peers.ts
 * (hello, peer exchange, the state this peer gossips, the redial that tells a
 * dead process at once), actors.ts (actors, and their restarts).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { ControlChannels } from './channel.ts'
import type { EnvelopeBody } from './channel.ts'
import { DEFAULT_CHUNK_SIZE, webCryptoSha256 } from './chunks.ts'
import { PeerDiedError, ProtocolError } from './errors.ts'
import { MemoryAdmission } from './admission.ts'
import { ACTOR_RESTART, ActorClients, ActorHost } from './actors.ts'
import type { ActorClass, ActorDesc, ActorFactory, ActorHandle, ActorOptions } from './actors.ts'
import { MeshAuth } from './auth.ts'
import { Broadcast } from './broadcast.ts'
import { Calls } from './calls.ts'
import type { PeerContext } from './context.ts'
import { Executor } from './executor.ts'
import type { AnyFunction } from './executor.ts'
import { Gossip, STATE_TOPIC } from './gossip.ts'
import type { PubSub } from './gossip.ts'
import { Handoffs } from './handoffs.ts'
import { Lineage } from './lineage.ts'
import { Membership } from './membership.ts'
import type { DeathCause, Liveness, PeerState } from './membership.ts'
import { Names } from './names.ts'
import { Objects } from './objects.ts'
import { OwnershipTable } from './ownership.ts'
import { Peers } from './peers.ts'
import type { Envelope } from './protocol/messages.ts'
import { PeerQuotas } from './quota.ts'
import type { Ref } from './ref.ts'
import { objectKey } from './ref.ts'
import { Replicas } from './replicas.ts'
import { checkReturns } from './returns.ts'
import { Scheduler } from './scheduler.ts'
import { Serve } from './serve.ts'
import { shareSignal, withTimeout } from './signals.ts'
import { ObjectStore } from './store.ts'
import { Streams } from './streams.ts'
import { TrafficCounter } from './traffic.ts'
import { Transfer, transferDefaults } from './transfer.ts'
import { detour } from './detour.ts'
import type { BroadcastOptions, CallOptions, GetOptions, MeshInit, MeshStats, PutOptions, RemoteFunction, SuspectRecord, WaitOptions } from './types.ts'
import { DEFAULTS, parseBytes } from './constants.ts'

export type { BroadcastOptions, CallOptions, GetOptions, MeshInit, MeshStats, MultiReturnFunction, PutOptions, RemoteArgs, RemoteFunction, SuspectRecord, WaitOptions } from './types.ts'
export { transportOf } from './peers.ts'

export class Mesh {
  readonly libp2p: Libp2p
  readonly peerId: string
  readonly store: ObjectStore
  private readonly table: OwnershipTable
  private readonly channels: ControlChannels
  private readonly transfer: Transfer
  private readonly membership: Membership
  private readonly quotas: PeerQuotas
  private readonly auth: MeshAuth | undefined
  private readonly gossip: Gossip | undefined
  private readonly pubsub: PubSub | undefined
  private readonly traffic = new TrafficCounter()
  private readonly executor: Executor
  private readonly scheduler = new Scheduler({ defaultCallMs: DEFAULTS.defaultCallMs })
  private readonly actorHost = new ActorHost(() => this.peerId)
  private readonly stopController = new AbortController()
  private started = false
  // the parts, in the order of a call's path
  private readonly calls: Calls
  private readonly replicas: Replicas
  private readonly serve: Serve
  private readonly objects: Objects
  private readonly streams: Streams
  private readonly lineage: Lineage
  private readonly distribution: Broadcast
  private readonly handoffs: Handoffs
  private readonly names: Names
  private readonly peerInfo: Peers
  private readonly actorClients: ActorClients

  constructor (init: MeshInit) {
    this.libp2p = init.libp2p
    this.peerId = init.libp2p.peerId.toString()
    this.pubsub = init.pubsub
    const capacity = parseBytes(init.store?.capacity ?? DEFAULTS.storeCapacity)
    this.store = new ObjectStore({
      capacity,
      shared: init.sharedMemory,
      spill: init.store?.spill,
      spillCapacity: init.store?.spillCapacity !== undefined ? parseBytes(init.store.spillCapacity) : capacity * DEFAULTS.spillCapacityFactor,
      spillFraction: DEFAULTS.spillFraction,
      memoryWaitMs: init.store?.memoryWaitMs ?? DEFAULTS.memoryWaitMs,
      reclaim: init.store?.reclaim,
      allocate: init.store?.allocate,
      onRelief: () => { admission.recheck() }
    })
    const admitBytes = (): number => Math.max(0, Math.floor(this.store.capacity * DEFAULTS.admitFraction) - this.store.used)
    const admission = new MemoryAdmission({ room: admitBytes, maxWaitMs: DEFAULTS.admissionWaitMs, freeing: () => this.store.freeing, enabled: init.admission ?? true })
    const sha256 = init.sha256 ?? webCryptoSha256
    this.executor = new Executor(init.callContext)
    if (init.backend !== undefined) this.executor.setBackend(init.backend)
    const heartbeatMs = init.heartbeatMs ?? DEFAULTS.heartbeatMs
    this.membership = new Membership({
      heartbeatMs,
      suspectAfterBeats: DEFAULTS.suspectAfterBeats,
      deadAfterBeats: DEFAULTS.deadAfterBeats,
      deadWhileConnectedBeats: DEFAULTS.deadWhileConnectedBeats,
      maxPeers: DEFAULTS.maxKnownPeers
    })
    this.gossip = init.pubsub === undefined
      ? undefined
      : new Gossip({ pubsub: init.pubsub, membership: this.membership, heartbeatMs, state: () => this.peerInfo.gossipedState(), maxQuietBeats: DEFAULTS.stateQuietBeats,
        deepQuiet: { afterBeats: DEFAULTS.deepQuietBeats, helloBeats: DEFAULTS.deepQuietHelloBeats },
        sayAlive: (state, resend) => this.peerInfo.sayAlive(state, resend), reachesView: () => this.peerInfo.reachesView() })
    this.table = new OwnershipTable({
      self: this.peerId,
      sendBorrow: async (owner, id, add) => {
        await this.channels.request(owner, { borrow: { id, add } }, { signal: this.stopController.signal })
      },
      onFree: (entry, owned) => { this.objects.freeOwned(entry, owned) }
    })
    this.quotas = new PeerQuotas({
      callsInFlight: init.quotas?.callsInFlight ?? DEFAULTS.quotaCallsInFlight,
      chunksInFlight: init.quotas?.chunksInFlight ?? DEFAULTS.quotaChunksInFlight,
      storedBytes: init.quotas?.storedBytes ?? Math.floor(capacity * DEFAULTS.quotaStoredBytesFraction),
      gossipPerSecond: init.quotas?.gossipPerSecond ?? DEFAULTS.quotaGossipPerSecond,
      strikesBeforeHangUp: init.quotas?.strikesBeforeHangUp ?? DEFAULTS.quotaStrikesBeforeHangUp,
      strikeWindowMs: init.quotas?.strikeWindowMs ?? DEFAULTS.quotaStrikeWindowMs
    }, peer => { this.libp2p.hangUp(peerIdFromString(peer)).catch(() => {}) })
    this.auth = init.secret === undefined ? undefined : new MeshAuth({ libp2p: init.libp2p, secret: init.secret, timeoutMs: init.authTimeoutMs ?? DEFAULTS.authTimeoutMs })
    const admit = this.auth === undefined ? undefined : async (peer: string, signal?: AbortSignal) => { await this.auth?.admit(peer, signal) }
    this.channels = new ControlChannels({
      admit,
      libp2p: this.libp2p,
      traffic: this.traffic,
      maxFrameBytes: init.maxControlFrameBytes ?? DEFAULTS.maxControlFrameBytes,
      onRequest: (from, env) => this.onRequest(from, env),
      // A peer busy answering calls may gossip late, but it is plainly alive.
      onHeard: peer => { this.membership.touch(peer) }
    })
    this.transfer = new Transfer({
      admit,
      quotas: this.quotas,
      libp2p: this.libp2p,
      store: this.store,
      traffic: this.traffic,
      chunksInFlightPerSource: init.chunksInFlightPerSource ?? DEFAULTS.chunksInFlightPerSource,
      ...transferDefaults(),
      sha256,
      // Holders behind a relay: through a peer both reach directly (core/detour.ts).
      detour: async (object, holders, signal) => await detour({
        self: this.peerId,
        membership: this.membership,
        reachesDirectly: peer => this.libp2p.getConnections(peerIdFromString(peer)).some(c => c.limits == null && c.status === 'open'),
        prefetch: async (peer, desc, sig) => { await this.channels.request(peer, { prefetch: { object: desc } }, { signal: sig }) },
        // A holder that just disconnected is being redialled: refused in time, it is dead.
        verdict: async (peer, sig) => await this.membership.verdict(peer, DEFAULTS.redialTimeoutMs, sig)
      }, object, holders, signal),
      hooks: init.hooks,
      avoidBadSourceMs: init.avoid?.badSourceMs ?? DEFAULTS.avoidBadSourceMs,
      avoidDeniedMs: init.avoid?.deniedMs ?? DEFAULTS.avoidDeniedMs,
      swarm: init.swarm ?? true
    })
    const stopSignal = this.stopController.signal
    // Waited on by every call and get: one listener for all of them (signals.ts).
    shareSignal(stopSignal)
    const ctx: PeerContext = {
      peerId: this.peerId,
      table: this.table,
      store: this.store,
      channels: this.channels,
      transfer: this.transfer,
      membership: this.membership,
      quotas: this.quotas,
      inlineThreshold: init.inlineThresholdBytes ?? DEFAULTS.inlineThresholdBytes,
      chunkSize: init.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE,
      sha256,
      heartbeatMs,
      stopSignal,
      combine: signal => signal === undefined ? stopSignal : AbortSignal.any([stopSignal, signal]),
      admitBytes
    }
    const running = (): boolean => this.started
    this.handoffs = new Handoffs({ unpin: key => { this.table.unpin(key) } })
    this.distribution = new Broadcast({ ctx, swarm: init.swarm ?? true, objects: { whenReady: async (ref, signal) => { await this.objects.whenReady(ref, signal) }, fetchValue: async (desc, signal) => await this.objects.fetchValue(desc, signal) } })
    this.lineage = new Lineage({
      table: this.table,
      rerun: async (fn, args, options, result, returns) => { await this.calls.rerun(fn, args, options, result, returns) },
      isLost: key => this.objects.isLost(key),
      copiesLost: key => { this.distribution.forget(key) }
    })
    this.objects = new Objects({
      ctx,
      lineage: this.lineage,
      tree: this.distribution,
      onFreed: key => {
        this.actorClients.freed(key)
        this.lineage.drop(key)
        this.distribution.forget(key)
      }
    })
    this.streams = new Streams({ ctx, objects: this.objects })
    this.peerInfo = new Peers({ ctx, libp2p: this.libp2p, executor: this.executor, traffic: this.traffic, runtime: init.runtime ?? 'node', admit, names: () => this.names.names(), gossipNow: () => { this.gossip?.publish() }, running })
    this.serve = new Serve({ ctx, executor: this.executor, admission, prefetch: init.prefetch ?? true, objects: this.objects, handoffs: this.handoffs, spillbackState: () => this.peerInfo.state() })
    this.calls = new Calls({
      ctx,
      scheduler: this.scheduler,
      executor: this.executor,
      lineage: this.lineage,
      objects: this.objects,
      serveLocal: async (from, req) => await this.serve.onCall(from, req),
      releaseHandoff: (from, key) => { this.handoffs.release(from, key) },
      replicated: (fn, args, options) => this.replicas.remote(fn, args, options)
    })
    // Waiting on its replicas, a running call lends its share as in wait() (core/executor.ts).
    this.replicas = new Replicas({ ctx, calls: this.calls, objects: { wait: async (refs, o) => await this.wait(refs, o), fetchValue: this.objects.fetchValue.bind(this.objects), storeBytes: this.objects.storeBytes.bind(this.objects) } })
    this.names = new Names({ ctx, handoffs: this.handoffs, changed: () => { this.gossip?.publish() }, running })
    this.actorClients = new ActorClients({
      self: () => this.peerId,
      stopSignal,
      remote: (fn, args, options, order) => this.calls.remote(fn, args, options, order),
      submit: (fn, args, options, order) => this.calls.submit(fn, args, options, order),
      get: async (ref, options) => await this.get(ref, options),
      whenReady: async (ref, signal) => { await this.objects.whenReady(ref, signal) },
      pins: this.table,
      peers: {
        alive: peer => peer === this.peerId || this.membership.isAlive(peer),
        // within three times the failure detector's bound for a silent peer
        verdict: async (peer, signal) => await this.membership.verdict(peer, 3 * (DEFAULTS.deadAfterBeats + 1) * heartbeatMs, signal)
      }
    })
    this.executor.register(ACTOR_RESTART, async (handleKey: string, dead: string) => await this.actorClients.restartFor(handleKey, dead))
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.auth?.start()
    await this.peerInfo.start()
    // Gossip relayed by a peer that has not proved the secret never enters a private mesh,
    // and a peer relaying far more than the mesh makes is ignored, then hung up on.
    this.pubsub?.topicValidators?.set(STATE_TOPIC, (from: { toString(): string }) => {
      const peer = from.toString()
      if (this.auth !== undefined && !this.auth.isMember(peer)) return 'reject'
      return this.quotas.gossipAllowed(peer, 4 * this.membership.all().length) ? 'accept' : 'ignore'
    })
    await this.channels.start()
    await this.transfer.start()
    this.libp2p.addEventListener('peer:connect', this.peerInfo.onConnect)
    this.libp2p.addEventListener('peer:disconnect', this.peerInfo.onDisconnect)
    this.membership.onDeath((peer, cause) => { this.onPeerDead(peer, cause) })
    this.gossip?.start()
    for (const conn of this.libp2p.getConnections()) this.peerInfo.sayHello(conn.remotePeer.toString())
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.stopController.abort(new PeerDiedError('mesh stopped'))
    this.libp2p.removeEventListener('peer:connect', this.peerInfo.onConnect)
    this.libp2p.removeEventListener('peer:disconnect', this.peerInfo.onDisconnect)
    this.gossip?.stop()
    await this.channels.stop()
    await this.transfer.stop()
    await this.auth?.stop()
    await this.peerInfo.stop()
    await this.executor.close()
  }

  // ---------------------------------------------------------------- the API

  /** Offers `fn` to the mesh under `name`. It runs on this peer's own thread. */
  register (name: string, fn: AnyFunction): void {
    this.executor.register(name, fn)
    this.peerInfo.announce()
  }

  unregister (name: string): void {
    if (this.executor.unregister(name)) this.peerInfo.announce()
  }

  /** A typed stub for a function some peer offers. */
  fn<F extends AnyFunction> (name: string, options: CallOptions = {}): RemoteFunction<F> {
    if (options.returns !== undefined) checkReturns(options.returns, DEFAULTS.maxReturns)
    return {
      remote: (...args: unknown[]) => options.returns === undefined ? this.calls.remote(name, args, options) : this.calls.submit(name, args, options),
      options: (more: CallOptions) => this.fn<F>(name, { ...options, ...more })
    } as unknown as RemoteFunction<F>
  }

  /** Offers actors of class `cls` under `name`: `mesh.actor(name).create(...)` makes one here. */
  registerActor (name: string, cls: ActorClass): void {
    for (const [fn, impl] of this.actorHost.offer(name, cls)) this.executor.register(fn, impl)
    this.peerInfo.announce()
  }

  /** Creates actors of a registered class, on a peer that offers it (or the one `options` names). */
  actor<T> (name: string, options: ActorOptions = {}): ActorFactory<T> {
    return this.actorClients.factory<T>(name, options)
  }

  /** A handle of this peer's own for an actor whose Ref it was given (a SharedRef of another handle's `ref`). */
  async actorFromRef<T> (ref: Ref<ActorDesc>, options: GetOptions = {}): Promise<ActorHandle<T>> {
    return await this.actorClients.fromRef<T>(ref, options)
  }

  /** Stores a value in the mesh, owned by this peer (or handed to `options.owner`). Do not change the value afterwards. */
  put<T> (value: T, options: PutOptions = {}): Ref<T> {
    return this.objects.put(value, options)
  }

  /** The value of a Ref: waits until it is computed, pulls it here if it lives elsewhere. */
  get<T> (ref: Ref<T>, options: GetOptions = {}): Promise<T> {
    // A running call blocked here lends its share of this peer (core/executor.ts).
    return this.executor.blocked(() => this.objects.get(ref, options))
  }

  /** Waits until `count` of `refs` are ready (computed or failed) and returns that many (fewer on a timeout), the rest pending. Never throws for a failed Ref. */
  async wait (refs: Ref[], options: WaitOptions = {}): Promise<{ ready: Ref[], pending: Ref[] }> {
    return await this.executor.blocked(async () => await this.objects.wait(refs, options))
  }

  /** Stores `size` bytes arriving in pieces as one Uint8Array object, never whole in memory when it does not fit. */
  async putStream (pieces: AsyncIterable<Uint8Array>, size: number, options: PutOptions = {}): Promise<Ref<Uint8Array>> {
    return await this.streams.putStream(pieces, size, options)
  }

  /** The bytes of a Uint8Array object in order, chunk by chunk. */
  getStream (ref: Ref<Uint8Array>, options: GetOptions & { onProgress?: (bytes: number, total: number) => void } = {}): AsyncGenerator<Uint8Array> {
    return this.streams.getStream(ref, options)
  }

  /** Puts a copy of an object on `peers` (every live peer by default) ahead of the calls that will need it. */
  async broadcast (ref: Ref, options: BroadcastOptions = {}): Promise<{ ready: string[], failed: Array<{ peer: string, error: Error }> }> {
    return await this.distribution.broadcast(ref, options)
  }

  /** Publishes `ref` under `name` while this peer lives or until `unpublish(name)`. */
  publish (name: string, ref: Ref): void {
    this.names.publish(name, ref)
  }

  unpublish (name: string): boolean {
    return this.names.unpublish(name)
  }

  /** The object published under `name`, as a Ref of this peer's own; NameNotFoundError after `timeoutMs`. */
  async lookup<T = unknown> (name: string, options: GetOptions = {}): Promise<Ref<T>> {
    return await this.names.lookup<T>(name, options)
  }

  /** Connects to a peer by multiaddr (with its /p2p/ id) and waits for its Hello. */
  async connect (addr: string, options: GetOptions = {}): Promise<string> {
    return await this.peerInfo.connect(addr, options)
  }

  /** Resolves when `peer` has said Hello (or at once if it already has). */
  async waitForPeer (peer: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.peerInfo.waitForPeer(peer, options)
  }

  /** Peers this peer knows, with the functions they offer, their liveness and last gossiped state. */
  peers (): Array<{ peer: string, functions: string[], addrs: string[], liveness: Liveness, state?: PeerState }> {
    return this.peerInfo.peers()
  }

  /** Every peer this one knows and its last gossiped state, itself included (what the mesh page draws). */
  view (): Array<{ peer: string, self: boolean, liveness: Liveness, state?: Omit<PeerState, 'seq'> }> {
    return this.peerInfo.view()
  }

  stats (): MeshStats {
    return {
      peer: this.peerId,
      store: { ...this.store.stats(), keys: this.store.sampleKeys(1000) },
      refs: this.table.stats(),
      traffic: this.traffic.totals(),
      trafficByPeer: this.traffic.snapshot(),
      transfer: { ...this.transfer.stats },
      calls: {
        executed: this.executor.executed,
        running: this.executor.running,
        queued: this.executor.queued,
        slots: this.executor.slots,
        submitted: this.calls.submitted,
        spilledBack: this.serve.spilledBack,
        spillbacksReceived: this.calls.spillbacksReceived,
        reconstructions: this.lineage.reconstructions,
        outvoted: Object.fromEntries(this.replicas.outvoted),
        actors: this.actorHost.size
      },
      placed: Object.fromEntries(this.scheduler.placed),
      args: { ...this.serve.argBytes },
      gossip: { published: this.gossip?.published ?? 0, received: this.gossip?.received ?? 0, quiet: this.gossip?.quiet ?? 0, resent: this.gossip?.resent ?? 0 },
      auth: { private: this.auth !== undefined, refused: this.auth?.refused ?? 0 },
      quotas: { ...this.quotas.refused },
      suspects: this.suspects(),
      functions: this.executor.names(),
      names: this.names.sizes(),
      peers: this.membership.all().filter(p => p.liveness === 'alive').map(p => p.peer),
      membership: this.membership.all().map(p => ({ peer: p.peer, liveness: p.liveness, connected: p.connected })),
      deaths: { ...this.membership.deaths }
    }
  }

  /** Calls `listener` when a peer is declared dead, and how it was told; returns the unsubscribe. */
  onPeerDeath (listener: (peer: string, cause: DeathCause) => void): () => void {
    return this.membership.onDeath(listener)
  }

  /**
   * Remote peers caught misbehaving: serving chunks that fail their hash, denying
   * objects they were said to hold, outvoted results, requests past their quotas.
   * Each is avoided where it matters (pulls leave it out, quotas hang up on it);
   * this is the report, for an operator or a volunteer project's bookkeeping.
   */
  suspects (): Record<string, SuspectRecord> {
    const out: Record<string, SuspectRecord> = {}
    const of = (peer: string): SuspectRecord => (out[peer] ??= { badChunks: 0, falseClaims: 0, outvoted: 0, refused: 0 })
    for (const [peer, r] of Object.entries(this.transfer.sourceRecords())) Object.assign(of(peer), r)
    for (const [peer, n] of this.replicas.outvoted) of(peer).outvoted = n
    for (const [peer, n] of this.quotas.refusedByPeer) of(peer).refused = n
    return out
  }

  /** The stats of another peer (or this one), asked over the control channel. */
  async peerStats (peer: string, options: GetOptions = {}): Promise<MeshStats> {
    if (peer === this.peerId) return this.stats()
    const signal = withTimeout(options.signal, options.timeoutMs ?? 10_000, `stats of ${peer}`)
    const reply = await this.channels.request(peer, { stats: {} }, { signal })
    return JSON.parse(reply.statsReply?.json ?? '{}') as MeshStats
  }

  // ------------------------------------------------------------ wiring

  /** Each request to the part that answers it. */
  private onRequest (from: string, env: Envelope): Promise<EnvelopeBody> | EnvelopeBody {
    if (env.hello !== undefined) {
      this.peerInfo.onHello(from, env.hello.functions, env.hello.addrs, env.hello.peers)
      if (env.hello.state !== undefined) this.gossip?.onResent(from, env.hello.state)
      return {}
    }
    if (env.call !== undefined) return this.serve.onCall(from, env.call).then(callReply => ({ callReply }))
    if (env.locate !== undefined) {
      const req = env.locate
      return this.objects.describeOwned(objectKey(req.id), req, from).then(object => ({ locateReply: { object } }))
    }
    if (env.borrow !== undefined) {
      this.objects.onBorrow(from, env.borrow.id, env.borrow.add)
      return { ack: {} }
    }
    if (env.nameLookup !== undefined) return this.names.answerLookup(from, env.nameLookup.name)
    if (env.adopt !== undefined) {
      return this.objects.adopt(from, env.adopt.id, env.adopt.object ?? { status: 0, inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] }).then(() => ({ ack: {} }))
    }
    if (env.free !== undefined) {
      this.objects.onFree(from, env.free.ids)
      return {}
    }
    if (env.resultAck !== undefined) {
      this.handoffs.release(from, objectKey(env.resultAck.resultId))
      return {}
    }
    if (env.stats !== undefined) return { statsReply: { json: JSON.stringify(this.stats()) } }
    if (env.progress !== undefined) {
      // A receiver that has it all needs the owner no more.
      if (env.progress.complete) this.distribution.doneReceiving(objectKey(env.progress.id), from)
      return {}
    }
    if (env.prefetch !== undefined) return this.distribution.onPrefetch(from, env.prefetch.object).then(() => ({ ack: {} }))
    throw new ProtocolError('unknown or empty request')
  }

  /** The failure detector declared `peer` dead: every part forgets it. */
  private onPeerDead (peer: string, cause: DeathCause): void {
    this.peerInfo.onDead(peer, cause)
    this.channels.dropPeer(peer)
    this.quotas.forget(peer)
    this.table.peerGone(peer)
    this.objects.ownerGone(peer)
    this.handoffs.peerGone(peer)
    this.distribution.peerGone(peer)
  }
}
