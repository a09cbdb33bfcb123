/**
 * Spreading one object to many peers: `broadcast()` (a copy on each peer ahead of
 * the calls that will need it) and, on the owner, the distribution tree that
 * decides which holders each receiver pulls from, so the owner's uplink carries
 * little more than one copy (Hoplite's pipelined tree, BitTorrent's many parents).
 *
 * Answers: `prefetch` (hold a copy: pull it here), `progress` (a receiver of an
 * object this peer owns has it all: its parents have room again).
 * objects.ts asks it, when answering a `locate` with fetch, which holders to name.
 */
import { QuotaExceededError, ProtocolError } from './errors.ts'
import { DEFAULTS } from './constants.ts'
import type { PeerContext } from './context.ts'
import type { RefDesc } from './protocol/messages.ts'
import { Ref } from './ref.ts'
import { withTimeout } from './signals.ts'
import { UploadRates, chooseParents } from './tree.ts'
import type { BroadcastOptions } from './types.ts'

/** receivers of an object named to a receiver beyond its parents (a random few: each watches the bitfields of all it is named) */
const EXTRA_RECEIVERS_NAMED = 8

export interface BroadcastInit {
  ctx: PeerContext
  /** receivers pull from each other too (default); false: only from the holders that had it first */
  swarm: boolean
  /** the object parts broadcast uses (objects.ts) */
  objects: {
    whenReady: (ref: Ref, signal: AbortSignal) => Promise<void>
    fetchValue: (desc: RefDesc, signal: AbortSignal | undefined) => Promise<{ release: () => void }>
  }
}

export class Broadcast {
  private readonly ctx: PeerContext
  private readonly swarm: boolean
  private readonly objects: BroadcastInit['objects']
  /** owner side: receivers of each object still pulling it (partial holders) */
  private readonly receiving = new Map<string, Set<string>>()
  /** owner side: for each object, the receivers each holder feeds now (at most DEFAULTS.ownerFanout) */
  private readonly children = new Map<string, Map<string, Set<string>>>()
  /** owner side: holders' measured upload rates, which shape the tree (core/tree.ts) */
  private readonly uploadRates = new UploadRates()
  /** owner side: for each object, the holders each receiver was pointed at */
  private readonly parents = new Map<string, Map<string, string[]>>()
  /** owner side: every peer that ever received each object (the other holders are its seeds) */
  private readonly receivedBy = new Map<string, Set<string>>()

  constructor (init: BroadcastInit) {
    this.ctx = init.ctx
    this.swarm = init.swarm
    this.objects = init.objects
  }

  /**
   * Puts a copy of an object on `peers` (every live peer by default) ahead of
   * the calls that will need it. Receivers pull from each other as well as from
   * the owner, so the owner's uplink carries little more than one copy.
   */
  async broadcast (ref: Ref, options: BroadcastOptions = {}): Promise<{ ready: string[], failed: Array<{ peer: string, error: Error }> }> {
    if (!(ref instanceof Ref)) throw new TypeError('broadcast() takes a Ref')
    ref.trackerOrThrow()
    const { ctx } = this
    const signal = withTimeout(ctx.combine(options.signal), options.timeoutMs, 'broadcast')
    await this.objects.whenReady(ref, signal ?? ctx.stopSignal)
    const targets = (options.peers ?? ctx.membership.all().filter(p => p.liveness === 'alive').map(p => p.peer)).filter(p => p !== ref.owner)
    const object: RefDesc = { id: ref.id, owner: ref.owner, ...ctx.table.hints(ref.key) }
    const ready: string[] = []
    const failed: Array<{ peer: string, error: Error }> = []
    await Promise.all(targets.map(async peer => {
      try {
        if (peer === ctx.peerId) await this.prefetchObject(object, signal)
        else await ctx.channels.request(peer, { prefetch: { object } }, { signal })
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

  /** `prefetch` from `from`: hold a copy. A copy pulled on request is a call's worth of work here: it counts against the caller's call quota. */
  onPrefetch (from: string, object: RefDesc | undefined): Promise<void> {
    if (object === undefined) throw new ProtocolError('prefetch without an object')
    const { ctx } = this
    if (!ctx.quotas.take(from, 'calls')) throw new QuotaExceededError(`${from} has too many calls and prefetches queued at ${ctx.peerId}`)
    return this.prefetchObject(object, ctx.stopSignal).finally(() => { ctx.quotas.give(from, 'calls') })
  }

  /** A peer asked to hold a copy (broadcast): pull it into the store and keep it there. */
  private async prefetchObject (object: RefDesc, signal: AbortSignal | undefined): Promise<void> {
    const { release } = await this.objects.fetchValue(object, signal)
    release()
  }

  /** Whether `peer` is still receiving an owned object (a partial holder). */
  isReceiving (key: string, peer: string): boolean {
    return this.receiving.get(key)?.has(peer) === true
  }

  /**
   * Owner side: which holders a receiver pulls from (core/tree.ts): each
   * holder feeds about `ownerFanout` receivers at once, more or fewer by its
   * measured upload rate; a new receiver goes to the `parentsPerReceiver`
   * holders that would serve it fastest, so a pipelined tree forms as demand
   * arrives (as in Hoplite). A receiver keeps its parents while they live (and
   * may gain a much faster one); one that has it all frees its parents' room.
   */
  feedOrRedirect (key: string, receiver: string, locations: string[]): string[] {
    let receiving = this.receiving.get(key)
    if (receiving === undefined) this.receiving.set(key, receiving = new Set())
    const partial = locations.filter(p => p !== receiver && receiving.has(p))
    const complete = locations.filter(p => p !== receiver && !receiving.has(p))
    receiving.add(receiver)
    let ever = this.receivedBy.get(key)
    if (ever === undefined) this.receivedBy.set(key, ever = new Set())
    ever.add(receiver)
    // The holders that had it before any receiver: its maker's or owner's copy.
    const seeds = locations.filter(p => p !== receiver && !ever.has(p))
    // A star: receivers pull only from those.
    if (!this.swarm) return seeds
    let kids = this.children.get(key)
    if (kids === undefined) this.children.set(key, kids = new Map())
    let assigned = this.parents.get(key)
    if (assigned === undefined) this.parents.set(key, assigned = new Map())
    const holders = [...complete, ...partial]
    const mine = assigned.get(receiver)?.filter(p => holders.includes(p))
    this.uploadRates.observe(this.ctx.membership.all().map(p => p.state?.flows))
    const chosen = chooseParents(holders, h => kids.get(h)?.size ?? 0, mine, this.uploadRates, { fanout: DEFAULTS.ownerFanout, parents: DEFAULTS.parentsPerReceiver }, h => partial.includes(h))
    for (const h of chosen) {
      let set = kids.get(h)
      if (set === undefined) kids.set(h, set = new Set())
      set.add(receiver)
    }
    assigned.set(receiver, chosen)
    if (chosen.length === 0) return holders
    // Every receiver is pointed at the seeds too, beside its parents in the tree. A seed
    // super-seeds (core/transfer.ts: a chunk it sent once is got from its receiver), and
    // pullers ask it only for chunks no receiver has, so its uplink still carries about one
    // copy; but the copy is spread over all receivers, each then relaying its share. Fed only
    // to its two children, those two got every chunk first and relayed 30-37 MiB of the 112
    // (16 MiB to 8 receivers at 20 Mbit/s) while others relayed 2-4, and the broadcast took
    // 2.8 times S/B.
    // And a few more receivers, at random: a receiver pulls only from peers it was named
    // (or that ask it, or a seed names), so with its two parents alone the receivers fell
    // into groups of three or four that fed each other; a receiver outside a busy group stood
    // idle while that group's queues held 1-3 s of asks (8 receivers behind 20 Mbit/s uplinks:
    // a quarter of the receivers' upload unused while the seed was still sending).
    const named = [...chosen, ...seeds.filter(p => !chosen.includes(p))]
    const others = partial.filter(p => !named.includes(p))
    for (let i = others.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1))
      const swap = others[i]
      others[i] = others[j]
      others[j] = swap
    }
    return [...named, ...others.slice(0, EXTRA_RECEIVERS_NAMED)]
  }

  /** Owner side: a receiver has all of an object (or is gone): its parents have room again. */
  doneReceiving (key: string, peer: string, gone = false): void {
    this.receiving.get(key)?.delete(peer)
    for (const set of this.children.get(key)?.values() ?? []) set.delete(peer)
    this.parents.get(key)?.delete(peer)
    if (gone) this.children.get(key)?.delete(peer)
  }

  /** A dead peer receives and feeds nothing any more. */
  peerGone (peer: string): void {
    for (const key of this.receiving.keys()) this.doneReceiving(key, peer, true)
  }

  /** The object was freed, or every copy of it lost: its tree goes. */
  forget (key: string): void {
    this.children.delete(key)
    this.parents.delete(key)
    this.receiving.delete(key)
    this.receivedBy.delete(key)
  }
}
