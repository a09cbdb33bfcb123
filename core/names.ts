/**
 * Names: objects published under a name, for peers that hold no Ref to them yet
 * (a dataset, a parameter server's actor). A publisher keeps a handle of its own
 * for each name it publishes, and gossips the names; lookup() asks a publisher
 * and registers a borrow, so reclamation keeps working.
 *
 * Answers: `nameLookup` (the object's descriptor, pinned until the asker has
 * registered: a handoff, see handoffs.ts).
 */
import { logger } from '@libp2p/logger'
import type { EnvelopeBody } from './channel.ts'
import { DEFAULTS } from './constants.ts'
import type { PeerContext } from './context.ts'
import { NameNotFoundError } from './errors.ts'
import { Ref, newObjectId, objectKey } from './ref.ts'
import { raceSignal, withTimeout } from './signals.ts'
import type { GetOptions } from './types.ts'

const log = logger('refmesh:names')

export interface NamesInit {
  ctx: PeerContext
  handoffs: { hold: (key: string, peer: string, keys: string[]) => void }
  /** the names this peer publishes changed (gossip them) */
  changed: () => void
  /** whether the mesh is running (a lookup cut short by stop() is not NameNotFoundError) */
  running: () => boolean
}

export class Names {
  private readonly init: NamesInit
  private readonly ctx: PeerContext
  /** names this peer publishes, each holding a handle of its own */
  private readonly published = new Map<string, Ref>()

  constructor (init: NamesInit) {
    this.ctx = init.ctx
    this.init = init
  }

  /** The names this peer publishes (the first `DEFAULTS.namesGossiped` are gossiped). */
  names (): string[] {
    return [...this.published.keys()]
  }

  /** The names this peer publishes, with the size of each object (when this peer holds it), for stats. */
  sizes (): Array<{ name: string, bytes?: number }> {
    return [...this.published].map(([name, ref]) => ({ name, bytes: this.ctx.store.get(ref.key)?.manifest.size }))
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
    this.init.changed()
  }

  unpublish (name: string): boolean {
    const ref = this.published.get(name)
    if (ref === undefined) return false
    this.published.delete(name)
    ref.release()
    this.init.changed()
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
    const signal = withTimeout(this.ctx.combine(options.signal), options.timeoutMs ?? DEFAULTS.lookupTimeoutMs, `lookup of "${name}"`) as AbortSignal
    const asked = new Set<string>()
    const started = performance.now()
    try {
      for (;;) {
        // Gossip names the publishers; if it has not within a second (a busy or new mesh), ask every peer.
        const askAll = performance.now() - started > 1_000
        const publishers = this.ctx.membership.all().filter(p => p.liveness === 'alive' && !asked.has(p.peer) && (askAll || p.state?.names.includes(name) === true))
        for (const p of publishers) {
          asked.add(p.peer)
          const reply = await this.ctx.channels.request(p.peer, { nameLookup: { name } }, { signal }).catch((err: Error) => {
            if (signal.aborted) throw err
            log('lookup of %s at %s failed: %s', name, p.peer, err.message)
            return undefined
          })
          const desc = reply?.nameReply?.object
          if (desc === undefined || reply?.nameReply === undefined) continue
          const pending: Array<Promise<void>> = []
          const ref = this.ctx.table.refFromDesc(desc, pending)
          try {
            await Promise.all(pending)
          } finally {
            this.ctx.channels.send(p.peer, { resultAck: { resultId: reply.nameReply.handoff } }).catch(() => {})
          }
          return ref as Ref<T>
        }
        await raceSignal(new Promise(resolve => setTimeout(resolve, 200)), signal, `lookup of "${name}"`)
      }
    } catch (err) {
      if (signal.aborted && options.signal?.aborted !== true && this.init.running()) throw new NameNotFoundError(`no peer publishes "${name}" (asked ${asked.size})`)
      throw err
    }
  }

  /** Publisher side of a lookup: the object's descriptor, pinned until the asker has registered. */
  answerLookup (from: string, name: string): EnvelopeBody {
    const ref = this.published.get(name)
    const handoff = newObjectId()
    if (ref === undefined) return { nameReply: { handoff } }
    this.ctx.table.pin(ref.key)
    this.init.handoffs.hold(objectKey(handoff), from, [ref.key])
    return { nameReply: { object: { id: ref.id, owner: ref.owner, ...this.ctx.table.hints(ref.key) }, handoff } }
  }
}
