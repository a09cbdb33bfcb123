/**
 * The public types of a peer's API (what `Mesh` takes and returns), apart from
 * the code so that the parts of core/ can name them without importing the facade.
 */
import type { Libp2p } from '@libp2p/interface'
import type { Ref, SharedRef } from './ref.ts'
import type { AnyFunction, CallContext, ExecutorBackend } from './executor.ts'
import type { PubSub } from './gossip.ts'
import type { RefsOf } from './returns.ts'
import type { DeathCause, Liveness } from './membership.ts'
import type { QuotaLimits } from './quota.ts'
import type { PlacementOptions } from './scheduler.ts'
import type { ObjectStore, SpillBackend } from './store.ts'
import type { Hasher } from './chunks.ts'
import type { TrafficCounter } from './traffic.ts'
import type { Transfer, TransferHooks } from './transfer.ts'

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
  /** the largest chunk of objects this peer makes (1 MiB); smaller objects get smaller chunks, down to 256 KiB (core/chunks.ts) */
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
  /** calls start only with room in memory for their results and arguments (default true); false: for comparison */
  admission?: boolean
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
  /**
   * how long a caught source is left out of pulls (defaults in DEFAULTS.avoid*): one that
   * served a chunk failing its hash, for every object; one named a holder that denied
   * holding, for that object. Shorter windows let a test see a peer asked again.
   */
  avoid?: { badSourceMs?: number, deniedMs?: number }
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
  /** states published and accepted (gossiped or resent in hellos); quiet: heartbeats it said it was alive with hellos, its state unchanged; resent: of those, the ones whose hellos carried the state again */
  gossip: { published: number, received: number, quiet: number, resent: number }
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

/** How one caller's calls to one actor keep their order: each is sent after the one before, and numbered then. */
export interface SendOrder {
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

/** One call on its caller, from remote() until its result is known (core/calls.ts). */
export interface CallState {
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
