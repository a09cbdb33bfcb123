/**
 * The mesh as one peer sees it: the API of DESIGN.md section 1, and the path of
 * a call from `remote()` to `get()`, read top to bottom:
 *
 *   remote()   encode arguments, pin the Refs they mention, own the result
 *   dispatch() wait for owned arguments, place the call, send it
 *   onCall()   (executor) fetch dereferenced arguments, run, store or inline the result
 *   onReply()  (caller) record where the result is, unpin the arguments
 *   get()      find the value (local, owner, or pull its chunks) and decode it
 */
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { toString } from 'uint8arrays/to-string'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from '@libp2p/interface'
import { ControlChannels } from './channel.ts'
import type { EnvelopeBody } from './channel.ts'
import { DEFAULT_CHUNK_SIZE, chunkCount, makeManifest, webCryptoSha256 } from './chunks.ts'
import type { Hasher } from './chunks.ts'
import { Encoding, containedRefs, decodeArgs, decodeValue, encodeArgs, encodeValue } from './codec.ts'
import type { EncodedValue } from './codec.ts'
import {
  FunctionNotFoundError, NameNotFoundError, ObjectLostError, QuorumError, QuotaExceededError, OutOfMemoryError, OwnerDiedError, TimeoutError, PeerDiedError, ProtocolError, errorToInfo, infoToError
} from './errors.ts'
import type { ErrorInfo } from './errors.ts'
import { MemoryAdmission } from './admission.ts'
import type { Admitted } from './admission.ts'
import { ACTOR_CALL, ACTOR_CREATE, ACTOR_STOP, ActorHost, ActorLife, actorRestarts } from './actors.ts'
import type { ActorClass, ActorDesc, ActorFactory, ActorHandle, ActorOptions, PeerVerdicts } from './actors.ts'
import { AUTH_PROTOCOL, MeshAuth, NotAMemberError } from './auth.ts'
import { PeerQuotas } from './quota.ts'
import type { QuotaLimits } from './quota.ts'
import { Executor } from './executor.ts'
import type { AnyFunction, CallContext, ExecutorBackend } from './executor.ts'
import { Gossip, STATE_TOPIC } from './gossip.ts'
import type { PubSub } from './gossip.ts'
import { Membership } from './membership.ts'
import type { ChunkFlow, DeathCause, Liveness, PeerState } from './membership.ts'
import { redial } from './redial.ts'
import { OwnershipTable } from './ownership.ts'
import type { Entry, OwnedObject } from './ownership.ts'
import { ObjectStatus } from './protocol/messages.ts'
import type { CallReply, CallRequest, Envelope, Locate, Manifest, ObjectInfo, RefDesc } from './protocol/messages.ts'
import { Ref, SharedRef, newObjectId, objectKey } from './ref.ts'
import { Scheduler } from './scheduler.ts'
import type { ArgInfo, CandidateView, PlacementOptions } from './scheduler.ts'
import { raceSignal, withTimeout } from './signals.ts'
import { ObjectStore } from './store.ts'
import type { SpillBackend, StoredObject } from './store.ts'
import { TrafficCounter } from './traffic.ts'
import { detour } from './detour.ts'
import { Transfer } from './transfer.ts'
import { UploadRates, chooseParents } from './tree.ts'
import type { TransferHooks } from './transfer.ts'
import { DEFAULTS, parseBytes } from './constants.ts'
import { checkReturns, splitReturns } from './returns.ts'
import type { RefsOf } from './returns.ts'

const log = logger('refmesh:mesh')

export interface MeshInit {
  /** a started libp2p node; the mesh registers its protocols on it */
  libp2p: Libp2p
  store?: {
    capacity?: number | string
    /** where spilled objects go; without one nothing is spilled (puts wait for room instead) */
    spill?: SpillBackend
    /** bytes the spill backend may hold (default 8x capacity) */
    spillCapacity?: number | string
    /** how long a value waits for room in memory before OutOfMemoryError */
    memoryWaitMs?: number
    /** asks the runtime for a garbage collection (see StoreInit.reclaim) */
    reclaim?: () => void
    /** a buffer for bytes about to be read in whole from disk (see StoreInit.allocate) */
    allocate?: (size: number) => Uint8Array
  }
  /** values whose encoding is at most this many bytes travel inline with replies */
  inlineThresholdBytes?: number
  chunkSizeBytes?: number
  maxControlFrameBytes?: number
  chunksInFlightPerSource?: number
  /** test hooks in the transfer path */
  hooks?: TransferHooks
  /** the libp2p pubsub service (gossipsub) for state gossip; without it peers know only their neighbours */
  pubsub?: PubSub
  /** runs registered modules off the peer's thread (a worker pool) */
  backend?: ExecutorBackend
  /** which running call a get or wait belongs to, across awaits (node/ supplies one; see core/executor.ts) */
  callContext?: CallContext
  heartbeatMs?: number
  /** fetch the arguments of queued calls while others run (default true) */
  prefetch?: boolean
  /** receivers of an object pull from each other too (default true); false: only from complete holders (for comparison) */
  swarm?: boolean
  /** calls start only with room in memory for their results and arguments (default true); false: for comparison */ admission?: boolean
  /** SHA-256 for chunks (default: WebCrypto) */
  sha256?: Hasher
  /** keep received objects in shared memory (for worker backends) */
  sharedMemory?: boolean
  /** what this peer runs in, told to others ('node' or 'browser') */
  runtime?: string
  /**
   * a private mesh: only peers that prove they know this secret (challenge-response,
   * see core/auth.ts) can talk refmesh with this one or get their gossip through it
   */
  secret?: string | Uint8Array
  /** how long a new peer has to prove the secret before it is hung up on */
  authTimeoutMs?: number
  /** per remote peer limits (defaults in DEFAULTS.quota*) */
  quotas?: Partial<QuotaLimits>
}

export interface CallOptions extends PlacementOptions {
  /** fail the call (its Ref) after this long; 0: no limit */
  timeoutMs?: number
  /** tries on another peer when the executor dies; 0 for calls with side effects */
  retries?: number
  /**
   * untrusted executors (volunteer computing, as BOINC does): run the call on this
   * many distinct peers and accept a result when `quorum` of them agree byte for
   * byte (by SHA-256 of the encoded result); otherwise QuorumError listing the votes
   */
  replicas?: number
  /** how many replicas must agree (default: a majority of `replicas`) */
  quorum?: number
  /**
   * multiple return values (Ray's num_returns): the function returns an array (or a
   * generator) of this many values, and the call gives one Ref per value, each an
   * object of its own; see core/returns.ts
   */
  returns?: number
}

export interface PutOptions {
  /** how long the value may wait for room in the store (backpressure) before it fails */
  timeoutMs?: number
  signal?: AbortSignal
  /**
   * the peer that owns the object (default: this one). A tab hands a dataset to a
   * Node peer this way so it outlives the tab: the owner copies it before the Ref
   * can be passed on, and frees it when no peer holds a Ref to it any more.
   */
  owner?: string
}

export interface GetOptions {
  timeoutMs?: number
  signal?: AbortSignal
}

export interface BroadcastOptions extends GetOptions {
  /** the peers that should hold the object (default: every live peer) */
  peers?: string[]
  /** called as each peer finishes (or fails) */
  onProgress?: (progress: { peer: string, done: number, total: number, error?: Error }) => void
}

export interface WaitOptions extends GetOptions {
  /** how many Refs must be ready (default: all) */
  count?: number
}

/** Arguments as a caller may pass them: each value, a Ref to it, or a SharedRef when the parameter is a Ref. */
export type RemoteArgs<A extends unknown[]> = {
  [K in keyof A]: A[K] | Ref<A[K]> | (A[K] extends Ref<infer U> ? SharedRef<U> : never)
}

export interface RemoteFunction<F extends AnyFunction> {
  /** Runs the function on a peer that offers it; returns at once. */
  remote(...args: RemoteArgs<Parameters<F>>): Ref<Awaited<ReturnType<F>>>
  /** The same function with call options; with `returns: n` it gives n Refs per call. */
  options(options: CallOptions & { returns: number }): MultiReturnFunction<F>
  options(options: CallOptions): RemoteFunction<F>
}

/** A function called with `options({ returns: n })`: each call gives n Refs, one per value it returns. */
export interface MultiReturnFunction<F extends AnyFunction> {
  /** Runs the function on a peer that offers it; returns its n Refs at once. */
  remote(...args: RemoteArgs<Parameters<F>>): RefsOf<Awaited<ReturnType<F>>>
  options(options: CallOptions): MultiReturnFunction<F>
}

/** What one remote peer was caught doing wrong, as this peer saw it. */
export interface SuspectRecord {
  /** chunks it served that failed their SHA-256 check (it is left out of pulls for a while) */
  badChunks: number
  /** objects it was named a holder of and then denied holding (it is not asked for them again for a while) */
  falseClaims: number
  /** replicated calls whose result it returned and the quorum disagreed with */
  outvoted: number
  /** requests of its refused by quotas */
  refused: number
}

export interface MeshStats {
  peer: string
  /** `keys`: the first 1,000 objects held, for diagnostics */
  store: ReturnType<ObjectStore['stats']> & { keys: string[] }
  refs: { owned: number, borrowed: number }
  traffic: ReturnType<TrafficCounter['totals']>
  trafficByPeer: ReturnType<TrafficCounter['snapshot']>
  transfer: Transfer['stats']
  calls: { executed: number, running: number, queued: number, slots: number, submitted: number, spilledBack: number, spillbacksReceived: number, reconstructions: number, actors: number, outvoted: Record<string, number> }
  /** calls this peer placed, per executor */
  placed: Record<string, number>
  /** bytes of dereferenced arguments this peer's executor found in its own store, and fetched from others */
  args: { localBytes: number, fetchedBytes: number }
  gossip: { published: number, received: number }
  /** private meshes: peers hung up on because they did not prove the secret */
  auth: { private: boolean, refused: number }
  /** requests refused by per-peer quotas, and peers hung up on for persisting */
  quotas: { calls: number, chunks: number, bytes: number, gossip: number, hangUps: number }
  /** peers caught misbehaving, by peer (see `Mesh.suspects()`) */
  suspects: Record<string, SuspectRecord>
  functions: string[]
  /** names this peer publishes, with the size of each object (when this peer holds it) */
  names: Array<{ name: string, bytes?: number }>
  /** peers known and alive */
  peers: string[]
  membership: Array<{ peer: string, liveness: Liveness, connected: boolean }>
  /** peers declared dead, by how: connections closed and a redial refused, or silent past the heartbeat bound */
  deaths: Record<DeathCause, number>
}

interface CallState {
  fn: string
  args: unknown[]
  options: CallOptions
  /** the result object (not its handle: lineage must not keep the user's Ref alive) */
  result: { key: string, id: Uint8Array }
  /** Refs the arguments mention, pinned until the call ends */
  pinned: string[]
  /** Refs made by put() for large plain arguments, released when the call ends */
  temporaries: Ref[]
  /** actor method calls: sent after the caller's previous call to the actor, numbered as sent */
  order?: SendOrder
  /**
   * multiple return values: every result in order (`result` is the first one there);
   * undefined where a re-execution needs no value (that sibling is not lost)
   */
  returns?: Array<{ key: string, id: Uint8Array } | undefined>
}

/** How one caller's calls to one actor keep their order: each is sent after the one before, and numbered then. */
interface SendOrder {
  after: Promise<void>
  sent: () => void
  /** the call's sequence number, taken when it is sent (so a call that fails before it is sent leaves no gap) */
  seq: () => number
  /** where the number goes in the argument list */
  seqIndex: number
  /** actors that restart: points the call at the actor's current instance (core/actors.ts) */
  bind?: (call: CallState) => Promise<void>
  /** actors that restart: the executor's connection failed under the call; resolves when it may go again */
  peerDied?: (executor: string, err: Error, signal?: AbortSignal) => Promise<void>
}

/** How an owned call result was made; the results of one call with `returns` share one record. */
interface Lineage {
  fn: string
  options: CallOptions
  args: Uint8Array
  /** multiple return values: every result of the call, in order */
  siblings?: Array<{ key: string, id: Uint8Array }>
}

/** Refs handed to a caller in a result, kept until the caller acknowledges. */
interface Handoff {
  peer: string
  keys: string[]
}

export class Mesh {
  readonly libp2p: Libp2p
  readonly peerId: string
  readonly store: ObjectStore
  private readonly admission: MemoryAdmission
  private readonly table: OwnershipTable
  private readonly channels: ControlChannels
  private readonly transfer: Transfer
  private readonly executor: Executor
  private readonly membership: Membership
  private readonly gossip: Gossip | undefined
  private readonly scheduler = new Scheduler({ defaultCallMs: DEFAULTS.defaultCallMs })
  private readonly prefetch: boolean
  private readonly swarm: boolean
  private readonly argBytes = { localBytes: 0, fetchedBytes: 0 }
  private spilledBack = 0
  private spillbacksReceived = 0
  private readonly actors = new ActorHost(() => this.peerId)
  /** creator side: actor handle objects this peer owns, so freeing one stops its actor */
  private readonly actorOf = new Map<string, ActorLife>()
  private readonly peerDeathHooks: PeerVerdicts = {
    alive: peer => peer === this.peerId || this.membership.isAlive(peer),
    verdict: async (peer, signal) => await this.membership.verdict(peer, 3 * this.failureBoundMs(), signal)
  }
  /** public peers only: peers that challenged this one to prove a mesh secret (they are in a private mesh) */
  private readonly challengedBy = new Set<string>()
  /** names this peer publishes, each holding a handle of its own */
  private readonly published = new Map<string, Ref>()
  /** per actor instance: settles when this peer's latest call to it has been sent */
  private readonly actorSent = new Map<string, Promise<void>>()
  /** the next sequence number of this peer's calls to each actor instance */
  private readonly actorSeq = new Map<string, number>()
  /** calls run again because every copy of their result was lost */
  private reconstructions = 0
  /**
   * Lineage: how each owned call result was made (the function and its encoded
   * arguments), kept while the result lives so it can be computed again. It does
   * not keep the arguments alive: an argument freed since (nobody held it) makes
   * a reconstruction fail with ObjectLostError. Ray pins arguments for lineage
   * instead; we keep reclamation exact, and say so in PROTOCOL.md.
   */
  private readonly lineage = new Map<string, Lineage>()
  private readonly traffic = new TrafficCounter()
  private readonly handoffs = new Map<string, Handoff>()
  /** owner side: receivers of each object still pulling it (partial holders) */
  private readonly receiving = new Map<string, Set<string>>()
  /** owner side: for each object, the receivers each holder feeds now (at most DEFAULTS.ownerFanout) */
  private readonly children = new Map<string, Map<string, Set<string>>>()
  /** owner side: for each object, the holders each receiver was pointed at */
  private readonly parents = new Map<string, Map<string, string[]>>()
  /** owner side: holders' measured upload rates, which shape the tree (core/tree.ts) */
  private readonly uploadRates = new UploadRates()
  /** owner side, without swarming: every peer that ever received each object */
  private readonly receivedBy = new Map<string, Set<string>>()
  private readonly inlineThreshold: number
  private readonly chunkSize: number
  private readonly sha256: Hasher
  private readonly stopController = new AbortController()
  private submitted = 0
  private started = false

  constructor (init: MeshInit) {
    this.libp2p = init.libp2p
    this.peerId = init.libp2p.peerId.toString()
    this.inlineThreshold = init.inlineThresholdBytes ?? DEFAULTS.inlineThresholdBytes
    this.chunkSize = init.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE
    this.runtime = init.runtime ?? 'node'
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
      onRelief: () => { this.admission.recheck() }
    })
    this.admission = new MemoryAdmission({ room: () => this.admitBytes(), maxWaitMs: DEFAULTS.admissionWaitMs, freeing: () => this.store.freeing, enabled: init.admission ?? true })
    this.sha256 = init.sha256 ?? webCryptoSha256
    this.prefetch = init.prefetch ?? true
    this.swarm = init.swarm ?? true
    this.executor = new Executor(init.callContext)
    if (init.backend !== undefined) this.executor.setBackend(init.backend)
    const heartbeatMs = init.heartbeatMs ?? DEFAULTS.heartbeatMs
    this.heartbeatMs = heartbeatMs
    this.membership = new Membership({
      heartbeatMs,
      suspectAfterBeats: DEFAULTS.suspectAfterBeats,
      deadAfterBeats: DEFAULTS.deadAfterBeats,
      deadWhileConnectedBeats: DEFAULTS.deadWhileConnectedBeats,
      maxPeers: DEFAULTS.maxKnownPeers
    })
    this.gossip = init.pubsub === undefined
      ? undefined
      : new Gossip({ pubsub: init.pubsub, membership: this.membership, heartbeatMs, state: () => (this.lastState = this.state()) })
    this.table = new OwnershipTable({
      self: this.peerId,
      sendBorrow: async (owner, id, add) => {
        await this.channels.request(owner, { borrow: { id, add } }, { signal: this.stopController.signal })
      },
      onFree: (entry, owned) => { this.freeOwned(entry, owned) }
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
      onRequest: (from, env) => this.onRequest(from, env)
    })
    this.transfer = new Transfer({
      admit,
      quotas: this.quotas,
      libp2p: this.libp2p,
      store: this.store,
      traffic: this.traffic,
      chunksInFlightPerSource: init.chunksInFlightPerSource ?? DEFAULTS.chunksInFlightPerSource,
      attemptsPerChunk: DEFAULTS.attemptsPerChunk,
      defaultBandwidth: DEFAULTS.bandwidthBytesPerSecond,
      sha256: this.sha256,
      // Holders behind a relay: through a peer both reach directly (core/detour.ts).
      detour: async (object, holders, signal) => await detour({
        self: this.peerId,
        membership: this.membership,
        reachesDirectly: peer => this.libp2p.getConnections(peerIdFromString(peer)).some(c => c.limits == null && c.status === 'open'),
        prefetch: async (peer, desc, sig) => { await this.channels.request(peer, { prefetch: { object: desc } }, { signal: sig }) }
      }, object, holders, signal),
      hooks: init.hooks,
      bitfieldRefreshMs: DEFAULTS.bitfieldRefreshMs,
      watchedBitfieldRefreshMs: DEFAULTS.watchedBitfieldRefreshMs,
      stallMs: DEFAULTS.stallMs,
      progressEveryMs: DEFAULTS.progressEveryMs,
      relocateEveryMs: DEFAULTS.relocateEveryMs,
      avoidBadSourceMs: DEFAULTS.avoidBadSourceMs,
      avoidDeniedMs: DEFAULTS.avoidDeniedMs,
      swarm: init.swarm ?? true
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.auth?.start()
    if (this.auth === undefined) {
      // A public peer refuses a private mesh's challenge, but notes who sent it: connect()
      // can then say at once why that peer will never greet this one.
      await this.libp2p.handle(AUTH_PROTOCOL, (stream, connection) => {
        this.challengedBy.add(connection.remotePeer.toString())
        stream.abort(new NotAMemberError('this peer is not in a private mesh'))
      }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    }
    // Gossip relayed by a peer that has not proved the secret never enters a private mesh,
    // and a peer relaying far more than the mesh makes is ignored, then hung up on.
    this.pubsub?.topicValidators?.set(STATE_TOPIC, (from: { toString(): string }) => {
      const peer = from.toString()
      if (this.auth !== undefined && !this.auth.isMember(peer)) return 'reject'
      return this.quotas.gossipAllowed(peer, 4 * this.membership.all().length) ? 'accept' : 'ignore'
    })
    await this.channels.start()
    await this.transfer.start()
    this.libp2p.addEventListener('peer:connect', this.onConnect)
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    this.membership.onDeath((peer, cause) => { this.onPeerDead(peer, cause) })
    this.gossip?.start()
    for (const conn of this.libp2p.getConnections()) this.sayHello(conn.remotePeer.toString())
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.stopController.abort(new PeerDiedError('mesh stopped'))
    this.libp2p.removeEventListener('peer:connect', this.onConnect)
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    this.gossip?.stop()
    await this.channels.stop()
    await this.transfer.stop()
    await this.auth?.stop()
    if (this.auth === undefined) await this.libp2p.unhandle(AUTH_PROTOCOL).catch(() => {})
    await this.executor.close()
  }

  // ---------------------------------------------------------------- the API

  /** Offers `fn` to the mesh under `name`. It runs on this peer's own thread. */
  register (name: string, fn: AnyFunction): void {
    this.executor.register(name, fn)
    this.announce()
  }

  /** Offers actors of class `cls` under `name`: `mesh.actor(name).create(...)` makes one here. */
  registerActor (name: string, cls: ActorClass): void {
    for (const [fn, impl] of this.actors.offer(name, cls)) this.executor.register(fn, impl)
    this.announce()
  }

  /** Creates actors of a registered class, on a peer that offers it (or the one `options` names). */
  actor<T> (name: string, options: ActorOptions = {}): ActorFactory<T> {
    return {
      options: (more) => this.actor<T>(name, { ...options, ...more }),
      create: async (...args) => {
        const { maxRestarts, maxTaskRetries, ...placement } = options
        const ref = this.remote(ACTOR_CREATE + name, args, { ...placement, retries: 0 }) as Ref<ActorDesc>
        try {
          const desc = await this.get(ref)
          // A restart makes it again from the same arguments, on any other peer offering the class.
          const kept = args.map(a => a instanceof Ref ? a.dup() : a)
          const life = new ActorLife(desc, { maxRestarts, maxTaskRetries }, async () => {
            using again = this.remote(ACTOR_CREATE + name, kept, { spread: placement.spread, retries: 0 }) as Ref<ActorDesc>
            return await this.get(again)
          }, () => { for (const a of kept) if (a instanceof Ref) a.release() })
          this.actorOf.set(ref.key, life)
          return this.actorHandle<T>(ref, life)
        } catch (err) {
          ref.release()
          throw err
        }
      }
    }
  }

  /**
   * Publishes `ref` under `name`: the object stays alive while this peer lives
   * or until `unpublish(name)`, and any peer can `lookup(name)` it. Names are
   * per publisher; two peers publishing one name serve whichever a lookup meets first.
   */
  publish (name: string, ref: Ref): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw new TypeError('a name must be a non-empty string of at most 256 characters')
    if (!(ref instanceof Ref)) throw new TypeError('publish() takes a Ref')
    if (this.published.has(name)) throw new RangeError(`this peer already publishes "${name}"; unpublish it first`)
    this.published.set(name, ref.dup())
    this.gossip?.publish()
  }

  unpublish (name: string): boolean {
    const ref = this.published.get(name)
    if (ref === undefined) return false
    this.published.delete(name)
    ref.release()
    this.gossip?.publish()
    return true
  }

  /**
   * The object published under `name`, as a Ref of this peer's own (a borrow
   * registered with its owner, so reclamation keeps working). Waits for gossip
   * to name a publisher; NameNotFoundError after `timeoutMs` (default 10 s).
   */
  async lookup<T = unknown> (name: string, options: GetOptions = {}): Promise<Ref<T>> {
    const own = this.published.get(name)
    if (own !== undefined) return own.dup() as Ref<T>
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs ?? DEFAULTS.lookupTimeoutMs, `lookup of "${name}"`) as AbortSignal
    const asked = new Set<string>()
    const started = performance.now()
    try {
      for (;;) {
        // Gossip names the publishers; if it has not within a second (a busy or new mesh), ask every peer.
        const askAll = performance.now() - started > 1_000
        const publishers = this.membership.all().filter(p => p.liveness === 'alive' && !asked.has(p.peer) && (askAll || p.state?.names.includes(name) === true))
        for (const p of publishers) {
          asked.add(p.peer)
          const reply = await this.channels.request(p.peer, { nameLookup: { name } }, { signal }).catch((err: Error) => {
            if (signal.aborted) throw err
            log('lookup of %s at %s failed: %s', name, p.peer, err.message)
            return undefined
          })
          const desc = reply?.nameReply?.object
          if (desc === undefined || reply?.nameReply === undefined) continue
          const pending: Array<Promise<void>> = []
          const ref = this.table.refFromDesc(desc, pending)
          try {
            await Promise.all(pending)
          } finally {
            this.channels.send(p.peer, { resultAck: { resultId: reply.nameReply.handoff } }).catch(() => {})
          }
          return ref as Ref<T>
        }
        await raceSignal(new Promise(resolve => setTimeout(resolve, 200)), signal, `lookup of "${name}"`)
      }
    } catch (err) {
      if (signal.aborted && options.signal?.aborted !== true && this.started) throw new NameNotFoundError(`no peer publishes "${name}" (asked ${asked.size})`)
      throw err
    }
  }

  /** Publisher side of a lookup: the object's descriptor, pinned until the asker has registered. */
  private answerLookup (from: string, name: string): EnvelopeBody {
    const ref = this.published.get(name)
    const handoff = newObjectId()
    if (ref === undefined) return { nameReply: { handoff } }
    this.table.pin(ref.key)
    this.handoffs.set(objectKey(handoff), { peer: from, keys: [ref.key] })
    return { nameReply: { object: { id: ref.id, owner: ref.owner, ...this.table.hints(ref.key) }, handoff } }
  }

  /**
   * Stores `size` bytes arriving in pieces as one Uint8Array object, never
   * holding them whole in memory when they do not fit there (then they go
   * straight to the spill disk, chunk by chunk). For sharing files.
   */
  async putStream (pieces: AsyncIterable<Uint8Array>, size: number, options: PutOptions = {}): Promise<Ref<Uint8Array>> {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`putStream size must be a whole number of bytes, not ${size}`)
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs, 'putStream')
    if (size <= this.inlineThreshold) {
      const whole = new Uint8Array(size)
      let at = 0
      for await (const piece of pieces) {
        if (at + piece.byteLength > size) throw new RangeError(`putStream got more than the ${size} bytes it was told`)
        whole.set(piece, at)
        at += piece.byteLength
      }
      if (at !== size) throw new RangeError(`putStream got ${at} bytes, not ${size}`)
      return this.put(whole, options)
    }
    const id = newObjectId()
    const key = objectKey(id)
    const count = chunkCount(size, this.chunkSize)
    const manifest: Manifest = { size, chunkSize: this.chunkSize, hashes: new Array<Uint8Array>(count), encoding: Encoding.BYTES }
    const ref = this.table.createOwned(id, { state: 'pending' })
    try {
      let obj: StoredObject
      if (this.store.fitsInMemory(size)) {
        await this.store.reserve(size, `putStream of ${key}`, signal)
        obj = this.store.allocate(key, id, this.peerId, manifest)
      } else if (this.store.diskHasRoom(size)) {
        obj = this.store.allocate(key, id, this.peerId, manifest, true)
      } else {
        throw new OutOfMemoryError(`putStream of ${size} bytes: more than the store's capacity (${this.store.capacity}) and its free spill space`)
      }
      obj.primary = true
      let index = 0
      let chunk = obj.data !== undefined ? obj.data.subarray(0, Math.min(this.chunkSize, size)) : new Uint8Array(Math.min(this.chunkSize, size))
      let filled = 0
      let total = 0
      const seal = async (): Promise<void> => {
        manifest.hashes[index] = await this.sha256(chunk)
        if (obj.data === undefined) await this.store.writeChunk(obj, index, chunk)
        this.store.markChunk(obj, index)
        index++
        const start = index * this.chunkSize
        const length = Math.max(0, Math.min(this.chunkSize, size - start))
        chunk = obj.data !== undefined ? obj.data.subarray(start, start + length) : new Uint8Array(length)
        filled = 0
      }
      for await (const piece of pieces) {
        signal?.throwIfAborted()
        if (total + piece.byteLength > size) throw new RangeError(`putStream got more than the ${size} bytes it was told`)
        total += piece.byteLength
        for (let at = 0; at < piece.byteLength && filled < chunk.byteLength;) {
          const n = Math.min(chunk.byteLength - filled, piece.byteLength - at)
          chunk.set(piece.subarray(at, at + n), filled)
          filled += n
          at += n
          if (filled === chunk.byteLength) await seal()
        }
      }
      if (total !== size) throw new RangeError(`putStream got ${total} bytes, not ${size}`)
      this.table.settle(key, { state: 'ready', inline: false, encoding: Encoding.BYTES, size, manifest, locations: [this.peerId], contained: [] })
      return ref as Ref<Uint8Array>
    } catch (err) {
      this.store.delete(key)
      this.table.settle(key, { state: 'failed', error: errorToInfo(err, this.peerId), locations: [], contained: [] })
      ref.release()
      throw err
    }
  }

  /**
   * The bytes of a Uint8Array object in order, chunk by chunk: pulled here first
   * (from every holder at once), then read from memory or disk one chunk at a
   * time, so an object larger than memory streams out without being whole anywhere.
   */
  async * getStream (ref: Ref<Uint8Array>, options: GetOptions & { onProgress?: (bytes: number, total: number) => void } = {}): AsyncGenerator<Uint8Array> {
    if (!(ref instanceof Ref)) throw new TypeError('getStream() takes a Ref')
    ref.trackerOrThrow()
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs, 'getStream')
    const key = ref.key
    const registered = this.table.get(key)?.registered
    if (registered !== undefined) await raceSignal(registered, signal, 'getStream')
    let held = this.store.get(key)
    if (held === undefined || !this.store.isComplete(held)) {
      this.checkOwnerAlive(ref.owner, key)
      const info = ref.owner === this.peerId
        ? await this.describeOwned(key, { id: ref.id, wait: true, fetch: true, timeoutMs: 0 }, this.peerId, signal)
        : await this.locateRemote({ id: ref.id, owner: ref.owner }, signal)
      if (info.status === ObjectStatus.INLINE) {
        options.onProgress?.(info.inline.byteLength, info.inline.byteLength)
        yield info.inline
        return
      }
      if (info.status !== ObjectStatus.STORED || info.manifest === undefined) {
        await this.fetchDescribed({ id: ref.id, owner: ref.owner }, info, signal)
        return
      }
      const manifest = info.manifest
      held = await this.transfer.pull({
        key,
        id: ref.id,
        owner: ref.owner,
        manifest,
        sources: info.locations.filter(p => p !== this.peerId),
        signal,
        relocate: async () => (ref.owner === this.peerId ? info : await this.locateRemote({ id: ref.id, owner: ref.owner }, signal)).locations.filter(p => p !== this.peerId),
        onProgress: (have, complete) => {
          let n = 0
          for (const b of have) n += b
          options.onProgress?.(complete ? manifest.size : Math.min(manifest.size, n * manifest.chunkSize), manifest.size)
          if (ref.owner !== this.peerId) this.channels.send(ref.owner, { progress: { id: ref.id, have: have.slice(), complete } }).catch(() => {})
        }
      })
    }
    const count = chunkCount(held.manifest.size, held.manifest.chunkSize)
    for (let i = 0; i < count; i++) {
      signal?.throwIfAborted()
      const chunk = await this.store.readChunk(key, i)
      if (chunk === undefined) throw new ObjectLostError(`chunk ${i} of ${key} was dropped from this store while it was being read`)
      yield chunk
    }
    options.onProgress?.(held.manifest.size, held.manifest.size)
  }

  /** A handle of this peer's own for an actor whose Ref it was given (a SharedRef of another handle's `ref`). */
  async actorFromRef<T> (ref: Ref<ActorDesc>, options: GetOptions = {}): Promise<ActorHandle<T>> {
    const desc = await this.get(ref, options)
    // The creator's own handles share its record, so they follow restarts.
    return this.actorHandle<T>(ref.dup(), this.actorOf.get(ref.key) ?? new ActorLife(desc))
  }

  private actorHandle<T> (ref: Ref<ActorDesc>, life: ActorLife): ActorHandle<T> {
    const desc = life.desc
    const base = { ref, get peer () { return desc.peer }, release: () => { ref.release() } }
    return new Proxy(base, {
      get: (target, prop) => {
        if (prop in target) return target[prop as keyof typeof target]
        // Not a thenable: `await create()` must resolve to the handle itself.
        if (typeof prop !== 'string' || prop === 'then') return undefined
        const call = (args: unknown[], returns?: number): Ref[] => {
          const after = this.actorSent.get(desc.instance) ?? Promise.resolve()
          let sent!: () => void
          this.actorSent.set(desc.instance, new Promise<void>(resolve => { sent = resolve }))
          const seq = (): number => {
            const n = this.actorSeq.get(desc.instance) ?? 0
            this.actorSeq.set(desc.instance, n + 1)
            return n
          }
          const results = this.submit(ACTOR_CALL + desc.name, [desc.instance, prop, this.peerId, -1, ...args], { peer: desc.peer, retries: 0, returns }, { after, sent, seq, seqIndex: 3, ...actorRestarts(life, this.peerDeathHooks) })
          // Calls in flight keep the actor alive, even if the last handle is released meanwhile (as in Ray).
          this.table.pin(ref.key)
          Promise.all(results.map(async r => { await this.whenReady(r, this.stopController.signal) })).catch(() => {}).finally(() => { this.table.unpin(ref.key) })
          return results
        }
        return {
          remote: (...args: unknown[]) => call(args)[0],
          options: ({ returns }: { returns: number }) => {
            checkReturns(returns, DEFAULTS.maxReturns)
            return { remote: (...args: unknown[]) => call(args, returns) }
          }
        }
      }
    }) as unknown as ActorHandle<T>
  }

  unregister (name: string): void {
    if (this.executor.unregister(name)) this.announce()
  }

  /** A typed stub for a function some peer offers. */
  fn<F extends AnyFunction> (name: string, options: CallOptions = {}): RemoteFunction<F> {
    if (options.returns !== undefined) checkReturns(options.returns, DEFAULTS.maxReturns)
    return {
      remote: (...args: unknown[]) => options.returns === undefined ? this.remote(name, args, options) : this.submit(name, args, options),
      options: (more: CallOptions) => this.fn<F>(name, { ...options, ...more })
    } as unknown as RemoteFunction<F>
  }

  /** Stores a value in the mesh, owned by this peer. The value is kept as it is: do not change it afterwards. */
  put<T> (value: T, options: PutOptions = {}): Ref<T> {
    if (value instanceof Ref || value instanceof SharedRef) throw new TypeError('put() of a Ref: pass the Ref itself instead')
    const encoded = encodeValue(value)
    if (options.owner !== undefined && options.owner !== this.peerId) return this.putHandedOver(encoded, options.owner, options) as Ref<T>
    const id = newObjectId()
    const ref = this.table.createOwned(id, { state: 'pending' })
    const contained = encoded.contained.map(r => { this.table.pin(r.key); return r.key })
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs, 'put')
    this.storeOwned(ref.key, id, encoded, contained, signal).catch((err: unknown) => {
      this.table.settle(ref.key, { state: 'failed', error: errorToInfo(err, this.peerId), locations: [], contained })
    })
    return ref as Ref<T>
  }

  /**
   * Durable put: the bytes are stored here first (the owner pulls them from us),
   * and the Ref is a borrowed one whose registration is the owner's adoption, so
   * passing it on or reading it waits for the owner to hold the whole object.
   */
  private putHandedOver (encoded: EncodedValue, owner: string, options: PutOptions): Ref {
    if (encoded.contained.length > 0) throw new TypeError('put(value, { owner }) of a value that holds Refs: put those with the same owner, or pass them to a call')
    const id = newObjectId()
    const key = objectKey(id)
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs, 'put')
    const adopted = (async () => {
      const inline = encoded.bytes.byteLength <= this.inlineThreshold
      const manifest = inline
        ? { size: encoded.bytes.byteLength, chunkSize: this.chunkSize, hashes: [], encoding: encoded.encoding }
        : await makeManifest(encoded.bytes, encoded.encoding, this.chunkSize, this.sha256)
      const object: ObjectInfo = inline
        ? { status: ObjectStatus.INLINE, inline: encoded.bytes, encoding: encoded.encoding, locations: [], contained: [] }
        : { status: ObjectStatus.STORED, inline: new Uint8Array(0), encoding: encoded.encoding, manifest, locations: [this.peerId], contained: [] }
      if (!inline) await this.storeBytes(key, id, owner, manifest, encoded.bytes, `put of object ${key}`, signal)
      try {
        await this.channels.request(owner, { adopt: { id, object } }, { signal })
      } catch (err) {
        this.store.delete(key)
        if (err instanceof QuotaExceededError) throw err
        throw new OwnerDiedError(`${owner} did not take ownership of ${key}: ${(err as Error).message}`)
      }
      // The owner's copy is the one that counts now; ours may be dropped under pressure.
      const local = this.store.get(key)
      if (local !== undefined) local.primary = false
    })()
    return this.table.createHandedOver(id, owner, adopted)
  }

  /** Owner side of a durable put: copy the object from its maker, then own it with the maker as a borrower. */
  private async adopt (from: string, id: Uint8Array, object: ObjectInfo): Promise<EnvelopeBody> {
    const key = objectKey(id)
    if (this.table.get(key) !== undefined || this.store.has(key)) throw new ProtocolError(`object ${key} exists here already`)
    if (object.contained.length > 0) throw new ProtocolError('an adopted object may not hold Refs')
    const size = object.status === ObjectStatus.INLINE ? object.inline.byteLength : object.manifest?.size ?? 0
    if (!this.quotas.take(from, 'bytes', size)) {
      throw new QuotaExceededError(`${from} may not have ${this.peerId} keep ${size} more bytes for it (its quota is ${this.quotas.limit('bytes')} bytes)`)
    }
    this.adoptedFor.set(key, { peer: from, bytes: size })
    const signal = this.stopController.signal
    const handle = this.table.createOwned(id, { state: 'pending' })
    this.table.addBorrower(key, from)
    try {
      if (object.status === ObjectStatus.INLINE) {
        const manifest = { size: object.inline.byteLength, chunkSize: this.chunkSize, hashes: [], encoding: object.encoding }
        await this.storeBytes(key, id, this.peerId, manifest, object.inline, `adopted object ${key}`, signal)
        this.table.settle(key, { state: 'ready', inline: true, encoding: object.encoding, size: manifest.size, locations: [this.peerId], contained: [] })
      } else if (object.status === ObjectStatus.STORED && object.manifest !== undefined) {
        const manifest = object.manifest
        await this.transfer.pull({ key, id, owner: this.peerId, manifest, sources: [from], signal })
        const copy = this.store.get(key)
        if (copy === undefined) throw new ObjectLostError(`adopted object ${key} was dropped as soon as it arrived`)
        copy.primary = true
        this.table.settle(key, { state: 'ready', inline: false, encoding: manifest.encoding, size: manifest.size, manifest, locations: [this.peerId, from], contained: [] })
      } else {
        throw new ProtocolError(`adopt of ${key} with status ${object.status}`)
      }
    } catch (err) {
      if (this.adoptedFor.delete(key)) this.quotas.give(from, 'bytes', size)
      this.table.removeBorrower(key, from)
      this.table.settle(key, { state: 'failed', error: errorToInfo(err, this.peerId), locations: [], contained: [] })
      throw err
    } finally {
      handle.release()
    }
    return { ack: {} }
  }

  /** The value of a Ref: waits until it is computed, pulls it here if it lives elsewhere. */
  async get<T> (ref: Ref<T>, options: GetOptions = {}): Promise<T> {
    // A running call blocked here lends its share of this peer (core/executor.ts).
    return await this.executor.blocked(async () => await this.getValue(ref, options))
  }

  private async getValue<T> (ref: Ref<T>, options: GetOptions): Promise<T> {
    if (!(ref instanceof Ref)) throw new TypeError('get() takes a Ref')
    ref.trackerOrThrow()
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs, 'get')
    // A durable put's Ref is readable once its owner holds the object (or fails as the put did).
    const registered = this.table.get(ref.key)?.registered
    if (registered !== undefined) await raceSignal(registered, signal, 'get')
    const { encoding, bytes, release } = await this.fetchValue({ id: ref.id, owner: ref.owner }, signal)
    const pending: Array<Promise<void>> = []
    let value: unknown
    try {
      value = decodeValue(encoding, bytes, desc => this.table.refFromDesc(desc, pending))
    } finally {
      release()
    }
    if (pending.length > 0) await raceSignal(Promise.all(pending), signal, 'get')
    return value as T
  }

  /** Waits until `count` of `refs` are ready (computed or failed) and returns that many (fewer on a timeout), the rest pending. Never throws for a failed Ref. */
  async wait (refs: Ref[], options: WaitOptions = {}): Promise<{ ready: Ref[], pending: Ref[] }> {
    return await this.executor.blocked(async () => await this.waitReady(refs, options))
  }

  private async waitReady (refs: Ref[], options: WaitOptions): Promise<{ ready: Ref[], pending: Ref[] }> {
    const count = Math.min(options.count ?? refs.length, refs.length)
    const ready = new Set<Ref>()
    const controller = new AbortController()
    const signal = withTimeout(AbortSignal.any([controller.signal, this.stopController.signal, ...(options.signal !== undefined ? [options.signal] : [])]), options.timeoutMs, 'wait')
    let wake!: () => void
    let woken = new Promise<void>(resolve => { wake = resolve })
    for (const ref of refs) {
      this.whenReady(ref, signal as AbortSignal).then(() => {
        ready.add(ref)
        wake()
      }, () => {})
    }
    try {
      while (ready.size < count && signal?.aborted !== true) {
        await raceSignal(woken, signal, 'wait').catch(() => {})
        woken = new Promise<void>(resolve => { wake = resolve })
      }
    } finally {
      controller.abort()
    }
    // Exactly `count` ready (as Ray's num_returns), the first in the order of `refs`: a
    // `while (pending.length)` loop with count 1 then sees each Ref once.
    const readyList = refs.filter(r => ready.has(r)).slice(0, count)
    const chosen = new Set(readyList)
    return { ready: readyList, pending: refs.filter(r => !chosen.has(r)) }
  }

  /**
   * Puts a copy of an object on `peers` (every live peer by default) ahead of
   * the calls that will need it. Receivers pull from each other as well as from
   * the owner, so the owner's uplink carries little more than one copy.
   */
  async broadcast (ref: Ref, options: BroadcastOptions = {}): Promise<{ ready: string[], failed: Array<{ peer: string, error: Error }> }> {
    if (!(ref instanceof Ref)) throw new TypeError('broadcast() takes a Ref')
    ref.trackerOrThrow()
    const signal = withTimeout(this.combine(options.signal), options.timeoutMs, 'broadcast')
    await this.whenReady(ref, signal ?? this.stopController.signal)
    const targets = (options.peers ?? this.membership.all().filter(p => p.liveness === 'alive').map(p => p.peer)).filter(p => p !== ref.owner)
    const object: RefDesc = { id: ref.id, owner: ref.owner, ...this.table.hints(ref.key) }
    const ready: string[] = []
    const failed: Array<{ peer: string, error: Error }> = []
    await Promise.all(targets.map(async peer => {
      try {
        if (peer === this.peerId) await this.prefetchObject(object, signal)
        else await this.channels.request(peer, { prefetch: { object } }, { signal })
        ready.push(peer)
        options.onProgress?.({ peer, done: ready.length + failed.length, total: targets.length })
      } catch (err) {
        if (signal?.aborted === true) throw err
        failed.push({ peer, error: err as Error })
        options.onProgress?.({ peer, done: ready.length + failed.length, total: targets.length, error: err as Error })
      }
    }))
    return { ready, failed }
  }

  /** A peer asked to hold a copy (broadcast): pull it into the store and keep it there. */
  private async prefetchObject (object: RefDesc, signal: AbortSignal | undefined): Promise<void> {
    const { release } = await this.fetchValue(object, signal)
    release()
  }

  /** The mesh's own stop signal, joined with the caller's when there is one. */
  private combine (signal: AbortSignal | undefined): AbortSignal {
    return signal === undefined ? this.stopController.signal : AbortSignal.any([this.stopController.signal, signal])
  }

  /** Connects to a peer by multiaddr (with its /p2p/ id) and waits for its Hello. */
  async connect (addr: string, options: GetOptions = {}): Promise<string> {
    const signal = withTimeout(options.signal, options.timeoutMs ?? 10_000, `connect(${addr})`)
    const conn = await this.libp2p.dial(multiaddr(addr), { signal })
    const peer = conn.remotePeer.toString()
    // In a private mesh a peer that fails the challenge (a wrong secret, here or there) is known
    // at once; waiting for its hello would only run out the clock.
    await this.auth?.admit(peer, signal)
    // A private mesh's peer says Hello only to peers that answer its challenge, which one without the secret cannot.
    const challenged = new Promise<never>((_resolve, reject) => {
      const check = (): void => {
        if (this.challengedBy.has(peer)) reject(new NotAMemberError(`${peer} is in a private mesh, and this peer has no mesh secret`))
        else if (signal?.aborted !== true && !this.membership.isAlive(peer)) setTimeout(check, 50)
      }
      check()
    })
    challenged.catch(() => {})
    await Promise.race([this.waitForPeer(peer, { signal }), challenged])
    return peer
  }

  /** Resolves when `peer` has said Hello (or at once if it already has). */
  async waitForPeer (peer: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.membership.isAlive(peer)) return
    let unsubscribe = (): void => {}
    const known = new Promise<void>(resolve => {
      unsubscribe = this.membership.onChange(() => { if (this.membership.isAlive(peer)) resolve() })
    })
    try {
      await raceSignal(known, options.signal, `waiting for ${peer}`)
    } finally {
      unsubscribe()
    }
  }

  /** Peers this peer knows, with the functions they offer, their liveness and last gossiped state. */
  peers (): Array<{ peer: string, functions: string[], addrs: string[], liveness: Liveness, state?: PeerState }> {
    return this.membership.all().map(p => ({ peer: p.peer, functions: [...p.functions], addrs: p.addrs, liveness: p.liveness, state: p.state }))
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
        submitted: this.submitted,
        spilledBack: this.spilledBack,
        spillbacksReceived: this.spillbacksReceived,
        reconstructions: this.reconstructions,
        outvoted: Object.fromEntries(this.outvoted),
        actors: this.actors.size
      },
      placed: Object.fromEntries(this.scheduler.placed),
      args: { ...this.argBytes },
      gossip: { published: this.gossip?.published ?? 0, received: this.gossip?.received ?? 0 },
      auth: { private: this.auth !== undefined, refused: this.auth?.refused ?? 0 },
      quotas: { ...this.quotas.refused },
      suspects: this.suspects(),
      functions: this.executor.names(),
      names: [...this.published].map(([name, ref]) => ({ name, bytes: this.store.get(ref.key)?.manifest.size })),
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
    for (const [peer, n] of this.outvoted) of(peer).outvoted = n
    for (const [peer, n] of this.quotas.refusedByPeer) of(peer).refused = n
    return out
  }

  /** This peer's state, as it gossips it. */
  private state (): Omit<PeerState, 'seq'> {
    const store = this.store.stats()
    return {
      peer: this.peerId,
      functions: this.executor.names(),
      addrs: this.libp2p.getMultiaddrs().map(a => a.toString()),
      slots: this.executor.slots,
      queued: this.executor.queued,
      running: this.executor.running,
      storeUsed: store.bytes,
      storeCapacity: store.capacity,
      spilledBytes: store.spilledBytes,
      admitBytes: this.admitBytes(),
      bandwidth: this.transfer.bandwidth(),
      pooledFunctions: this.executor.pooledNames(),
      runtime: this.runtime,
      links: this.libp2p.getConnections().map(c => ({ peer: c.remotePeer.toString(), transport: transportOf(c.remoteAddr.toString(), c.limits !== undefined) })),
      flows: this.chunkFlows(),
      names: [...this.published.keys()].slice(0, DEFAULTS.namesGossiped)
    }
  }

  private readonly runtime: string
  private readonly auth: MeshAuth | undefined
  private readonly quotas: PeerQuotas
  /** objects this peer owns because a peer handed them over (durable put): their bytes count against its quota */
  private readonly adoptedFor = new Map<string, { peer: string, bytes: number }>()
  private readonly pubsub: PubSub | undefined
  private readonly heartbeatMs: number
  private lastState: Omit<PeerState, 'seq'> | undefined
  private flowSample = { at: 0, chunkIn: new Map<string, number>() }

  /** Chunk bytes per second from each source since the last sample (one sample per heartbeat). */
  private chunkFlows (): ChunkFlow[] {
    const now = performance.now()
    const seconds = (now - this.flowSample.at) / 1000
    const flows: ChunkFlow[] = []
    const chunkIn = new Map<string, number>()
    for (const [peer, t] of Object.entries(this.traffic.snapshot())) {
      chunkIn.set(peer, t.chunkIn)
      const before = this.flowSample.chunkIn.get(peer)
      if (before !== undefined && t.chunkIn > before && seconds > 0) flows.push({ from: peer, bytesPerSecond: (t.chunkIn - before) / seconds })
    }
    this.flowSample = { at: now, chunkIn }
    return flows
  }

  /** Every peer this one knows and its last gossiped state, itself included (what the mesh page draws). */
  view (): Array<{ peer: string, self: boolean, liveness: Liveness, state?: Omit<PeerState, 'seq'> }> {
    const others = this.membership.all().map(p => ({ peer: p.peer, self: false, liveness: p.liveness, state: p.state }))
    return [{ peer: this.peerId, self: true, liveness: 'alive' as Liveness, state: this.lastState ?? this.state() }, ...others]
  }

  /** Argument bytes this peer can take in now: up to 80% of its store (DESIGN.md section 5). */
  private admitBytes (): number {
    return Math.max(0, Math.floor(this.store.capacity * DEFAULTS.admitFraction) - this.store.used)
  }

  /** Above 80% of its store a peer admits no new calls until pressure falls. */
  private underPressure (): boolean {
    return this.store.used > this.store.capacity * DEFAULTS.admitFraction
  }

  /** The stats of another peer (or this one), asked over the control channel. */
  async peerStats (peer: string, options: GetOptions = {}): Promise<MeshStats> {
    if (peer === this.peerId) return this.stats()
    const signal = withTimeout(options.signal, options.timeoutMs ?? 10_000, `stats of ${peer}`)
    const reply = await this.channels.request(peer, { stats: {} }, { signal })
    return JSON.parse(reply.statsReply?.json ?? '{}') as MeshStats
  }

  // ------------------------------------------------------------ the call path

  private remote (fn: string, args: unknown[], options: CallOptions, order?: SendOrder): Ref {
    if ((options.replicas ?? 1) > 1) return this.remoteReplicated(fn, args, options)
    return this.submit(fn, args, { ...options, returns: undefined }, order)[0]
  }

  /** Submits a call; its one Ref, or its `options.returns` Refs (multiple return values). */
  private submit (fn: string, args: unknown[], options: CallOptions, order?: SendOrder): Ref[] {
    if (options.returns !== undefined) {
      checkReturns(options.returns, DEFAULTS.maxReturns)
      if ((options.replicas ?? 1) > 1) throw new RangeError('a replicated call has one result: returns cannot be combined with replicas')
    }
    const temporaries: Ref[] = []
    // Large plain arguments become objects of their own, so calls stay small and
    // the executor pulls the bytes as chunks.
    const prepared = args.map(arg => {
      if (arg instanceof Ref || arg instanceof SharedRef) return arg
      if (ArrayBuffer.isView(arg) && arg.byteLength > this.inlineThreshold) {
        const tmp = this.put(arg)
        temporaries.push(tmp)
        return tmp
      }
      return arg
    })
    const encoded = encodeArgs(prepared, this.hintsOf)
    const pinned = encoded.contained.map(r => { this.table.pin(r.key); return r.key })
    const results = Array.from({ length: options.returns ?? 1 }, () => this.table.createOwned(newObjectId(), { state: 'pending', lineage: { fn } }))
    const returns = options.returns === undefined ? undefined : results.map(r => ({ key: r.key, id: r.id }))
    const call: CallState = { fn, args: prepared, options, result: { key: results[0].key, id: results[0].id }, pinned, temporaries, order, returns }
    this.submitted++
    const lineage: Lineage = { fn, options, args: encoded.bytes, siblings: returns }
    for (const r of results) this.lineage.set(r.key, lineage)
    void this.dispatch(call, encoded.bytes)
    return results
  }

  private readonly hintsOf = (ref: Ref): { size: number, locations: string[] } | undefined => this.table.hints(ref.key)

  /** Peers whose result lost a vote, and how often (the untrustworthy). */
  private readonly outvoted = new Map<string, number>()

  /**
   * One call on `replicas` distinct peers; its Ref settles with the result `quorum`
   * of them returned byte-identical. The copies are ordinary calls required on one
   * peer each, without retries (a retry could land on a peer that already voted).
   */
  private remoteReplicated (fn: string, args: unknown[], options: CallOptions): Ref {
    const replicas = options.replicas as number
    const quorum = options.quorum ?? Math.floor(replicas / 2) + 1
    if (!Number.isInteger(replicas) || !Number.isInteger(quorum) || quorum < 1 || quorum > replicas) throw new RangeError(`replicas ${replicas} and quorum ${quorum}: need 1 <= quorum <= replicas`)
    if (options.peer !== undefined) throw new RangeError('a replicated call cannot be required on one peer')
    const id = newObjectId()
    const result = this.table.createOwned(id, { state: 'pending' })
    const signal = withTimeout(this.stopController.signal, options.timeoutMs, `call of ${fn}`)
    const run = async (): Promise<void> => {
      if (this.candidates(fn).length < replicas) await this.waitForOffer(fn, signal).catch(() => {})
      const offering = this.candidates(fn)
      if (offering.length < replicas) throw new QuorumError(`${fn} needs ${replicas} distinct peers for its replicas; ${offering.length} offer it`)
      // The least loaded distinct peers (ties at random), so no one peer's answer counts twice.
      const chosen = offering.map(c => ({ peer: c.peer, load: c.load / Math.max(1, c.slots), k: Math.random() }))
        .sort((a, b) => a.load - b.load || a.k - b.k).slice(0, replicas).map(c => c.peer)
      const copies = chosen.map(peer => ({ peer, ref: this.remote(fn, args, { ...options, replicas: 1, quorum: undefined, peer, retries: 0 }) }))
      const votes: Array<{ peer: string, digest: string, error?: string }> = []
      const tally = new Map<string, { count: number, encoding: number, bytes: Uint8Array, peers: string[] }>()
      let settled: { count: number, peers: string[] } | undefined
      try {
        const pending = new Map(copies.map(c => [c.ref.key, c]))
        while (pending.size > 0) {
          const { ready } = await this.wait([...pending.values()].map(c => c.ref), { count: 1, signal })
          for (const ref of ready) {
            const copy = pending.get(ref.key) as { peer: string, ref: Ref }
            pending.delete(ref.key)
            try {
              const { encoding, bytes, release } = await this.fetchValue({ id: ref.id, owner: ref.owner }, signal)
              try {
                if (containedRefs(encoding, bytes).length > 0) throw new TypeError(`${fn} returned Refs; replicated calls compare plain values only`)
                const digest = toString(await this.sha256(bytes), 'base16')
                votes.push({ peer: copy.peer, digest })
                let group = tally.get(digest)
                if (group === undefined) tally.set(digest, group = { count: 0, encoding, bytes: bytes.slice(), peers: [] })
                group.count++
                group.peers.push(copy.peer)
              } finally {
                release()
              }
            } catch (err) {
              if (err instanceof TypeError) throw err
              votes.push({ peer: copy.peer, digest: '', error: `${(err as Error).name}: ${(err as Error).message}` })
            }
          }
          const best = [...tally.values()].sort((a, b) => b.count - a.count)[0]
          if (settled !== undefined) continue
          if (best !== undefined && best.count >= quorum) {
            settled = best
            const manifest = best.bytes.byteLength <= this.inlineThreshold
              ? { size: best.bytes.byteLength, chunkSize: this.chunkSize, hashes: [], encoding: best.encoding }
              : await makeManifest(best.bytes, best.encoding, this.chunkSize, this.sha256)
            await this.storeBytes(result.key, id, this.peerId, manifest, best.bytes, `the result of ${fn}`, signal)
            this.table.settle(result.key, { state: 'ready', inline: best.bytes.byteLength <= this.inlineThreshold, encoding: best.encoding, size: best.bytes.byteLength, manifest: best.bytes.byteLength <= this.inlineThreshold ? undefined : manifest, locations: [this.peerId], contained: [] })
            // The caller has its answer; the other replicas are still heard, so a liar is counted even when it answers last.
            continue
          }
          if ((best?.count ?? 0) + pending.size < quorum) {
            throw new QuorumError(`${fn}: no ${quorum} of ${replicas} replicas agreed (${votes.map(v => `${v.peer.slice(-6)}: ${v.error ?? v.digest.slice(0, 12)}`).join('; ')})`, votes)
          }
        }
        const winner = settled
        if (winner !== undefined) {
          const liars = votes.filter(v => v.digest !== '' && !winner.peers.includes(v.peer))
          for (const v of liars) this.outvoted.set(v.peer, (this.outvoted.get(v.peer) ?? 0) + 1)
          if (liars.length > 0) log.error('%s: %s outvoted by %d of %d', fn, liars.map(v => v.peer).join(', '), winner.count, replicas)
        }
      } finally {
        for (const c of copies) c.ref.release()
      }
    }
    run().catch((err: unknown) => {
      if (this.table.get(result.key)?.owned?.state !== 'pending') return
      this.table.settle(result.key, { state: 'failed', error: errorToInfo(err, this.peerId, fn), locations: [], contained: [] })
    })
    return result
  }

  private async dispatch (call: CallState, args: Uint8Array): Promise<void> {
    const key = call.result.key
    const signal = withTimeout(this.stopController.signal, call.options.timeoutMs, `call of ${call.fn}`)
    const exclude = new Set<string>()
    let tries = 1 + (call.options.retries ?? DEFAULTS.retries)
    let spillbacks = 0
    let reply: CallReply | undefined
    let executor = ''
    try {
      const pendingAtSubmit = call.args.some(a => a instanceof Ref && this.table.get(a.key)?.owned?.state === 'pending')
      const argInfo = await this.resolveArguments(call, signal)
      const argBytes = argInfo.reduce((n, a) => n + a.size, 0)
      // Arguments still being computed at submit time had no location hints yet: encode them again now.
      if (pendingAtSubmit) {
        args = encodeArgs(call.args, this.hintsOf, true).bytes
        const lineage = this.lineage.get(key)
        if (lineage !== undefined) lineage.args = args
      }
      if (this.candidates(call.fn).length === 0) await this.waitForOffer(call.fn, signal)
      if (call.order !== undefined) {
        await raceSignal(call.order.after, signal, `call of ${call.fn}`)
        await call.order.bind?.(call)
        call.args[call.order.seqIndex] = call.order.seq()
        args = encodeArgs(call.args, this.hintsOf, true).bytes
      }
      while (reply?.result === undefined && (reply?.results ?? []).length === 0) {
        // Flow control: a caller keeps at most a few calls queued per slot on each executor
        // of a slot-bound function, and holds the rest until one finishes.
        for (let woken = false; ; woken = true) {
          const eligible = this.candidates(call.fn, call.options.peer).filter(c => !exclude.has(c.peer) && (call.options.peer === undefined || c.peer === call.options.peer))
          if (eligible.length === 0 || eligible.some(c => this.scheduler.hasRoom(c))) break
          await this.scheduler.nextFinish(signal, woken)
        }
        executor = this.scheduler.place({ fn: call.fn, candidates: this.candidates(call.fn, call.options.peer), args: argInfo, exclude, options: call.options })
        const request: CallRequest = {
          resultId: call.result.id,
          fn: call.fn,
          args,
          timeoutMs: call.options.timeoutMs ?? 0,
          argBytes,
          // A required peer, or a call handed back too often, must be queued rather than handed back again.
          maySpillBack: call.options.peer === undefined && spillbacks < DEFAULTS.maxSpillbacks,
          resultIds: call.returns?.map(r => r?.id ?? new Uint8Array(0)) ?? []
        }
        const started = performance.now()
        this.scheduler.started(executor)
        try {
          const replying = executor === this.peerId
            ? raceSignal(this.onCall(this.peerId, request), signal, `call of ${call.fn}`)
            : this.channels.request(executor, { call: request }, { signal: call.options.timeoutMs ? signal : undefined }).then(env => env.callReply)
          // The next call to the same actor may go now: the stream keeps them in this order.
          call.order?.sent()
          reply = await replying
          if (reply === undefined) throw new ProtocolError(`${executor} sent an empty call reply`)
        } catch (err) {
          if (err instanceof QuotaExceededError && signal?.aborted !== true && spillbacks < DEFAULTS.maxSpillbacks) {
            // Refused for now, like a spillback: back off, and place it again.
            spillbacks++
            exclude.add(executor)
            if (this.candidates(call.fn).every(c => exclude.has(c.peer))) exclude.clear()
            await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 20 * 2 ** spillbacks))), signal, `call of ${call.fn}`)
            continue
          }
          if (err instanceof PeerDiedError && call.order?.peerDied !== undefined && signal?.aborted !== true) {
            // An actor's peer died under the call: it runs again on the restarted actor, or fails.
            await call.order.peerDied(executor, err, signal)
            await call.order.bind?.(call)
            call.args[call.order.seqIndex] = call.order.seq()
            args = encodeArgs(call.args, this.hintsOf, true).bytes
            continue
          }
          if (!(err instanceof PeerDiedError) || --tries <= 0 || signal?.aborted === true) throw err
          if (call.options.peer !== undefined) {
            // Required there: a dropped connection is worth another try, a dead peer is not.
            if (this.membership.get(executor)?.liveness === 'dead') throw err
            log('call %s on %s failed (%s); trying it again', call.fn, executor, err.message)
            await raceSignal(new Promise(resolve => setTimeout(resolve, 500 * 2 ** (2 - Math.min(2, tries)))), signal, `call of ${call.fn}`)
            continue
          }
          log('call %s on %s failed (%s); retrying elsewhere', call.fn, executor, err.message)
          exclude.add(executor)
          continue
        } finally {
          this.scheduler.finished(executor)
        }
        if (reply.spillback !== undefined) {
          // Handed back: learn the executor's state now and place the call elsewhere.
          this.spillbacksReceived++
          spillbacks++
          if (reply.spillback.peer === executor) this.membership.heard(executor, { state: reply.spillback })
          exclude.add(executor)
          if (this.candidates(call.fn).every(c => exclude.has(c.peer))) {
            // Everyone is full: back off, then try them all again.
            await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 20 * 2 ** spillbacks))), signal, `call of ${call.fn}`)
            exclude.clear()
          }
          continue
        }
        this.scheduler.observe(call.fn, performance.now() - started)
      }
      if (call.returns === undefined) await this.onReply(call.result.id, key, reply?.result as ObjectInfo, executor)
      else await this.onReplies(call.returns, reply as CallReply, executor)
    } catch (err) {
      for (const r of call.returns ?? [call.result]) {
        if (r !== undefined && this.table.get(r.key)?.owned?.state === 'pending') this.table.settle(r.key, { state: 'failed', error: errorToInfo(err, this.peerId, call.fn), locations: [], contained: [] })
      }
    } finally {
      // A call that failed before it was sent must not hold back the actor's next ones.
      call.order?.sent()
      // Pins and temporaries hold the arguments for the call's first run only.
      for (const k of call.pinned) this.table.unpin(k)
      for (const t of call.temporaries) t.release()
      call.pinned = []
      call.temporaries = []
    }
  }

  /**
   * Lineage reconstruction: every copy of an owned call result is lost, so the call
   * runs again. For a call with `returns`, once for every sibling lost by then (the
   * executor discards the values of the others, which still have copies or were freed).
   */
  private reconstruct (key: string): void {
    const lineage = this.lineage.get(key)
    if (lineage === undefined) return
    const lost = (lineage.siblings ?? [{ key, id: this.table.get(key)?.id as Uint8Array }]).map(s => s.key === key || this.isLost(s.key) ? s : undefined)
    this.reconstructions++
    log('every copy of %s is lost: running %s again for %d result(s)', key, lineage.fn, lost.filter(s => s !== undefined).length)
    const oldContained: string[] = []
    for (const s of lost) {
      if (s === undefined) continue
      oldContained.push(...this.table.reopen(s.key))
      // The old copies' tree is gone with them.
      this.children.delete(s.key)
      this.parents.delete(s.key)
      this.receiving.delete(s.key)
      this.receivedBy.delete(s.key)
    }
    // Its arguments are not held for it: placement has no hints, and a freed one fails the call.
    // A peer it was required to run on is most likely the one that died: prefer it instead.
    const options: CallOptions = { ...lineage.options, peer: undefined, prefer: lineage.options.peer ?? lineage.options.prefer }
    const first = lost.find(s => s !== undefined) as { key: string, id: Uint8Array }
    const call: CallState = { fn: lineage.fn, args: [], options, result: first, pinned: [], temporaries: [], returns: lineage.siblings === undefined ? undefined : lost }
    void this.dispatch(call, lineage.args).finally(() => {
      for (const k of oldContained) this.table.unpin(k)
    })
  }

  /** Whether an owned call result that was computed has no complete copy left (so lineage must make it again). */
  private isLost (key: string): boolean {
    const owned = this.table.get(key)?.owned
    return owned !== undefined && owned.state === 'ready' && !owned.inline && !this.hasCompleteCopy(key, owned)
  }

  /** Whether a complete copy of an owned object is left: here, or on a live peer that is not still receiving it. */
  private hasCompleteCopy (key: string, owned: OwnedObject): boolean {
    const receiving = this.receiving.get(key)
    for (const p of owned.locations) {
      if (p === this.peerId ? this.store.get(key) !== undefined && this.store.isComplete(this.store.get(key) as StoredObject) : receiving?.has(p) !== true) return true
    }
    return false
  }

  private dropLineage (key: string): void {
    this.lineage.delete(key)
  }

  /** Waits for the owned objects among the dereferenced arguments; returns where each argument is and its size. */
  private async resolveArguments (call: CallState, signal: AbortSignal | undefined): Promise<ArgInfo[]> {
    const info: ArgInfo[] = []
    for (const arg of call.args) {
      if (!(arg instanceof Ref)) continue
      const owned = this.table.get(arg.key)?.owned
      if (owned !== undefined) {
        await raceSignal(owned.ready, signal, `arguments of ${call.fn}`)
        if (owned.state === 'failed' && owned.error !== undefined) throw infoToError(owned.error)
      }
      const hints = this.table.hints(arg.key)
      if (hints !== undefined) info.push(hints)
    }
    return info
  }

  /**
   * A function nobody offers yet may be registered a moment from now (a peer
   * joining, a register() whose hello is on its way): wait a short grace
   * period for an offer before the call fails with FunctionNotFoundError.
   */
  private async waitForOffer (fn: string, signal: AbortSignal | undefined): Promise<void> {
    let unsubscribe = (): void => {}
    const offered = new Promise<void>(resolve => {
      unsubscribe = this.membership.onChange(() => { if (this.candidates(fn).length > 0) resolve() })
    })
    const grace = withTimeout(signal, DEFAULTS.functionOfferGraceMs, 'grace') as AbortSignal
    try {
      await raceSignal(offered, grace, 'grace')
    } catch {
      if (signal?.aborted === true) throw signal.reason
    } finally {
      unsubscribe()
    }
  }

  /** Live peers offering `fn` (this one included), as the scheduler sees them. */
  private candidates (fn: string, required?: string): CandidateView[] {
    const views: CandidateView[] = this.membership.offering(fn, required).map(p => ({
      peer: p.peer,
      slots: p.state?.slots ?? 1,
      load: (p.state?.queued ?? 0) + (p.state?.running ?? 0),
      admitBytes: p.state?.admitBytes ?? Infinity,
      bandwidth: p.state?.bandwidth ?? DEFAULTS.bandwidthBytesPerSecond,
      limit: p.state?.pooledFunctions.includes(fn) === true ? (p.state.slots * DEFAULTS.maxQueuePerSlot) : Infinity
    }))
    if (this.executor.offers(fn)) {
      // Our own queue is counted exactly by the scheduler's in-flight count.
      views.push({
        peer: this.peerId,
        slots: this.executor.slots,
        load: 0,
        admitBytes: this.admitBytes(),
        bandwidth: this.transfer.bandwidth(),
        limit: this.executor.usesSlots(fn) ? this.executor.slots * DEFAULTS.maxQueuePerSlot : Infinity
      })
    }
    return views
  }

  /**
   * Executor side: admits a call (or hands it back), fetches its arguments,
   * runs it, and describes its result. Never throws: failures become FAILED results.
   */
  private async onCall (from: string, req: CallRequest): Promise<CallReply> {
    if (from === this.peerId) return await this.runCall(from, req)
    if (!this.quotas.take(from, 'calls')) throw new QuotaExceededError(`${from} has too many calls queued at ${this.peerId}`)
    try {
      return await this.runCall(from, req)
    } finally {
      this.quotas.give(from, 'calls')
    }
  }

  private async runCall (from: string, req: CallRequest): Promise<CallReply> {
    const scope: Ref[] = []
    const resultKey = objectKey(req.resultId)
    let admitted = false
    let release = (): void => {}
    let releaseFetch = (): void => {}
    const unpin: Array<() => void> = []
    let resultStored: Admitted | undefined
    try {
      if (!this.executor.offers(req.fn)) throw new FunctionNotFoundError(req.fn)
      const decoded = decodeArgs(req.args)
      const missing = decoded.reduce((n, a) => 'deref' in a && !this.holds(a.deref) ? n + (a.deref.size ?? 0) : n, 0)
      // Arguments not in memory here (fetched, or restored from disk) will take room.
      const incoming = decoded.reduce((n, a) => 'deref' in a && this.store.get(objectKey(a.deref.id))?.data === undefined ? n + (a.deref.size ?? 0) : n, 0)
      const full = this.executor.usesSlots(req.fn) && this.executor.admitted >= this.executor.slots * DEFAULTS.maxQueuePerSlot
      if (req.maySpillBack && (missing > this.admitBytes() || full || this.underPressure() || this.admission.check(req.fn, incoming) === 'full')) {
        this.spilledBack++
        log('handing back %s from %s: %d argument bytes missing, %d admitted', req.fn, from, missing, this.executor.admitted)
        return { spillback: { ...this.state(), seq: 0 } }
      }
      admitted = this.executor.usesSlots(req.fn)
      if (admitted) this.executor.admitted++
      const signal = withTimeout(this.stopController.signal, req.timeoutMs, `arguments of ${req.fn}`)
      // Room for what the call will make, before its arguments come in and it starts making it.
      resultStored = await this.admission.start(req.fn, incoming, signal)
      const pending: Array<Promise<void>> = []
      const makeRef = (desc: RefDesc): Ref => {
        const ref = this.table.refFromDesc(desc, pending)
        scope.push(ref)
        return ref
      }
      // With prefetch, arguments are fetched (in order, a slot's worth ahead)
      // while earlier calls hold the slots; without, only once a slot is ours.
      if (!this.prefetch) release = await this.executor.acquire(req.fn, signal)
      else releaseFetch = await this.executor.acquireFetch(req.fn, signal)
      const args = await Promise.all(decoded.map(async arg => {
        if ('value' in arg) return decodeValue(Encoding.CBOR, arg.value, makeRef)
        const local = this.holds(arg.deref)
        const { encoding, bytes, release } = await this.fetchValue(arg.deref, signal)
        // The argument stays in memory while the call runs.
        unpin.push(release)
        this.argBytes[local ? 'localBytes' : 'fetchedBytes'] += bytes.byteLength
        return decodeValue(encoding, bytes, makeRef)
      }))
      if (pending.length > 0) await raceSignal(Promise.all(pending), signal, `arguments of ${req.fn}`)
      if (this.prefetch) {
        release = await this.executor.acquire(req.fn, signal)
        releaseFetch()
      }
      const value = await this.executor.run(req.fn, args, signal, { lend: resultStored.lend })
      if (signal?.aborted === true) {
        // The caller has given up on this call: keep nothing for it.
        throw new TimeoutError(`${req.fn} finished after its ${req.timeoutMs} ms deadline`)
      }
      if ((req.resultIds ?? []).length > 0) {
        const results = await this.describeResults(from, req, await splitReturns(value, (req.resultIds ?? []).length, req.fn), signal)
        resultStored(results.reduce((n, r) => n + (r.manifest?.size ?? 0), 0))
        return { results }
      }
      const result = await this.describeResult(from, req.resultId, resultKey, value, signal)
      resultStored(result.manifest?.size ?? 0)
      return { result }
    } catch (err) {
      const info: ErrorInfo = errorToInfo(err, this.peerId, req.fn)
      return { result: { status: ObjectStatus.FAILED, inline: new Uint8Array(0), encoding: 0, error: info, locations: [], contained: [] } }
    } finally {
      releaseFetch()
      release()
      for (const u of unpin) u()
      resultStored?.()
      if (admitted) this.executor.admitted--
      for (const r of scope) r.release()
    }
  }

  /** Whether this peer holds a complete copy of an object. */
  private holds (desc: RefDesc): boolean {
    const obj = this.store.get(objectKey(desc.id))
    return obj !== undefined && this.store.isComplete(obj)
  }

  /** Executor side: a return value, inline when small, else stored here for the caller (its owner). */
  private async describeResult (caller: string, resultId: Uint8Array, resultKey: string, value: unknown, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    const encoded = encodeValue(value, this.hintsOf)
    const contained = encoded.contained.map(r => { this.table.pin(r.key); return r.key })
    // A Ref handed to a durable owner moves on only once that owner holds the object.
    const registrations = contained.flatMap(k => { const r = this.table.get(k)?.registered; return r === undefined ? [] : [r] })
    if (registrations.length > 0) {
      try {
        await raceSignal(Promise.all(registrations), signal, `the result of call ${resultKey}`)
      } catch (err) {
        for (const k of contained) this.table.unpin(k)
        for (const r of encoded.contained) r.release()
        throw err
      }
    }
    if (contained.length > 0) this.handoffs.set(resultKey, { peer: caller, keys: contained })
    const containedDescs: RefDesc[] = encoded.contained.map(r => ({ id: r.id, owner: r.owner, ...this.table.hints(r.key) }))
    // Refs in the return value move to the caller: this peer's handles go.
    for (const r of encoded.contained) r.release()
    if (encoded.bytes.byteLength <= this.inlineThreshold) {
      return { status: ObjectStatus.INLINE, inline: encoded.bytes, encoding: encoded.encoding, locations: [], contained: containedDescs }
    }
    const manifest = await makeManifest(encoded.bytes, encoded.encoding, this.chunkSize, this.sha256)
    await this.storeBytes(resultKey, resultId, caller, manifest, encoded.bytes, `the result of call ${resultKey}`, signal)
    return { status: ObjectStatus.STORED, inline: new Uint8Array(0), encoding: encoded.encoding, manifest, locations: [this.peerId], contained: containedDescs }
  }

  /**
   * Executor side: the results of a call made with `returns`, each described (inline or
   * stored here) on its own. A value whose id is empty is not wanted (a re-execution
   * for its lost siblings): Refs it holds are released and it is answered FREED.
   */
  private async describeResults (caller: string, req: CallRequest, values: unknown[], signal: AbortSignal | undefined): Promise<ObjectInfo[]> {
    const ids = req.resultIds ?? []
    const results: ObjectInfo[] = []
    try {
      for (const [i, id] of ids.entries()) {
        if (id.byteLength === 0) {
          for (const r of encodeValue(values[i]).contained) r.release()
          results.push({ status: ObjectStatus.FREED, inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] })
          continue
        }
        results.push(await this.describeResult(caller, id, objectKey(id), values[i], signal))
      }
      return results
    } catch (err) {
      // The call fails as a whole: what was stored for it here has no owner that knows of it.
      for (const id of ids.slice(0, results.length)) {
        if (id.byteLength === 0) continue
        this.store.delete(objectKey(id))
        this.releaseHandoff(caller, objectKey(id))
      }
      for (const v of values.slice(results.length + 1)) {
        try { for (const r of encodeValue(v).contained) r.release() } catch {}
      }
      throw err
    }
  }

  /** Caller side: records the result of a call this peer owns. */
  private async onReply (resultId: Uint8Array, key: string, info: ObjectInfo, executor: string): Promise<void> {
    const pending: Array<Promise<void>> = []
    const contained = info.contained.map(desc => this.table.pinDesc(desc, pending))
    try {
      if (pending.length > 0) await Promise.all(pending)
    } finally {
      if (info.contained.length > 0) this.ackResult(executor, key, resultId)
    }
    switch (info.status) {
      case ObjectStatus.INLINE: {
        if (this.table.get(key) !== undefined) {
          await this.store.reserve(info.inline.byteLength, `the result ${key}`, this.stopController.signal)
          if (this.table.get(key) !== undefined) this.store.putComplete(key, resultId, this.peerId, { size: info.inline.byteLength, chunkSize: this.chunkSize, hashes: [], encoding: info.encoding }, info.inline, true)
          else this.store.unreserve(info.inline.byteLength)
        }
        this.table.settle(key, { state: 'ready', inline: true, encoding: info.encoding, size: info.inline.byteLength, locations: [this.peerId], contained })
        break
      }
      case ObjectStatus.STORED:
        if (info.manifest === undefined) throw new ProtocolError('STORED result without a manifest')
        this.table.settle(key, { state: 'ready', inline: false, encoding: info.encoding, size: info.manifest.size, manifest: info.manifest, locations: info.locations, contained })
        break
      default:
        this.table.settle(key, { state: 'failed', error: info.error, locations: [], contained })
    }
  }

  /** Caller side: records the results of a call made with `returns` (all of them fail when the call failed as a whole). */
  private async onReplies (returns: Array<{ key: string, id: Uint8Array } | undefined>, reply: CallReply, executor: string): Promise<void> {
    const results = reply.results ?? []
    if (results.length !== returns.length) {
      if (reply.result?.status !== ObjectStatus.FAILED) throw new ProtocolError(`${executor} answered a call of ${returns.length} results with ${results.length}`)
      for (const r of returns) if (r !== undefined) this.table.settle(r.key, { state: 'failed', error: reply.result.error, locations: [], contained: [] })
      return
    }
    await Promise.all(returns.map(async (r, i) => {
      if (r !== undefined) await this.onReply(r.id, r.key, results[i], executor)
    }))
  }

  private ackResult (executor: string, key: string, resultId: Uint8Array): void {
    if (executor === this.peerId) {
      this.releaseHandoff(this.peerId, key)
      return
    }
    this.channels.send(executor, { resultAck: { resultId } }).catch((err: Error) => { log('result ack to %s failed: %s', executor, err.message) })
  }

  private releaseHandoff (from: string, key: string): void {
    const handoff = this.handoffs.get(key)
    if (handoff === undefined || handoff.peer !== from) return
    this.handoffs.delete(key)
    for (const k of handoff.keys) this.table.unpin(k)
  }

  // ------------------------------------------------------------ objects

  /** Stores a value this peer owns and marks it ready. */
  private async storeOwned (key: string, id: Uint8Array, encoded: EncodedValue, contained: string[], signal: AbortSignal | undefined): Promise<void> {
    const inline = encoded.bytes.byteLength <= this.inlineThreshold
    const manifest = inline
      ? { size: encoded.bytes.byteLength, chunkSize: this.chunkSize, hashes: [], encoding: encoded.encoding }
      : await makeManifest(encoded.bytes, encoded.encoding, this.chunkSize, this.sha256)
    if (this.table.get(key) === undefined) return
    await this.storeBytes(key, id, this.peerId, manifest, encoded.bytes, `put of object ${key}`, signal)
    if (this.table.get(key) === undefined) {
      this.store.delete(key)
      return
    }
    this.table.settle(key, { state: 'ready', inline, encoding: encoded.encoding, size: manifest.size, manifest: inline ? undefined : manifest, locations: [this.peerId], contained })
  }

  /**
   * Puts bytes this peer made into its store: waits for room (backpressure);
   * a value larger than the whole store goes straight to disk, and
   * OutOfMemoryError only when it fits nowhere.
   */
  private async storeBytes (key: string, id: Uint8Array, owner: string, manifest: Manifest, bytes: Uint8Array, what: string, signal: AbortSignal | undefined): Promise<void> {
    if (!this.store.fitsInMemory(bytes.byteLength)) {
      if (await this.store.putOnDisk(key, id, owner, manifest, bytes)) return
      throw new OutOfMemoryError(`${what} is ${bytes.byteLength} bytes: more than the store's capacity (${this.store.capacity}) and its free spill space`)
    }
    await this.store.reserve(bytes.byteLength, what, signal)
    this.store.putComplete(key, id, owner, manifest, bytes, true)
  }

  /** Resolves when the object is computed (or failed), without fetching it. */
  private async whenReady (ref: Ref, signal: AbortSignal): Promise<void> {
    const entry = this.table.get(ref.key)
    if (entry?.owned !== undefined) {
      await raceSignal(entry.owned.ready, signal, `wait for ${ref}`)
      return
    }
    if (entry?.registered !== undefined) await raceSignal(entry.registered, signal, `wait for ${ref}`)
    for (let attempt = 0; ;) {
      // A Ref whose owner died is settled: reading it fails with OwnerDiedError.
      if (entry?.ownerDied === true || this.membership.get(ref.owner)?.liveness === 'dead') return
      let reply: Envelope
      try {
        reply = await this.channels.request(ref.owner, { locate: { id: ref.id, wait: true, fetch: false, timeoutMs: DEFAULTS.locateParkMs } }, { signal })
      } catch (err) {
        if (!(err instanceof PeerDiedError) || signal.aborted) throw err
        await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt++))), signal, `wait for ${ref}`)
        continue
      }
      if (reply.locateReply?.object?.status !== ObjectStatus.PENDING) return
    }
  }

  /**
   * The encoded value of an object, from this store, the owner's reply, or
   * pulled from holders. Bytes in this store stay in memory until `release()`.
   */
  private async fetchValue (desc: RefDesc, signal: AbortSignal | undefined): Promise<{ encoding: number, bytes: Uint8Array, release: () => void }> {
    const key = objectKey(desc.id)
    const what = `object ${key}`
    const local = await this.store.read(key, what, signal)
    if (local !== undefined) return { encoding: (this.store.get(key) as StoredObject).manifest.encoding, ...local }
    // Holders can die while we pull; the owner then points at others, or computes the
    // object again (lineage), or says it is lost. Under sustained churn that can go on
    // for as long as peers keep dying, so there is no cap on the rounds: what bounds
    // them is the caller's signal (its timeout), and an owner that names the same
    // holders, none of which serves it, for longer than the failure detector takes to
    // declare a holder dead. A lineage call that keeps killing its executor fails on
    // its own (its retries), and the owner then answers FAILED.
    let deadline = performance.now() + this.failureBoundMs() * 2
    let named = ''
    for (let attempt = 0; ; attempt++) {
      this.checkOwnerAlive(desc.owner, key)
      const info = desc.owner === this.peerId
        ? await this.describeOwned(key, { id: desc.id, wait: true, fetch: true, timeoutMs: 0 }, this.peerId, signal)
        : await this.locateRemote(desc, signal)
      const holders = [...info.locations].sort().join(',')
      if (holders !== named) {
        // New holders (a copy elsewhere, or a value computed again): progress, so the clock starts over.
        named = holders
        deadline = performance.now() + this.failureBoundMs() * 2
        attempt = 0
      }
      try {
        return await this.fetchDescribed(desc, info, signal)
      } catch (err) {
        const retry = err instanceof ObjectLostError && info.status === ObjectStatus.STORED && signal?.aborted !== true && performance.now() < deadline
        if (!retry) throw err
        log('fetch of %s failed (%s); asking its owner again (attempt %d)', key, (err as Error).message, attempt + 1)
        await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt))), signal, `get of ${key}`)
      }
    }
  }

  /** How long the failure detector takes at most to declare a silent peer dead. */
  private failureBoundMs (): number {
    return (DEFAULTS.deadAfterBeats + 1) * this.heartbeatMs
  }

  /** Fate sharing: a Ref whose owner died is dead too. */
  private checkOwnerAlive (owner: string, key: string): void {
    if (owner === this.peerId) return
    if (this.table.get(key)?.ownerDied === true || this.membership.get(owner)?.liveness === 'dead') {
      throw new OwnerDiedError(`the owner ${owner} of ${key} died`)
    }
  }

  private async fetchDescribed (desc: RefDesc, info: ObjectInfo, signal: AbortSignal | undefined): Promise<{ encoding: number, bytes: Uint8Array, release: () => void }> {
    const key = objectKey(desc.id)
    const what = `object ${key}`
    switch (info.status) {
      case ObjectStatus.INLINE:
        return { encoding: info.encoding, bytes: info.inline, release: () => {} }
      case ObjectStatus.STORED: {
        if (info.manifest === undefined) throw new ProtocolError(`no manifest for ${key}`)
        // It may have arrived here while we asked (our own result, or another reader's pull).
        const arrived = await this.store.read(key, what, signal)
        if (arrived !== undefined) return { encoding: info.manifest.encoding, ...arrived }
        const sources = info.locations.filter(p => p !== this.peerId)
        // Memory pressure may drop a fresh copy before we pin it: pull again then.
        for (let attempt = 0; ; attempt++) {
          const obj = await this.transfer.pull({
            key,
            id: desc.id,
            owner: desc.owner,
            manifest: info.manifest,
            sources,
            signal,
            relocate: async () => {
              const again = desc.owner === this.peerId ? info : await this.locateRemote(desc, signal)
              return again.locations.filter(p => p !== this.peerId)
            },
            onProgress: desc.owner === this.peerId
              ? undefined
              : (have, complete) => {
                  this.channels.send(desc.owner, { progress: { id: desc.id, have: have.slice(), complete } }).catch((err: Error) => { log('progress to %s failed: %s', desc.owner, err.message) })
                }
          })
          const pulled = await this.store.read(key, what, signal)
          if (pulled !== undefined) return { encoding: obj.manifest.encoding, ...pulled }
          if (attempt >= 2) throw new ObjectLostError(`${what} was dropped from memory as soon as it arrived, three times`)
        }
      }
      case ObjectStatus.FAILED:
        throw infoToError(info.error ?? { name: 'RefmeshError', message: 'failed', stack: '', peer: desc.owner, fn: '', remote: false })
      default:
        throw new ObjectLostError(`object ${key} no longer exists (owner ${desc.owner})`)
    }
  }

  /**
   * Asks the owner where an object is (parking while it is computed). An owner that
   * cannot be reached is asked again until the failure detector has a verdict:
   * dead is OwnerDiedError; a blip is forgotten.
   */
  private async locateRemote (desc: RefDesc, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    const key = objectKey(desc.id)
    const deadline = performance.now() + this.failureBoundMs() * 2
    for (let attempt = 0; ;) {
      this.checkOwnerAlive(desc.owner, key)
      let reply: Envelope
      try {
        reply = await this.channels.request(desc.owner, { locate: { id: desc.id, wait: true, fetch: true, timeoutMs: DEFAULTS.locateParkMs } }, { signal })
      } catch (err) {
        if (!(err instanceof PeerDiedError) || signal?.aborted === true) throw err
        // An owner the failure detector still holds alive is only slow to answer (a loaded
        // peer under churn): keep asking. The detector's verdict, or the caller's signal, ends it.
        if (performance.now() > deadline && !this.membership.isAlive(desc.owner)) throw new OwnerDiedError(`the owner ${desc.owner} of ${key} cannot be reached: ${err.message}`)
        await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt++))), signal, `get of ${key}`)
        continue
      }
      const info = reply.locateReply?.object
      if (info === undefined) throw new ProtocolError(`${desc.owner} sent an empty locate reply`)
      if (info.status !== ObjectStatus.PENDING) return info
    }
  }

  /** Owner side: what an object is and where it lives; parks while it is being computed. */
  private async describeOwned (key: string, req: Locate, from: string, signal?: AbortSignal): Promise<ObjectInfo> {
    const none: ObjectInfo = { status: ObjectStatus.FREED, inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] }
    const entry = this.table.get(key)
    const owned = entry?.owned
    if (entry === undefined || owned === undefined) return none
    if (owned.state === 'pending') {
      if (!req.wait) return { ...none, status: ObjectStatus.PENDING }
      const park = withTimeout(signal ?? this.stopController.signal, req.timeoutMs, 'locate')
      try {
        await raceSignal(owned.ready, park, 'locate')
      } catch (err) {
        if (signal?.aborted === true) throw err
        return { ...none, status: ObjectStatus.PENDING }
      }
    }
    // Contained Refs are pinned while this object lives, so their entries exist.
    const contained = owned.contained.flatMap(k => { const e = this.table.get(k); return e === undefined ? [] : [{ id: e.id, owner: e.owner }] })
    if (owned.state === 'failed') return { ...none, status: ObjectStatus.FAILED, error: owned.error }
    // A peer that asks to pull an object does not hold a whole copy, whatever it held before
    // (it dropped it, or freed it thinking this owner dead): it is no holder to point anyone at.
    if (req.fetch && from !== this.peerId && this.receiving.get(key)?.has(from) !== true) owned.locations.delete(from)
    if (!owned.inline && !this.hasCompleteCopy(key, owned)) {
      // Every holder died: a call result is computed again (then described), a put() is gone.
      if (this.lineage.has(key)) {
        this.reconstruct(key)
        return await this.describeOwned(key, req, from, signal)
      }
      return { ...none, status: ObjectStatus.FAILED, error: errorToInfo(new ObjectLostError(`every copy of ${key} is lost; it was made by put(), which cannot be computed again`), this.peerId) }
    }
    if (owned.inline) {
      const held = await this.store.read(key, `object ${key}`, signal)
      if (held === undefined) return none
      held.release()
      return { status: ObjectStatus.INLINE, inline: held.bytes, encoding: owned.encoding, locations: [], contained }
    }
    let locations = [...owned.locations]
    if (req.fetch && from !== this.peerId) {
      owned.locations.add(from)
      locations = this.feedOrRedirect(key, from, locations)
    }
    if (req.fetch && from === this.peerId) owned.locations.add(this.peerId)
    return { status: ObjectStatus.STORED, inline: new Uint8Array(0), encoding: owned.encoding, manifest: owned.manifest, locations, contained }
  }

  /**
   * Owner side: which holders a receiver pulls from (core/tree.ts): each
   * holder feeds about `ownerFanout` receivers at once, more or fewer by its
   * measured upload rate; a new receiver goes to the `parentsPerReceiver`
   * holders that would serve it fastest, so a pipelined tree forms as demand
   * arrives (as in Hoplite). A receiver keeps its parents while they live (and
   * may gain a much faster one); one that has it all frees its parents' room.
   */
  private feedOrRedirect (key: string, receiver: string, locations: string[]): string[] {
    let receiving = this.receiving.get(key)
    if (receiving === undefined) this.receiving.set(key, receiving = new Set())
    const partial = locations.filter(p => p !== receiver && receiving.has(p))
    const complete = locations.filter(p => p !== receiver && !receiving.has(p))
    receiving.add(receiver)
    if (!this.swarm) {
      // A star: receivers pull only from the holders that had it before any receiver.
      let ever = this.receivedBy.get(key)
      if (ever === undefined) this.receivedBy.set(key, ever = new Set())
      ever.add(receiver)
      return locations.filter(p => !ever.has(p))
    }
    let kids = this.children.get(key)
    if (kids === undefined) this.children.set(key, kids = new Map())
    let assigned = this.parents.get(key)
    if (assigned === undefined) this.parents.set(key, assigned = new Map())
    const holders = [...complete, ...partial]
    const mine = assigned.get(receiver)?.filter(p => holders.includes(p))
    this.uploadRates.observe(this.membership.all().map(p => p.state?.flows))
    const chosen = chooseParents(holders, h => kids.get(h)?.size ?? 0, mine, this.uploadRates, { fanout: DEFAULTS.ownerFanout, parents: DEFAULTS.parentsPerReceiver }, h => partial.includes(h))
    for (const h of chosen) {
      let set = kids.get(h)
      if (set === undefined) kids.set(h, set = new Set())
      set.add(receiver)
    }
    assigned.set(receiver, chosen)
    return chosen.length > 0 ? chosen : holders
  }

  /** Owner side: a receiver has all of an object (or is gone): its parents have room again. */
  private doneReceiving (key: string, peer: string, gone = false): void {
    this.receiving.get(key)?.delete(peer)
    for (const set of this.children.get(key)?.values() ?? []) set.delete(peer)
    this.parents.get(key)?.delete(peer)
    if (gone) this.children.get(key)?.delete(peer)
  }

  /** Owner side: nothing refers to the object any more; drop every copy. */
  private freeOwned (entry: Entry, owned: OwnedObject): void {
    this.store.delete(entry.key)
    const adopted = this.adoptedFor.get(entry.key)
    if (adopted !== undefined) {
      this.adoptedFor.delete(entry.key)
      this.quotas.give(adopted.peer, 'bytes', adopted.bytes)
    }
    const actor = this.actorOf.get(entry.key)
    if (actor !== undefined) {
      // The last handle of an actor anywhere is gone: it stops.
      this.actorOf.delete(entry.key)
      actor.end()
      this.actorSeq.delete(actor.desc.instance)
      this.actorSent.delete(actor.desc.instance)
      this.remote(ACTOR_STOP, [actor.desc.instance], { peer: actor.desc.peer, retries: 0 }).release()
    }
    this.dropLineage(entry.key)
    this.children.delete(entry.key)
    this.parents.delete(entry.key)
    this.receiving.delete(entry.key)
    this.receivedBy.delete(entry.key)
    for (const k of owned.contained) this.table.unpin(k)
    for (const peer of owned.locations) {
      if (peer === this.peerId) continue
      this.channels.send(peer, { free: { ids: [entry.id] } }).catch((err: Error) => { log('free to %s failed: %s', peer, err.message) })
    }
  }

  // ------------------------------------------------------------ messages

  private onRequest (from: string, env: Envelope): Promise<EnvelopeBody> | EnvelopeBody {
    if (env.hello !== undefined) {
      this.onHello(from, env.hello.functions, env.hello.addrs, env.hello.peers)
      return {}
    }
    if (env.call !== undefined) {
      return this.onCall(from, env.call).then(callReply => ({ callReply }))
    }
    if (env.locate !== undefined) {
      const req = env.locate
      return this.describeOwned(objectKey(req.id), req, from).then(object => ({ locateReply: { object } }))
    }
    if (env.borrow !== undefined) {
      const key = objectKey(env.borrow.id)
      if (env.borrow.add) {
        if (!this.table.addBorrower(key, from)) throw new ObjectLostError(`object ${key} is not owned here (freed?)`)
      } else {
        this.table.removeBorrower(key, from)
      }
      return { ack: {} }
    }
    if (env.nameLookup !== undefined) {
      return this.answerLookup(from, env.nameLookup.name)
    }
    if (env.adopt !== undefined) {
      return this.adopt(from, env.adopt.id, env.adopt.object ?? { status: 0, inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] })
    }
    if (env.free !== undefined) {
      for (const id of env.free.ids) {
        const key = objectKey(id)
        if (this.store.get(key)?.owner === from) this.store.delete(key)
      }
      return {}
    }
    if (env.resultAck !== undefined) {
      this.releaseHandoff(from, objectKey(env.resultAck.resultId))
      return {}
    }
    if (env.stats !== undefined) {
      return { statsReply: { json: JSON.stringify(this.stats()) } }
    }
    if (env.progress !== undefined) {
      // A receiver that has it all needs the owner no more.
      if (env.progress.complete) this.doneReceiving(objectKey(env.progress.id), from)
      return {}
    }
    if (env.prefetch !== undefined) {
      const object = env.prefetch.object
      if (object === undefined) throw new ProtocolError('prefetch without an object')
      // A copy pulled on request is a call's worth of work here: it counts against the caller's call quota.
      if (!this.quotas.take(from, 'calls')) throw new QuotaExceededError(`${from} has too many calls and prefetches queued at ${this.peerId}`)
      return this.prefetchObject(object, this.stopController.signal).then(() => ({ ack: {} })).finally(() => { this.quotas.give(from, 'calls') })
    }
    throw new ProtocolError('unknown or empty request')
  }

  // ------------------------------------------------------------ membership

  private readonly onConnect = (evt: CustomEvent<{ toString(): string }>): void => {
    const peer = evt.detail.toString()
    this.membership.connected(peer)
    this.sayHello(peer)
  }

  private readonly onDisconnect = (evt: CustomEvent<{ toString(): string }>): void => {
    const peer = evt.detail.toString()
    log('peer %s disconnected', peer)
    // Calls waiting on it fail now (and are retried elsewhere); what it borrows
    // or holds is forgotten only once the failure detector declares it dead.
    this.channels.dropPeer(peer)
    this.membership.disconnected(peer)
    // A peer whose process died refuses the redial: dead now, not after the heartbeat bound.
    redial({ dial: async (addrs, o) => await this.libp2p.dial(addrs, o), timeoutMs: DEFAULTS.redialTimeoutMs }, peer, this.membership.get(peer)?.addrs ?? [], this.stopController.signal)
      .then(verdict => { if (verdict === 'refused' && this.libp2p.getConnections(peerIdFromString(peer)).length === 0) this.membership.declareDead(peer, 'refused') })
      .catch((err: Error) => { log('redial of %s: %s', peer, err.message) })
  }

  private onPeerDead (peer: string, cause: DeathCause): void {
    log('peer %s is dead (%s)', peer, cause === 'refused' ? 'its connections closed and a redial was refused' : 'silent past the heartbeat bound')
    this.channels.dropPeer(peer)
    this.quotas.forget(peer)
    this.table.peerGone(peer)
    // Fate sharing: copies of what the dead peer owned are freed (nobody can free them later).
    const orphans = this.store.ownedBy(peer)
    for (const key of orphans) this.store.delete(key)
    if (orphans.length > 0) log('freed %d copies owned by dead %s', orphans.length, peer)
    for (const [key, h] of this.handoffs) if (h.peer === peer) this.releaseHandoff(peer, key)
    for (const key of this.receiving.keys()) this.doneReceiving(key, peer, true)
  }

  private hello (): EnvelopeBody {
    return {
      hello: {
        functions: this.executor.names(),
        addrs: this.libp2p.getMultiaddrs().map(a => a.toString()),
        peers: this.membership.all().filter(p => p.liveness !== 'dead').slice(0, DEFAULTS.helloPeers).map(p => ({ peer: p.peer, addrs: p.addrs }))
      }
    }
  }

  private sayHello (peer: string): void {
    this.channels.send(peer, this.hello(), { signal: this.stopController.signal }).catch((err: Error) => {
      log('hello to %s failed: %s', peer, err.message)
    })
  }

  private announce (): void {
    if (!this.started) return
    for (const conn of this.libp2p.getConnections()) this.sayHello(conn.remotePeer.toString())
    this.gossip?.publish()
  }

  private onHello (from: string, functions: string[], addrs: string[], peers: Array<{ peer: string, addrs: string[] }>): void {
    const isNew = !this.membership.has(from)
    this.membership.heard(from, { functions, addrs })
    this.membership.connected(from)
    // Peer exchange: remember where our neighbour's peers listen, and meet them.
    for (const p of peers) {
      if (p.peer === this.peerId || this.membership.has(p.peer) || p.addrs.length === 0) continue
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
