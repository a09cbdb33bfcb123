/** Every default of the mesh, in one place. */
export const DEFAULTS = {
  /** values whose encoding is at most this travel inline with replies */
  inlineThresholdBytes: 64 * 1024,
  /** control frames carry only small values and manifests */
  maxControlFrameBytes: 8 * 1024 * 1024,
  /**
   * chunks a puller asks of one holder at once. Two, not three: a holder that relays a
   * broadcast serves every receiver that asks it, first asked first served, so each
   * chunk in flight is queue in front of the next receiver's ask (16 MiB to 8 receivers
   * behind 20 Mbit/s uplinks, chunks of 256 KiB: 8.9-9.8 s with two, 10.1-12.1 with
   * three, 4 interleaved runs each on a loaded machine; with one, 11.0-11.2)
   */
  chunksInFlightPerSource: 2,
  /** how many receivers one holder of an object feeds at once; later ones are pointed at other holders */
  ownerFanout: 2,
  /** how many holders a receiver is pointed at (it pulls from all of them at once) */
  parentsPerReceiver: 2,
  /** the clock of a pull: stalls, progress reports and relocation are checked this often */
  bitfieldRefreshMs: 50,
  /** partial holders push their bitfield as it changes; a puller asks again this often anyway */
  watchedBitfieldRefreshMs: 1000,
  /**
   * a chunk a seed answered SPREAD for (it went to another receiver) is asked of the seed
   * again after this long if it has not come from there (sooner if that receiver is dropped):
   * behind a 20 Mbit/s uplink the seed's queue held 6 s of chunks, and 2 s made it send a third again
   */
  spreadWaitMs: 10_000,
  /** a holder with chunks in flight that sends nothing this long is dropped (its chunks go elsewhere) */
  stallMs: 10_000,
  /** how often a receiver tells the owner its progress */
  progressEveryMs: 250,
  /** how often a puller asks the owner for the current holders (later receivers become sources) */
  relocateEveryMs: 1_000,
  /** a peer that served a chunk that failed its hash is left out of pulls this long (the owner excepted) */
  avoidBadSourceMs: 10 * 60_000,
  /** a peer named a holder of an object that denied holding it is left out of that object's pulls this long */
  avoidDeniedMs: 60_000,
  attemptsPerChunk: 3,
  storeCapacity: '2GiB',
  /** above this share of its capacity a store drops copies and spills to disk */
  spillFraction: 0.6,
  /** the spill space of a store, as a multiple of its capacity */
  spillCapacityFactor: 8,
  /** how long a value waits for room in memory (backpressure) before OutOfMemoryError */
  memoryWaitMs: 60_000,
  /** the longest a call waits for room for its result before it starts anyway (nested calls must not deadlock) */
  admissionWaitMs: 2_000,
  /** per remote peer: calls queued or running here, chunks asked and not yet sent, gossip relayed per second
   * (at least; the gossip limit grows with the mesh: 4 messages a second per known peer) */
  quotaCallsInFlight: 4096,
  quotaChunksInFlight: 256,
  /** bytes one peer may have this store own for it (durable puts), as a share of the store's memory */
  quotaStoredBytesFraction: 0.5,
  quotaGossipPerSecond: 100,
  /** refusals from quotas within the window before a peer is hung up on */
  quotaStrikesBeforeHangUp: 200,
  quotaStrikeWindowMs: 10_000,
  /** private meshes: how long a new peer has to prove the secret */
  authTimeoutMs: 10_000,
  /** how long lookup(name) waits for gossip to name a publisher */
  lookupTimeoutMs: 10_000,
  /** names a peer lists in its gossiped state */
  namesGossiped: 256,
  /** tries on another peer when an executor dies */
  retries: 3,
  /** how long a call with no timeout keeps sending itself again while its arguments are lost and rebuilt */
  argumentLossBoundMs: 300_000,
  /** the most values one call may return (`returns: n`): n result ids travel in the call, n descriptions in its reply */
  maxReturns: 4096,
  /** how long a call to a function nobody offers waits for an offer before FunctionNotFoundError */
  functionOfferGraceMs: 500,
  /** how long a call to a function that peers offered before, and none does now (all died), waits for a new offer */
  functionReturnGraceMs: 30_000,
  /** state gossip and the failure detector's clock */
  heartbeatMs: 1000,
  /** the most heartbeats an unchanged state goes ungossiped (a hello to each peer says it is alive meanwhile) */
  stateQuietBeats: 16,
  /**
   * A peer whose state has not changed for `deepQuietBeats` heartbeats says hello every
   * `deepQuietHelloBeats` of them, not every one: on an idle mesh the hellos were most of
   * what it spent (bench:sched idle_cpu). It must stay below suspectAfterBeats, so a beat
   * of slack is left; any change brings back a hello (or a state) every beat.
   */
  deepQuietBeats: 8,
  deepQuietHelloBeats: 2,
  /** heartbeats missed before a peer is suspect (it gets no new calls) */
  suspectAfterBeats: 3,
  /** heartbeats missed, with no connection open, before a peer is dead */
  deadAfterBeats: 5,
  /** heartbeats missed before a peer is dead even with a connection open (it hangs) */
  deadWhileConnectedBeats: 15,
  /** how long the redial of a peer whose last connection closed may take; refused in time, it is dead at once */
  redialTimeoutMs: 2_000,
  /** peers listed in a hello (peer exchange); gossip carries the rest */
  helloPeers: 64,
  /** the most peers one peer keeps in its view */
  maxKnownPeers: 2048,
  /** a function's assumed duration until one call of it is measured */
  defaultCallMs: 10,
  /** assumed bandwidth of a peer that has not measured its own */
  bandwidthBytesPerSecond: 100e6,
  /** the share of its store a peer fills with call arguments before it hands calls back */
  admitFraction: 0.8,
  /** calls queued per slot (running included) before an executor hands more back, and
   * before a caller holds more back: small, so calls bind to executors late and balance */
  maxQueuePerSlot: 2,
  /** hand-backs of one call before the next executor must queue it */
  maxSpillbacks: 8,
  /** how long an owner parks a locate request for a pending object before answering PENDING */
  locateParkMs: 30_000
} as const

const units: Record<string, number> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40
}

/** Parses "2GiB", "512 MiB", "1e9" or a number into bytes. */
export function parseBytes (value: number | string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`bad byte count ${value}`)
    return Math.floor(value)
  }
  const m = /^\s*([0-9]+(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([a-z]*)\s*$/i.exec(value)
  const unit = m?.[2].toLowerCase()
  if (m === null || unit === undefined || !(unit in units)) throw new RangeError(`bad byte size "${value}" (try 512MiB or 2GiB)`)
  return Math.floor(Number(m[1]) * units[unit])
}

/**
 * Functions every peer offers, by protocol rather than by registration: not
 * gossiped (every peer's list would carry them), taken as offered by every live
 * peer when a call is placed.
 */
export const BUILTIN_FUNCTIONS: ReadonlySet<string> = new Set(['actor.restart'])
