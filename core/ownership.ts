/**
 * Ownership and reference counting, after Ray's ownership design.
 *
 * Every object has one owner: the peer whose code created its Ref. On every
 * peer, each object it knows has an entry counting local Ref handles plus
 * internal pins (call arguments in flight, Refs contained in a live object,
 * Refs handed to a caller in a result but not yet acknowledged).
 *
 * - On the owner, the entry also holds the borrowers (peers holding a Ref to
 *   it) and the locations of its copies. When handles, pins and borrowers are
 *   all zero, the owner frees every copy.
 * - On any other peer, the entry is a borrow: when its count goes from zero to
 *   one the peer registers with the owner, and when it falls back to zero it
 *   withdraws that registration (only once the owner acknowledged it). The
 *   owner counts registrations per borrower, so a withdrawal that arrives after
 *   a newer registration cannot cancel it. Whoever hands a
 *   Ref to another peer keeps it pinned until the receiver's registration is
 *   acknowledged, so the owner never sees a gap in which nobody holds it.
 */
import { logger } from '@libp2p/logger'
import { OwnerDiedError, ReleasedRefError } from './errors.ts'
import type { ErrorInfo } from './errors.ts'
import { Ref, objectKey } from './ref.ts'
import type { RefTracker } from './ref.ts'
import type { Manifest, RefDesc } from './protocol/messages.ts'

const log = logger('refmesh:ownership')

export type ObjectState = 'pending' | 'ready' | 'failed'

/** What the owner knows about an object it owns. */
export interface OwnedObject {
  state: ObjectState
  /** small values live only on the owner and travel inside replies */
  inline: boolean
  encoding: number
  size: number
  manifest?: Manifest
  /** peers holding a full or partial copy (this peer included) */
  locations: Set<string>
  /**
   * Live peers that were locations once and were dropped from `locations` without a free
   * (a rebuild forgets the old copies, a settle replaces them, a puller asks again): one of
   * them may still hold a copy (a pull that completed just as its source died), so the
   * free goes to them too. A free to a peer without a copy costs one message.
   */
  formerLocations: Set<string>
  /** borrower peer -> registrations not yet withdrawn */
  borrowers: Map<string, number>
  error?: ErrorInfo
  /** keys of the Refs nested in the value; pinned while this object lives */
  contained: string[]
  /** the call that makes this object, for lineage; undefined for put */
  lineage?: { fn: string }
  ready: Promise<void>
  markReady: () => void
}

export interface Entry {
  readonly key: string
  readonly id: Uint8Array
  readonly owner: string
  handles: number
  pins: number
  owned?: OwnedObject
  /** borrowed entries: settles when the owner has acknowledged our registration */
  registered?: Promise<void>
  /** borrowed entries: where the object was last said to be, and its size (placement hints) */
  hints?: { size: number, locations: string[] }
  /** borrowed entries: the failure detector declared the owner dead (fate sharing: the object is gone) */
  ownerDied?: boolean
}

export interface OwnershipInit {
  self: string
  /** registers (add) or unregisters this peer as a borrower with the owner */
  sendBorrow: (owner: string, id: Uint8Array, add: boolean) => Promise<void>
  /** the owner's counts reached zero: free every copy */
  onFree: (entry: Entry, owned: OwnedObject) => void
}

export class OwnershipTable implements RefTracker {
  private readonly init: OwnershipInit
  private readonly entries = new Map<string, Entry>()

  constructor (init: OwnershipInit) {
    this.init = init
  }

  get (key: string): Entry | undefined {
    return this.entries.get(key)
  }

  /** Starts owning a new object; the returned Ref is its first handle. */
  createOwned (id: Uint8Array, init: { state: ObjectState, lineage?: { fn: string } }): Ref {
    const key = objectKey(id)
    let markReady!: () => void
    const ready = new Promise<void>(resolve => { markReady = resolve })
    const owned: OwnedObject = {
      state: init.state,
      inline: false,
      encoding: 0,
      size: 0,
      locations: new Set(),
      formerLocations: new Set(),
      borrowers: new Map(),
      contained: [],
      lineage: init.lineage,
      ready,
      markReady
    }
    if (init.state !== 'pending') markReady()
    const entry: Entry = { key, id, owner: this.init.self, handles: 0, pins: 0, owned }
    this.entries.set(key, entry)
    return this.newHandle(entry)
  }

  /**
   * A Ref to an object this peer made but `owner` owns (durable put): a borrowed
   * entry whose registration is the owner's adoption of the object.
   */
  createHandedOver (id: Uint8Array, owner: string, adopted: Promise<void>): Ref {
    const key = objectKey(id)
    const entry: Entry = { key, id, owner, handles: 0, pins: 0, registered: adopted }
    adopted.catch(() => {})
    this.entries.set(key, entry)
    return this.newHandle(entry)
  }

  /** Records the outcome of an owned object. If nobody wants it any more, frees it at once. */
  settle (key: string, update: Partial<Pick<OwnedObject, 'inline' | 'encoding' | 'size' | 'manifest' | 'error'>> & { state: 'ready' | 'failed', locations: string[], contained: string[] }): void {
    const entry = this.entries.get(key)
    const owned = entry?.owned
    if (entry === undefined || owned === undefined) return
    for (const p of owned.locations) owned.formerLocations.add(p)
    Object.assign(owned, { ...update, locations: new Set(update.locations) })
    owned.markReady()
    this.maybeRelease(entry)
  }

  private newHandle (entry: Entry): Ref {
    entry.handles++
    return new Ref(entry.id, entry.owner, this)
  }

  dupHandle (ref: Ref<unknown>): Ref<unknown> {
    const entry = this.entries.get(ref.key)
    if (entry === undefined) throw new ReleasedRefError(`Ref ${ref.key} was freed`)
    return this.newHandle(entry)
  }

  /**
   * A handle for a Ref that arrived from elsewhere (a decoded value or argument).
   * `pending` collects the registrations the caller must await before it lets
   * the value out of its hands.
   */
  refFromDesc (desc: RefDesc, pending: Array<Promise<void>>): Ref {
    const entry = this.acquire(desc, pending)
    return this.newHandle(entry)
  }

  /** Pins a Ref described on the wire (e.g. one contained in a call result), registering a borrow if needed. */
  pinDesc (desc: RefDesc, pending: Array<Promise<void>>): string {
    const entry = this.acquire(desc, pending)
    entry.pins++
    return entry.key
  }

  private acquire (desc: RefDesc, pending: Array<Promise<void>>): Entry {
    const key = objectKey(desc.id)
    let entry = this.entries.get(key)
    if (entry === undefined) {
      if (desc.owner === this.init.self) {
        throw new ReleasedRefError(`Ref ${key} names this peer as owner, but it no longer exists here`)
      }
      entry = { key, id: desc.id, owner: desc.owner, handles: 0, pins: 0 }
      entry.registered = this.init.sendBorrow(desc.owner, desc.id, true).catch((err: Error) => {
        throw new OwnerDiedError(`cannot register with the owner ${desc.owner} of ${key}: ${err.message}`)
      })
      // Callers await it through `pending`; this keeps an unawaited copy from warning.
      entry.registered.catch(() => {})
      this.entries.set(key, entry)
    }
    if (entry.owned === undefined && desc.size !== undefined && desc.locations !== undefined) {
      entry.hints = { size: desc.size, locations: desc.locations }
    }
    if (entry.registered !== undefined) pending.push(entry.registered)
    return entry
  }

  /** Where an object is and how big, as far as this peer knows: exact for owned objects, hints for borrowed ones. */
  hints (key: string): { size: number, locations: string[] } | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) return undefined
    const owned = entry.owned
    if (owned === undefined) return entry.hints
    if (owned.state !== 'ready') return undefined
    return { size: owned.size, locations: owned.inline ? [entry.owner] : [...owned.locations] }
  }

  pin (key: string): void {
    const entry = this.entries.get(key)
    if (entry === undefined) throw new ReleasedRefError(`Ref ${key} was freed`)
    entry.pins++
  }

  unpin (key: string): void {
    const entry = this.entries.get(key)
    if (entry === undefined) return
    entry.pins--
    this.maybeRelease(entry)
  }

  dropHandle (key: string): void {
    const entry = this.entries.get(key)
    if (entry === undefined) return
    entry.handles--
    this.maybeRelease(entry)
  }

  addBorrower (key: string, peer: string): boolean {
    const owned = this.entries.get(key)?.owned
    if (owned === undefined) return false
    owned.borrowers.set(peer, (owned.borrowers.get(peer) ?? 0) + 1)
    return true
  }

  removeBorrower (key: string, peer: string): void {
    const entry = this.entries.get(key)
    if (entry?.owned === undefined) return
    const n = (entry.owned.borrowers.get(peer) ?? 0) - 1
    if (n > 0) entry.owned.borrowers.set(peer, n)
    else entry.owned.borrowers.delete(peer)
    this.maybeRelease(entry)
  }

  /**
   * A peer died: it borrows nothing and holds no copies any more, and what it
   * owned is gone (its borrowed entries here are marked, so readers fail fast).
   */
  peerGone (peer: string): void {
    for (const entry of [...this.entries.values()]) {
      if (entry.owned === undefined) {
        if (entry.owner === peer) entry.ownerDied = true
        continue
      }
      entry.owned.locations.delete(peer)
      entry.owned.formerLocations.delete(peer)
      if (entry.owned.borrowers.delete(peer)) this.maybeRelease(entry)
    }
  }

  /**
   * Lineage reconstruction: an owned object whose every copy is lost is being
   * computed again. It is pending until settled anew; returns the Refs its old
   * value contained (still pinned; the caller unpins them once the new value is in).
   */
  reopen (key: string): string[] {
    const owned = this.entries.get(key)?.owned
    if (owned === undefined) return []
    const contained = owned.contained
    owned.contained = []
    owned.state = 'pending'
    for (const p of owned.locations) owned.formerLocations.add(p)
    owned.locations.clear()
    owned.ready = new Promise<void>(resolve => { owned.markReady = resolve })
    return contained
  }

  private maybeRelease (entry: Entry): void {
    if (entry.handles + entry.pins > 0) return
    const owned = entry.owned
    if (owned === undefined) {
      this.entries.delete(entry.key)
      log('unborrow %s from %s', entry.key, entry.owner)
      const registered = entry.registered ?? Promise.resolve()
      // Unregister only after the registration went out, so the owner sees them in order.
      registered.then(
        () => this.init.sendBorrow(entry.owner, entry.id, false),
        () => {}
      ).catch((err: Error) => { log('unborrow of %s failed: %s', entry.key, err.message) })
      return
    }
    if (owned.borrowers.size > 0 || owned.state === 'pending') return
    this.entries.delete(entry.key)
    log('free %s (copies on %s)', entry.key, [...owned.locations].join(','))
    this.init.onFree(entry, owned)
  }

  stats (): { owned: number, borrowed: number } {
    let owned = 0
    for (const e of this.entries.values()) if (e.owned !== undefined) owned++
    return { owned, borrowed: this.entries.size - owned }
  }
}
