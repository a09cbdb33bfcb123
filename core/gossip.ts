/**
 * State gossip: every peer publishes its PeerState on a pubsub topic and learns
 * everyone else's from it. Messages are signed by their sender, and a state
 * naming another peer than its signer is dropped.
 *
 * A state is published when it changes (looked at every heartbeat), so load
 * reaches callers within a beat. An unchanged one is sent again after 1, 2, 4,
 * 8 beats, for peers that missed it, inside that beat's hellos (`sayAlive`: one
 * frame per peer of the view, on the control stream, which is already the
 * sender's, so nothing is signed or checked), and from then on published again
 * every `maxQuietBeats`, for peers beyond the view that only gossip reaches. In
 * the beats between, the failure detector's peers hear from this one through
 * `sayAlive` (a hello on each control stream), every beat, or once the state has
 * not changed for `deepQuiet.afterBeats` beats, every `deepQuiet.helloBeats` beats
 * (below the detector's suspect mark). On an idle five-peer mesh a state
 * every second was ~60% of the CPU (profiled): it is signed, checked by every
 * receiver, relayed, and each receiver sends IDONTWANTs, each copy encrypted; a
 * round of five states cost about as much as 25 of hellos. A peer some of whose
 * view it has no direct connection to (only gossip reaches them) publishes every beat.
 */
import { logger } from '@libp2p/logger'
import { PeerStateCodec } from './protocol/messages.ts'
import type { Membership, PeerState } from './membership.ts'

const log = logger('refmesh:gossip')

export const STATE_TOPIC = '/refmesh/state/1.0.0'

/** The fields of a gossipsub RPC message that name it before it is verified. */
interface RawPubSubMessage { from?: Uint8Array, seqno?: Uint8Array }

/**
 * Settings every runtime gives gossipsub. `fastMsgIdFn` matters for CPU: without it
 * gossipsub verifies a message's signature before it knows the message is a duplicate,
 * and in a mesh every state message arrives from several neighbours. Measured with ten
 * peers on two cores: signature checks of duplicates were ~8% of each peer's CPU.
 * Only messages that pass verification enter the fast-id cache, so a forged copy
 * cannot shadow the real one.
 */
export const PUBSUB_OPTIONS = {
  // A lone peer still publishes its state; nobody may be listening yet.
  allowPublishToZeroTopicPeers: true,
  emitSelf: false,
  // An IDONTWANT saves a copy of a large message; a state (under 4 KiB even with
  // 64 names) costs about what the IDONTWANT frame does, and in a small mesh every
  // copy is sent before the IDONTWANT arrives: three frames per receiver for nothing.
  idontwantMinDataSize: 16_384,
  fastMsgIdFn: (msg: RawPubSubMessage): string => `${hex(msg.from)}/${hex(msg.seqno)}`
}

function equalBytes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

function hex (bytes: Uint8Array | undefined): string {
  if (bytes === undefined) return ''
  let s = ''
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16)
  return s
}

/** The part of a libp2p pubsub service (gossipsub) the mesh uses. */
export interface PubSub {
  /** gossipsub's per-topic validators; private meshes reject gossip that comes from non-members */
  topicValidators?: Map<string, (peer: { toString(): string }, message: any) => any>
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  publish(topic: string, data: Uint8Array): Promise<unknown>
  addEventListener(type: 'message', listener: (evt: CustomEvent<PubSubMessage>) => void): void
  removeEventListener(type: 'message', listener: (evt: CustomEvent<PubSubMessage>) => void): void
}

export interface PubSubMessage {
  type: 'signed' | 'unsigned'
  topic: string
  data: Uint8Array
  from?: { toString(): string }
}

export interface GossipInit {
  pubsub: PubSub
  membership: Membership
  heartbeatMs: number
  /** this peer's state now (seq is filled in here) */
  state: () => Omit<PeerState, 'seq'>
  /** the most heartbeats an unchanged state goes unpublished (1: every beat) */
  maxQuietBeats: number
  /** once the state has been unchanged for `afterBeats` (no resend due before), hellos go every `helloBeats` beats; absent: every beat */
  deepQuiet?: { afterBeats: number, helloBeats: number }
  /** whether sayAlive would reach every peer of the view now (it sends nothing) */
  reachesView: () => boolean
  /**
   * Tells every peer in the view that this one (in `state`, unchanged) is alive, without
   * gossip, and with `resend` given, hands them that state again (it was published with its
   * seq); false (and nothing sent) when some of them only gossip reaches, so the state must go out.
   */
  sayAlive: (state: Omit<PeerState, 'seq'>, resend?: PeerState) => boolean
}

export class Gossip {
  private readonly init: GossipInit
  private timer: ReturnType<typeof setInterval> | undefined
  private seq = 0
  /** the last state published, encoded with seq 0 (to tell a change) */
  private last: Uint8Array | undefined
  /** beats since the state last changed (a resend does not count as a change) */
  private unchangedBeats = 0
  /** beats since the last publish, and how many an unchanged state waits now */
  private quietBeats = 0
  private waitBeats = 1
  published = 0
  received = 0
  /** beats told by sayAlive instead of a publish */
  quiet = 0
  /** of those, beats whose hellos carried the unchanged state again */
  resent = 0

  constructor (init: GossipInit) {
    this.init = init
  }

  start (): void {
    this.init.pubsub.subscribe(STATE_TOPIC)
    this.init.pubsub.addEventListener('message', this.onMessage)
    this.timer = setInterval(() => { this.beat() }, this.init.heartbeatMs)
    this.publish()
  }

  stop (): void {
    clearInterval(this.timer)
    this.init.pubsub.removeEventListener('message', this.onMessage)
    try { this.init.pubsub.unsubscribe(STATE_TOPIC) } catch { /* already stopped */ }
  }

  /** Publishes now (also used right after a change worth telling at once, e.g. a new function). */
  publish (): void {
    const state = this.init.state()
    this.send(state, PeerStateCodec.encode({ ...state, seq: 0 }))
    this.waitBeats = 1
  }

  private send (state: Omit<PeerState, 'seq'>, unsequenced: Uint8Array): void {
    this.last = unsequenced
    this.quietBeats = 0
    this.init.pubsub.publish(STATE_TOPIC, PeerStateCodec.encode({ ...state, seq: ++this.seq })).then(
      () => { this.published++ },
      (err: Error) => { log('publish failed: %s', err.message) }
    )
  }

  private beat (): void {
    const state = this.init.state()
    const unsequenced = PeerStateCodec.encode({ ...state, seq: 0 })
    const changed = this.last === undefined || !equalBytes(unsequenced, this.last)
    const due = !changed && this.quietBeats + 1 >= this.waitBeats
    this.unchangedBeats = changed ? 0 : this.unchangedBeats + 1
    if (!changed && !due && this.silentBeat()) {
      // Deep quiet: this beat's hello is left out (the last one went a beat ago).
      this.quietBeats++
      this.quiet++
    } else if (!changed && !due && this.init.sayAlive(state)) {
      this.quietBeats++
      this.quiet++
    } else if (due && this.waitBeats < this.init.maxQuietBeats && this.init.sayAlive(state, { ...state, seq: this.seq })) {
      // An early resend (for a peer of the view that missed it) rides in the hellos.
      this.quietBeats = 0
      this.waitBeats *= 2
      this.quiet++
      this.resent++
    } else {
      // Quiet again after a change, or with some of the view out of sayAlive's reach, starts over at one beat.
      this.waitBeats = due ? Math.min(this.waitBeats * 2, this.init.maxQuietBeats) : 1
      this.send(state, unsequenced)
    }
    this.init.membership.tick()
  }

  /**
   * Whether a quiet beat may go without a hello: the state has been unchanged for a
   * while, the beat is not one of every `helloBeats`, and every peer of the view is
   * still one the hellos reach (else gossip must go out, now).
   */
  private silentBeat (): boolean {
    const deep = this.init.deepQuiet
    if (deep === undefined || this.unchangedBeats < deep.afterBeats) return false
    return (this.quietBeats + 1) % deep.helloBeats !== 0 && this.init.reachesView()
  }

  /**
   * A state that came in a hello from `from` (a resend: see the top): the control stream
   * is `from`'s own, so a state naming another peer is all that is dropped.
   */
  onResent (from: string, state: PeerState): void {
    if (state.peer !== from) {
      log('dropped a state for %s resent by %s', state.peer, from)
      return
    }
    this.received++
    this.init.membership.heard(from, { state })
  }

  private readonly onMessage = (evt: CustomEvent<PubSubMessage>): void => {
    const msg = evt.detail
    if (msg.topic !== STATE_TOPIC) return
    try {
      if (msg.type !== 'signed' || msg.from === undefined) return
      const state = PeerStateCodec.decode(msg.data)
      if (state.peer !== msg.from.toString()) {
        log('dropped a state for %s signed by %s', state.peer, msg.from.toString())
        return
      }
      this.received++
      this.init.membership.heard(state.peer, { state })
    } catch (err) {
      log('dropped a malformed state from %s: %s', msg.from?.toString(), (err as Error).message)
    }
  }
}
