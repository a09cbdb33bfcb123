/**
 * Refs: handles to objects in the mesh. A Ref is deliberately not a thenable
 * (awaiting a Promise<Ref> must not flatten it); read a value with mesh.get().
 */
import { ReleasedRefError } from './errors.ts'

export type ObjectId = Uint8Array

const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'))

/**
 * An object's key: its id in lowercase hex. Several times per call (placement, the
 * ownership table, the store), so a table lookup per byte rather than uint8arrays'
 * base16 codec (a multibase encoder and a prefixed string per key; ~3% of a caller's
 * CPU per no-op call, profiled).
 */
export function objectKey (id: ObjectId): string {
  let key = ''
  for (let i = 0; i < id.byteLength; i++) key += HEX[id[i]]
  return key
}

// Ids are a random per-process prefix and a counter: unique without asking the
// system's random source on every call (which costs more than the rest of a put).
const idPrefix = globalThis.crypto.getRandomValues(new Uint8Array(10))
let idCounter = 0

export function newObjectId (): ObjectId {
  const id = new Uint8Array(16)
  id.set(idPrefix)
  let n = ++idCounter
  for (let i = 15; i >= 10; i--) {
    id[i] = n & 0xff
    n = Math.floor(n / 256)
  }
  return id
}

/** What a Ref needs from the mesh that made it: counting its lifetime. */
export interface RefTracker {
  /** called once per Ref object when it is released, explicitly or by the GC backstop */
  dropHandle(key: string): void
  /** a new Ref object for the same object */
  dupHandle(ref: Ref<unknown>): Ref<unknown>
}

const finalizer = new FinalizationRegistry<{ tracker: RefTracker, key: string }>(({ tracker, key }) => {
  tracker.dropHandle(key)
})

export class Ref<T = unknown> {
  readonly id: ObjectId
  readonly key: string
  /** peer id of the owner */
  readonly owner: string
  #tracker: RefTracker | undefined
  declare readonly __value?: T

  /** @internal: Refs are made by the mesh (put, remote, get), never by users. */
  constructor (id: ObjectId, owner: string, tracker: RefTracker) {
    this.id = id
    this.key = objectKey(id)
    this.owner = owner
    this.#tracker = tracker
    finalizer.register(this, { tracker, key: this.key }, this)
  }

  get released (): boolean {
    return this.#tracker === undefined
  }

  /** @internal */
  trackerOrThrow (): RefTracker {
    if (this.#tracker === undefined) throw new ReleasedRefError(`Ref ${this.key} was released`)
    return this.#tracker
  }

  /** Drops this handle. The object is freed once no handle, call or borrower anywhere needs it. Idempotent. */
  release (): void {
    const tracker = this.#tracker
    if (tracker === undefined) return
    this.#tracker = undefined
    finalizer.unregister(this)
    tracker.dropHandle(this.key)
  }

  [Symbol.dispose] (): void {
    this.release()
  }

  /** A second, independent handle to the same object (keep one past a call that lent you this one). */
  dup (): Ref<T> {
    return this.trackerOrThrow().dupHandle(this) as Ref<T>
  }

  toString (): string {
    return `Ref(${this.key.slice(0, 12)}@${this.owner.slice(-6)})`
  }

  toJSON (): string {
    return this.toString()
  }
}

/** A Ref passed by reference: the callee receives the Ref itself, not its value. */
export class SharedRef<T = unknown> {
  readonly ref: Ref<T>
  constructor (ref: Ref<T>) {
    this.ref = ref
  }
}

export function shared<T> (ref: Ref<T>): SharedRef<T> {
  if (!(ref instanceof Ref)) throw new TypeError('shared() takes a Ref')
  return new SharedRef(ref)
}
