/**
 * Actors: stateful functions (Ray's actors, PyTorch RPC's remote objects). An
 * actor is an instance of a registered class living on one peer; its methods
 * run there, one at a time, and calls from one caller run in the order they
 * were made.
 *
 * They are built from what the mesh already has, so they need no protocol of
 * their own:
 *  - `registerActor(name, Class)` offers two functions, `actor.create/<name>`
 *    and `actor.call/<name>` (so placement and gossip see which peers host the
 *    class), plus `actor.stop`;
 *  - a handle is the Ref of the create call's result, a small descriptor
 *    { name, instance, peer } owned by the creator; passing it to other calls
 *    (as a SharedRef) and reclaiming it work like any Ref. When the owner frees
 *    it (no handle left anywhere), it calls `actor.stop` on the actor's peer;
 *  - a method call is `actor.call/<name>(instance, method, caller, seq, ...args)`
 *    required on the actor's peer. `seq` counts the calls this peer made to this
 *    instance; the actor's peer runs them in that order, whatever order they
 *    arrive in.
 *
 * Restarts (Ray's max_restarts and max_task_retries): the creator keeps the
 * class's constructor arguments (`ActorLife`). When the actor's peer dies, its
 * handles on the creator make the actor again on another peer offering the
 * class (at most `maxRestarts` times, one restart however many calls notice),
 * from those arguments: the state it had built up is lost, only what its
 * constructor makes is there again. A call in flight then runs again on the new
 * instance if it has tries left (`maxTaskRetries`; calls are then at-least-once),
 * else fails with ActorDiedError, as does every call once the actor may not
 * restart. Handles on other peers (`actorFromRef`) ask the creator
 * (`actor.restart`), which restarts it once however many ask and says where it
 * lives now; their calls in flight fail with ActorDiedError, their next calls
 * follow it.
 */
import { logger } from '@libp2p/logger'
import { ActorDiedError, ActorNotFoundError } from './errors.ts'
import { Ref } from './ref.ts'
import type { PlacementOptions } from './scheduler.ts'
import type { CallOptions, GetOptions, RemoteArgs, SendOrder } from './types.ts'
import { checkReturns } from './returns.ts'
import type { RefsOf } from './returns.ts'
import { DEFAULTS } from './constants.ts'

const log = logger('refmesh:actors')

export interface ActorDesc {
  name: string
  instance: string
  peer: string
}

export type ActorClass = new (...args: any[]) => object

type Methods<T> = {
  [K in keyof T as T[K] extends (...args: any[]) => unknown ? K : never]:
  T[K] extends (...args: infer A) => infer R
    ? {
        remote: (...args: RemoteArgs<A>) => Ref<Awaited<R>>
        /** `returns: n`: the method returns an array (or generator) of n values, and each call gives n Refs */
        options: (options: { returns: number }) => { remote: (...args: RemoteArgs<A>) => RefsOf<Awaited<R>> }
      }
    : never
}

export type ActorHandle<T> = Methods<T> & {
  /** the Ref to the actor: pass `shared(handle.ref)` to a call; the callee makes a handle with `mesh.actorFromRef` */
  readonly ref: Ref<ActorDesc>
  /** the peer it lives on */
  readonly peer: string
  /** drops this handle; the actor stops when no handle is left anywhere */
  release: () => void
}

export interface ActorOptions extends PlacementOptions {
  /** times the actor is made again on another peer when its peer dies (default 0) */
  maxRestarts?: number
  /** times a call in flight when the actor's peer died runs again on the restarted actor (default 0) */
  maxTaskRetries?: number
}

/** Makes actors of one class: `mesh.actor<T>(name).options({ peer, maxRestarts }).create(...args)`. */
export interface ActorFactory<T> {
  options: (more: ActorOptions) => ActorFactory<T>
  create: (...args: unknown[]) => Promise<ActorHandle<T>>
}

/**
 * One actor as its handles on one peer see it, across restarts: where it lives
 * now, and (on its creator) how to make it again.
 */
export class ActorLife {
  /** where it lives now; changes in place on a restart */
  readonly desc: ActorDesc
  readonly maxTaskRetries: number
  private restartsLeft: number
  private readonly makeAgain: ((dead: string) => Promise<ActorDesc>) | undefined
  private restarting: Promise<void> | undefined
  /** called when the actor stops for good (its constructor arguments go) */
  readonly end: () => void

  constructor (desc: ActorDesc, options: ActorOptions = {}, makeAgain?: (dead: string) => Promise<ActorDesc>, end: () => void = () => {}) {
    this.end = end
    for (const key of ['maxRestarts', 'maxTaskRetries'] as const) {
      const v = options[key]
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new RangeError(`${key} must be a whole number >= 0, not ${v}`)
    }
    this.desc = desc
    this.restartsLeft = makeAgain === undefined ? 0 : options.maxRestarts ?? 0
    this.maxTaskRetries = options.maxTaskRetries ?? 0
    this.makeAgain = makeAgain
  }

  /** The actor's peer `dead` died: makes it again elsewhere (once, whoever asks), or ActorDiedError. */
  async restart (dead: string): Promise<void> {
    if (this.desc.peer !== dead) return
    this.restarting ??= (async () => {
      if (this.restartsLeft <= 0 || this.makeAgain === undefined) {
        throw new ActorDiedError(`actor ${this.desc.name} ${this.desc.instance} died with its peer ${dead}${this.makeAgain === undefined ? '' : ' and has no restarts left'}`)
      }
      this.restartsLeft--
      try {
        Object.assign(this.desc, await this.makeAgain(dead))
      } catch (err) {
        throw new ActorDiedError(`actor ${this.desc.name} died with its peer ${dead} and could not be made again: ${(err as Error).message}`, { cause: err })
      }
      log('actor %s restarted on %s as %s (%d restarts left)', this.desc.name, this.desc.peer, this.desc.instance, this.restartsLeft)
    })().finally(() => { this.restarting = undefined })
    await this.restarting
  }
}

export const ACTOR_CREATE = 'actor.create/'
export const ACTOR_CALL = 'actor.call/'
export const ACTOR_STOP = 'actor.stop'
/** asked of an actor's creator by a peer holding a borrowed handle whose actor's peer died: restart it (if it may) and say where it lives */
export const ACTOR_RESTART = 'actor.restart' // in BUILTIN_FUNCTIONS (constants.ts)
/** how long an actor waits for a caller's missing call before it runs the next one (arguments may take a while to arrive) */
export const ACTOR_GAP_MS = 10_000

interface Waiting { caller: string, seq: number, go: () => void }

/** One live actor on its host: the instance and the turn-taking of its calls. */
class Hosted {
  readonly name: string
  readonly instance: object
  private running = false
  private readonly next = new Map<string, number>()
  private readonly waiting: Waiting[] = []

  constructor (name: string, instance: object) {
    this.name = name
    this.instance = instance
  }

  /** Resolves when it is this call's turn: the actor is idle and the caller's earlier calls are done. */
  async turn (caller: string, seq: number): Promise<void> {
    await new Promise<void>(resolve => {
      this.waiting.push({ caller, seq, go: resolve })
      this.pump()
    })
  }

  done (caller: string, seq: number): void {
    this.next.set(caller, seq + 1)
    this.running = false
    this.pump()
  }

  private gapTimer: ReturnType<typeof setTimeout> | undefined

  private pump (): void {
    if (this.running) return
    let i = this.waiting.findIndex(w => w.seq === (this.next.get(w.caller) ?? 0))
    if (i < 0 && this.waiting.length > 0) {
      // A call that never came (its caller failed it before sending) would hold back
      // every later one; after a bound, the earliest waiting call goes instead.
      if (this.gapTimer === undefined) {
        this.gapTimer = setTimeout(() => {
          this.gapTimer = undefined
          const first = this.waiting.reduce((a, b) => (b.seq < a.seq ? b : a))
          log('actor %s: call %d of %s never came; going on with %d', this.name, this.next.get(first.caller) ?? 0, first.caller, first.seq)
          this.next.set(first.caller, first.seq)
          this.pump()
        }, ACTOR_GAP_MS)
      }
      return
    }
    if (i < 0) return
    clearTimeout(this.gapTimer)
    this.gapTimer = undefined
    const [w] = this.waiting.splice(i, 1)
    this.running = true
    w.go()
  }
}

/** The host side: the classes this peer offers and the instances living here. */
export class ActorHost {
  private readonly classes = new Map<string, ActorClass>()
  private readonly live = new Map<string, Hosted>()
  private counter = 0
  private readonly self: () => string

  constructor (self: () => string) {
    this.self = self
  }

  get size (): number {
    return this.live.size
  }

  /** The functions that serve `name`, for the mesh to register. */
  offer (name: string, cls: ActorClass): Array<[string, (...args: any[]) => unknown]> {
    if (typeof cls !== 'function') throw new TypeError(`registerActor("${name}") needs a class`)
    const first = this.classes.size === 0
    this.classes.set(name, cls)
    const fns: Array<[string, (...args: any[]) => unknown]> = [
      [ACTOR_CREATE + name, (...args: unknown[]) => this.create(name, args)],
      [ACTOR_CALL + name, async (instance: string, method: string, caller: string, seq: number, ...args: unknown[]) => await this.call(instance, method, caller, seq, args)]
    ]
    if (first) fns.push([ACTOR_STOP, (instance: string) => this.stop(instance)])
    return fns
  }

  private create (name: string, args: unknown[]): ActorDesc {
    const Cls = this.classes.get(name)
    if (Cls === undefined) throw new ActorNotFoundError(`this peer does not host actors of class "${name}"`)
    const instance = `${this.self().slice(-8)}-${++this.counter}-${Math.random().toString(36).slice(2, 10)}`
    this.live.set(instance, new Hosted(name, new Cls(...args)))
    log('created %s %s', name, instance)
    return { name, instance, peer: this.self() }
  }

  private async call (instance: string, method: string, caller: string, seq: number, args: unknown[]): Promise<unknown> {
    const hosted = this.live.get(instance)
    if (hosted === undefined) throw new ActorNotFoundError(`actor ${instance} is not here (stopped, or its peer restarted)`)
    await hosted.turn(caller, seq)
    try {
      if (!this.live.has(instance)) throw new ActorNotFoundError(`actor ${instance} stopped`)
      const fn = (hosted.instance as Record<string, unknown>)[method]
      if (typeof fn !== 'function') throw new TypeError(`actor ${hosted.name} has no method "${method}"`)
      return await (fn as (...a: unknown[]) => unknown).apply(hosted.instance, args)
    } finally {
      hosted.done(caller, seq)
    }
  }

  private stop (instance: string): boolean {
    const hosted = this.live.get(instance)
    if (hosted === undefined) return false
    this.live.delete(instance)
    log('stopped %s %s', hosted.name, instance)
    const dispose = (hosted.instance as { [Symbol.dispose]?: () => void })[Symbol.dispose]
    if (typeof dispose === 'function') {
      try { dispose.call(hosted.instance) } catch (err) { log.error('disposing %s failed: %s', instance, (err as Error).message) }
    }
    return true
  }
}

/** What restarts need to know of the mesh's failure detector. */
export interface PeerVerdicts {
  alive: (peer: string) => boolean
  /** waits for the verdict on a peer that is not alive now */
  verdict: (peer: string, signal?: AbortSignal) => Promise<'dead' | 'alive'>
}

/**
 * The hooks of one actor method call that make it follow restarts: `bind`
 * points it at the actor's current instance before it is sent (restarting the
 * actor first if its peer died meanwhile); `peerDied` decides, when its
 * executor's connection failed under it, whether it runs again on a restarted
 * actor or fails with ActorDiedError (or with `err`, the peer being alive).
 */
export function actorRestarts (life: ActorLife, peers: PeerVerdicts): {
  bind: (call: { args: unknown[], options: PlacementOptions }) => Promise<void>
  peerDied: (executor: string, err: Error, signal?: AbortSignal) => Promise<void>
} {
  let triesLeft = life.maxTaskRetries
  return {
    bind: async (call) => {
      const peer = life.desc.peer
      if (!peers.alive(peer) && await peers.verdict(peer) === 'dead') await life.restart(peer)
      call.args[0] = life.desc.instance
      call.options = { ...call.options, peer: life.desc.peer }
    },
    peerDied: async (executor, err, signal) => {
      if (await peers.verdict(executor, signal) === 'alive') throw err
      if (triesLeft-- <= 0) {
        // This call fails; the actor still restarts (if it may) for the calls after it.
        await life.restart(executor).catch(() => {})
        throw new ActorDiedError(`actor ${life.desc.name} died with its peer ${executor} while running this call${life.maxTaskRetries > 0 ? ` (tried ${life.maxTaskRetries + 1} times)` : ''}`)
      }
      await life.restart(executor)
    }
  }
}

/**
 * The caller side: handles to actors (create, method calls in order, stop when
 * the last handle anywhere is freed). Method calls go through the caller side
 * of calls (calls.ts), given here as `remote`.
 */
export interface ActorClientsInit {
  self: () => string
  stopSignal: AbortSignal
  remote: (fn: string, args: unknown[], options: CallOptions, order?: SendOrder) => Ref
  /** a call's Refs, `options.returns` of them (calls.ts) */
  submit: (fn: string, args: unknown[], options: CallOptions, order?: SendOrder) => Ref[]
  get: <T>(ref: Ref<T>, options?: GetOptions) => Promise<T>
  whenReady: (ref: Ref, signal: AbortSignal) => Promise<void>
  pins: { pin: (key: string) => void, unpin: (key: string) => void }
  /** the failure detector's view, for restarts */
  peers: PeerVerdicts
}

export class ActorClients {
  private readonly init: ActorClientsInit
  /** creator side: actor handle objects this peer owns, so freeing one stops its actor */
  private readonly handles = new Map<string, ActorLife>()
  /** per actor instance: settles when this peer's latest call to it has been sent */
  private readonly sent = new Map<string, Promise<void>>()
  /** the next sequence number of this peer's calls to each actor instance */
  private readonly seqs = new Map<string, number>()

  constructor (init: ActorClientsInit) {
    this.init = init
  }

  /** Creates actors of a registered class, on a peer that offers it (or the one `options` names). */
  factory<T> (name: string, options: ActorOptions = {}): ActorFactory<T> {
    return {
      options: (more) => this.factory<T>(name, { ...options, ...more }),
      create: async (...args) => {
        const { maxRestarts, maxTaskRetries, ...placement } = options
        const ref = this.init.remote(ACTOR_CREATE + name, args, { ...placement, retries: 0 }) as Ref<ActorDesc>
        try {
          const desc = await this.init.get(ref)
          // A restart makes it again from the same arguments, on any other peer offering the class.
          const kept = args.map(a => a instanceof Ref ? a.dup() : a)
          const life = new ActorLife(desc, { maxRestarts, maxTaskRetries }, async () => {
            // try/finally, not `using`: the published code runs on Node 22, which lacks it.
            const again = this.init.remote(ACTOR_CREATE + name, kept, { spread: placement.spread, retries: 0 }) as Ref<ActorDesc>
            try {
              return await this.init.get(again)
            } finally {
              again.release()
            }
          }, () => { for (const a of kept) if (a instanceof Ref) a.release() })
          this.handles.set(ref.key, life)
          return this.handle<T>(ref, life)
        } catch (err) {
          ref.release()
          throw err
        }
      }
    }
  }

  /** A handle of this peer's own for an actor whose Ref it was given (a SharedRef of another handle's `ref`). */
  async fromRef<T> (ref: Ref<ActorDesc>, options: GetOptions = {}): Promise<ActorHandle<T>> {
    const desc = await this.init.get(ref, options)
    // The creator's own handles share its record, so they follow restarts.
    const own = this.handles.get(ref.key)
    if (own !== undefined) return this.handle<T>(ref.dup(), own)
    // Elsewhere the creator decides (it alone keeps the constructor arguments and counts the
    // restarts): a restart here asks it, and follows the actor to where it lives now. Calls in
    // flight are not retried here (this peer does not know maxTaskRetries): they fail with
    // ActorDiedError, and the next ones reach the actor made again.
    const borrowed = new ActorLife({ ...desc }, { maxRestarts: Number.MAX_SAFE_INTEGER }, async (dead) => {
      const where = this.init.remote(ACTOR_RESTART, [ref.key, dead], { peer: ref.owner, retries: 0 }) as Ref<ActorDesc>
      try {
        return await this.init.get(where)
      } finally {
        where.release()
      }
    })
    return this.handle<T>(ref.dup(), borrowed)
  }

  /** `actor.restart`, creator side: a borrower saw the actor's peer `dead` die. */
  async restartFor (handleKey: string, dead: string): Promise<ActorDesc> {
    const life = this.handles.get(handleKey)
    if (life === undefined) throw new ActorDiedError(`the actor of handle ${handleKey} has stopped (its last handle on its creator was freed)`)
    await life.restart(dead)
    return { ...life.desc }
  }

  private handle<T> (ref: Ref<ActorDesc>, life: ActorLife): ActorHandle<T> {
    const desc = life.desc
    const base = { ref, get peer () { return desc.peer }, release: () => { ref.release() } }
    return new Proxy(base, {
      get: (target, prop) => {
        if (prop in target) return target[prop as keyof typeof target]
        // Not a thenable: `await create()` must resolve to the handle itself.
        if (typeof prop !== 'string' || prop === 'then') return undefined
        const call = (args: unknown[], returns?: number): Ref[] => {
          const after = this.sent.get(desc.instance) ?? Promise.resolve()
          let sent!: () => void
          this.sent.set(desc.instance, new Promise<void>(resolve => { sent = resolve }))
          const seq = (): number => {
            const n = this.seqs.get(desc.instance) ?? 0
            this.seqs.set(desc.instance, n + 1)
            return n
          }
          const results = this.init.submit(ACTOR_CALL + desc.name, [desc.instance, prop, this.init.self(), -1, ...args], { peer: desc.peer, retries: 0, returns }, { after, sent, seq, seqIndex: 3, ...actorRestarts(life, this.init.peers) })
          // Calls in flight keep the actor alive, even if the last handle is released meanwhile (as in Ray).
          this.init.pins.pin(ref.key)
          Promise.all(results.map(async r => { await this.init.whenReady(r, this.init.stopSignal) })).catch(() => {}).finally(() => { this.init.pins.unpin(ref.key) })
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

  /** An owned object was freed: when it is an actor's handle object, the last handle anywhere is gone and the actor stops. */
  freed (key: string): void {
    const actor = this.handles.get(key)
    if (actor === undefined) return
    this.handles.delete(key)
    actor.end()
    this.seqs.delete(actor.desc.instance)
    this.sent.delete(actor.desc.instance)
    this.init.remote(ACTOR_STOP, [actor.desc.instance], { peer: actor.desc.peer, retries: 0 }).release()
  }
}
