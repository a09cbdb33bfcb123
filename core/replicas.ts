/**
 * Replicated calls, for untrusted executors (volunteer computing, as BOINC does):
 * one call runs on `replicas` distinct peers, and its result is the one `quorum`
 * of them returned byte for byte (by SHA-256 of the encoded result); otherwise
 * QuorumError listing the votes. The result is stored here, by the caller.
 * Peers outvoted are counted (`suspects()`).
 *
 * Answers no message: each replica is an ordinary call (calls.ts).
 */
import { logger } from '@libp2p/logger'
import { toString } from 'uint8arrays/to-string'
import { makeManifest } from './chunks.ts'
import { containedRefs } from './codec.ts'
import type { PeerContext } from './context.ts'
import { QuorumError, errorToInfo } from './errors.ts'
import type { Manifest, RefDesc } from './protocol/messages.ts'
import { newObjectId } from './ref.ts'
import type { Ref } from './ref.ts'
import type { CandidateView } from './scheduler.ts'
import { withTimeout } from './signals.ts'
import type { CallOptions, WaitOptions } from './types.ts'

const log = logger('refmesh:replicas')

export interface ReplicasInit {
  ctx: PeerContext
  /** the caller side (calls.ts): each replica is one call required on one peer */
  calls: {
    remote: (fn: string, args: unknown[], options: CallOptions) => Ref
    candidates: (fn: string) => CandidateView[]
    waitForOffer: (fn: string, signal: AbortSignal | undefined) => Promise<void>
  }
  /** the object parts replicas use (objects.ts) */
  objects: {
    wait: (refs: Ref[], options?: WaitOptions) => Promise<{ ready: Ref[], pending: Ref[] }>
    fetchValue: (desc: RefDesc, signal: AbortSignal | undefined) => Promise<{ encoding: number, bytes: Uint8Array, release: () => void }>
    storeBytes: (key: string, id: Uint8Array, owner: string, manifest: Manifest, bytes: Uint8Array, what: string, signal: AbortSignal | undefined) => Promise<void>
  }
}

export class Replicas {
  private readonly ctx: PeerContext
  private readonly calls: ReplicasInit['calls']
  private readonly objects: ReplicasInit['objects']
  /** Peers whose result lost a vote, and how often (the untrustworthy). */
  readonly outvoted = new Map<string, number>()

  constructor (init: ReplicasInit) {
    this.ctx = init.ctx
    this.calls = init.calls
    this.objects = init.objects
  }

  /**
   * One call on `replicas` distinct peers; its Ref settles with the result `quorum`
   * of them returned byte-identical. The copies are ordinary calls required on one
   * peer each, without retries (a retry could land on a peer that already voted).
   */
  remote (fn: string, args: unknown[], options: CallOptions): Ref {
    const replicas = options.replicas as number
    const quorum = options.quorum ?? Math.floor(replicas / 2) + 1
    if (!Number.isInteger(replicas) || !Number.isInteger(quorum) || quorum < 1 || quorum > replicas) throw new RangeError(`replicas ${replicas} and quorum ${quorum}: need 1 <= quorum <= replicas`)
    if (options.peer !== undefined) throw new RangeError('a replicated call cannot be required on one peer')
    const id = newObjectId()
    const result = this.ctx.table.createOwned(id, { state: 'pending' })
    const signal = withTimeout(this.ctx.stopSignal, options.timeoutMs, `call of ${fn}`)
    const run = async (): Promise<void> => {
      if (this.calls.candidates(fn).length < replicas) await this.calls.waitForOffer(fn, signal).catch(() => {})
      const offering = this.calls.candidates(fn)
      if (offering.length < replicas) throw new QuorumError(`${fn} needs ${replicas} distinct peers for its replicas; ${offering.length} offer it`)
      // The least loaded distinct peers (ties at random), so no one peer's answer counts twice.
      const chosen = offering.map(c => ({ peer: c.peer, load: c.load / Math.max(1, c.slots), k: Math.random() }))
        .sort((a, b) => a.load - b.load || a.k - b.k).slice(0, replicas).map(c => c.peer)
      const copies = chosen.map(peer => ({ peer, ref: this.calls.remote(fn, args, { ...options, replicas: 1, quorum: undefined, peer, retries: 0 }) }))
      const votes: Array<{ peer: string, digest: string, error?: string }> = []
      const tally = new Map<string, { count: number, encoding: number, bytes: Uint8Array, peers: string[] }>()
      let settled: { count: number, peers: string[] } | undefined
      try {
        const pending = new Map(copies.map(c => [c.ref.key, c]))
        while (pending.size > 0) {
          const { ready } = await this.objects.wait([...pending.values()].map(c => c.ref), { count: 1, signal })
          for (const ref of ready) {
            const copy = pending.get(ref.key) as { peer: string, ref: Ref }
            pending.delete(ref.key)
            try {
              const { encoding, bytes, release } = await this.objects.fetchValue({ id: ref.id, owner: ref.owner }, signal)
              try {
                if (containedRefs(encoding, bytes).length > 0) throw new TypeError(`${fn} returned Refs; replicated calls compare plain values only`)
                const digest = toString(await this.ctx.sha256(bytes), 'base16')
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
            const manifest = best.bytes.byteLength <= this.ctx.inlineThreshold
              ? { size: best.bytes.byteLength, chunkSize: this.ctx.chunkSize, hashes: [], encoding: best.encoding }
              : await makeManifest(best.bytes, best.encoding, this.ctx.chunkSize, this.ctx.sha256, this.ctx.transfer.uplinkRate())
            await this.objects.storeBytes(result.key, id, this.ctx.peerId, manifest, best.bytes, `the result of ${fn}`, signal)
            this.ctx.table.settle(result.key, { state: 'ready', inline: best.bytes.byteLength <= this.ctx.inlineThreshold, encoding: best.encoding, size: best.bytes.byteLength, manifest: best.bytes.byteLength <= this.ctx.inlineThreshold ? undefined : manifest, locations: [this.ctx.peerId], contained: [] })
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
      if (this.ctx.table.get(result.key)?.owned?.state !== 'pending') return
      this.ctx.table.settle(result.key, { state: 'failed', error: errorToInfo(err, this.ctx.peerId, fn), locations: [], contained: [] })
    })
    return result
  }
}
