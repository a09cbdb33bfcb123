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
 *    required on the actor's peer, with no retries (the state died with the peer:
 *    PeerDiedError). `seq` counts the calls this peer made to this instance; the
 *    actor's peer runs them in that order, whatever order they arrive in.
 */
import { logger } from '@libp2p/logger'
import { ActorNotFoundError } from './errors.ts'
import type { Ref } from './ref.ts'
import type { PlacementOptions } from './scheduler.ts'
import type { CallOptions, GetOptions, RemoteArgs, SendOrder } from './types.ts'

const log = logger('refmesh:actors')

export interface ActorDesc {
  name: string
  instance: string
  peer: string
}

export type ActorClass = new (...args: any[]) => object

type Methods<T> = {
  [K in keyof T as T[K] extends (...args: any[]) => unknown ? K : never]:
  T[K] extends (...args: infer A) => infer R ? { remote: (...args: RemoteArgs<A>) => Ref<Awaited<R>> } : never
}

export type ActorHandle<T> = Methods<T> & {
  /** the Ref to the actor: pass `shared(handle.ref)` to a call; the callee makes a handle with `mesh.actorFromRef` */
  readonly ref: Ref<ActorDesc>
  /** the peer it lives on */
  readonly peer: string
  /** drops this handle; the actor stops when no handle is left anywhere */
  release: () => void
}

/** Makes actors of one class: `mesh.actor<T>(name).options({ peer }).create(...args)`. */
export interface ActorFactory<T> {
  options: (more: PlacementOptions) => ActorFactory<T>
  create: (...args: unknown[]) => Promise<ActorHandle<T>>
}

export const ACTOR_CREATE = 'actor.create/'
export const ACTOR_CALL = 'actor.call/'
export const ACTOR_STOP = 'actor.stop'
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

/**
 * The caller side: handles to actors (create, method calls in order, stop when
 * the last handle anywhere is freed). Method calls go through the caller side
 * of calls (calls.ts), given here as `remote`.
 */
export interface ActorClientsInit {
  self: () => string
  stopSignal: AbortSignal
  remote: (fn: string, args: unknown[], options: CallOptions, order?: SendOrder) => Ref
  get: <T>(ref: Ref<T>, options?: GetOptions) => Promise<T>
  whenReady: (ref: Ref, signal: AbortSignal) => Promise<void>
  pins: { pin: (key: string) => void, unpin: (key: string) => void }
}

export class ActorClients {
  private readonly init: ActorClientsInit
  /** creator side: actor handle objects this peer owns, so freeing one stops its actor */
  private readonly handles = new Map<string, ActorDesc>()
  /** per actor instance: settles when this peer's latest call to it has been sent */
  private readonly sent = new Map<string, Promise<void>>()
  /** the next sequence number of this peer's calls to each actor instance */
  private readonly seqs = new Map<string, number>()

  constructor (init: ActorClientsInit) {
    this.init = init
  }

  /** Creates actors of a registered class, on a peer that offers it (or the one `options` names). */
  factory<T> (name: string, placement: PlacementOptions = {}): ActorFactory<T> {
    return {
      options: (more) => this.factory<T>(name, { ...placement, ...more }),
      create: async (...args) => {
        const ref = this.init.remote(ACTOR_CREATE + name, args, { ...placement, retries: 0 }) as Ref<ActorDesc>
        try {
          const desc = await this.init.get(ref)
          this.handles.set(ref.key, desc)
          return this.handle<T>(ref, desc)
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
    return this.handle<T>(ref.dup(), desc)
  }

  private handle<T> (ref: Ref<ActorDesc>, desc: ActorDesc): ActorHandle<T> {
    const base = { ref, peer: desc.peer, release: () => { ref.release() } }
    return new Proxy(base, {
      get: (target, prop) => {
        if (prop in target) return target[prop as keyof typeof target]
        // Not a thenable: `await create()` must resolve to the handle itself.
        if (typeof prop !== 'string' || prop === 'then') return undefined
        return {
          remote: (...args: unknown[]) => {
            const after = this.sent.get(desc.instance) ?? Promise.resolve()
            let sent!: () => void
            this.sent.set(desc.instance, new Promise<void>(resolve => { sent = resolve }))
            const seq = (): number => {
              const n = this.seqs.get(desc.instance) ?? 0
              this.seqs.set(desc.instance, n + 1)
              return n
            }
            const result = this.init.remote(ACTOR_CALL + desc.name, [desc.instance, prop, this.init.self(), -1, ...args], { peer: desc.peer, retries: 0 }, { after, sent, seq, seqIndex: 3 })
            // Calls in flight keep the actor alive, even if the last handle is released meanwhile (as in Ray).
            this.init.pins.pin(ref.key)
            this.init.whenReady(result, this.init.stopSignal).catch(() => {}).finally(() => { this.init.pins.unpin(ref.key) })
            return result
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
    this.seqs.delete(actor.instance)
    this.sent.delete(actor.instance)
    this.init.remote(ACTOR_STOP, [actor.instance], { peer: actor.peer, retries: 0 }).release()
  }
}
