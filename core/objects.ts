/**
 * Objects: where a value is stored, found and freed. An object is owned by the
 * peer that made it (put, or the caller of the call that computes it); the owner
 * knows where its copies are, and frees them all when no peer refers to it.
 *
 * Owns: put() (and durable put: handing an object to another owner, adopting one),
 * get(), wait(), the owner side of locate (describeOwned: parks while computed,
 * names holders, asks lineage to compute a lost result again), storing bytes this
 * peer made (storeBytes: where a call's result is stored), fetching a value from
 * wherever it is (fetchValue), freeing an owned object (freeOwned), and fate
 * sharing when an owner dies.
 *
 * Answers: `locate`, `borrow`, `adopt`, `free`.
 */
import { logger } from '@libp2p/logger'
import { makeManifest } from './chunks.ts'
import { decodeValue, encodeValue } from './codec.ts'
import type { EncodedValue } from './codec.ts'
import { DEFAULTS } from './constants.ts'
import type { PeerContext } from './context.ts'
import { ObjectLostError, OutOfMemoryError, OwnerDiedError, PeerDiedError, ProtocolError, QuotaExceededError, errorToInfo, infoToError } from './errors.ts'
import type { Entry, OwnedObject } from './ownership.ts'
import { ObjectStatus } from './protocol/messages.ts'
import type { Envelope, Locate, Manifest, ObjectInfo, RefDesc } from './protocol/messages.ts'
import { Ref, SharedRef, newObjectId, objectKey } from './ref.ts'
import { raceSignal, withTimeout } from './signals.ts'
import type { StoredObject } from './store.ts'
import type { GetOptions, PutOptions, WaitOptions } from './types.ts'

const log = logger('refmesh:objects')

export type FetchedValue = { encoding: number, bytes: Uint8Array, release: () => void }

export interface ObjectsInit {
  ctx: PeerContext
  /** lineage (lineage.ts): a lost call result is computed again */
  lineage: { has: (key: string) => boolean, reconstruct: (key: string) => void }
  /** the owner's distribution tree (broadcast.ts) */
  tree: {
    isReceiving: (key: string, peer: string) => boolean
    feedOrRedirect: (key: string, receiver: string, locations: string[]) => string[]
  }
  /** an owned object is freed: the other parts forget it (its actor, lineage, tree) */
  onFreed: (key: string) => void
}

export class Objects {
  private readonly ctx: PeerContext
  private readonly lineage: ObjectsInit['lineage']
  private readonly tree: ObjectsInit['tree']
  private readonly onFreed: (key: string) => void
  /** objects this peer owns because a peer handed them over (durable put): their bytes count against its quota */
  private readonly adoptedFor = new Map<string, { peer: string, bytes: number }>()

  constructor (init: ObjectsInit) {
    this.ctx = init.ctx
    this.lineage = init.lineage
    this.tree = init.tree
    this.onFreed = init.onFreed
  }

  /** Stores a value in the mesh, owned by this peer. The value is kept as it is: do not change it afterwards. */
  put<T> (value: T, options: PutOptions = {}): Ref<T> {
    if (value instanceof Ref || value instanceof SharedRef) throw new TypeError('put() of a Ref: pass the Ref itself instead')
    const { ctx } = this
    const encoded = encodeValue(value)
    if (options.owner !== undefined && options.owner !== ctx.peerId) return this.putHandedOver(encoded, options.owner, options) as Ref<T>
    const id = newObjectId()
    const ref = ctx.table.createOwned(id, { state: 'pending' })
    const contained = encoded.contained.map(r => { ctx.table.pin(r.key); return r.key })
    const signal = withTimeout(ctx.combine(options.signal), options.timeoutMs, 'put')
    this.storeOwned(ref.key, id, encoded, contained, signal).catch((err: unknown) => {
      ctx.table.settle(ref.key, { state: 'failed', error: errorToInfo(err, ctx.peerId), locations: [], contained })
    })
    return ref as Ref<T>
  }

  /**
   * Durable put: the bytes are stored here first (the owner pulls them from us),
   * and the Ref is a borrowed one whose registration is the owner's adoption, so
   * passing it on or reading it waits for the owner to hold the whole object.
   */
  private putHandedOver (encoded: EncodedValue, owner: string, options: PutOptions): Ref {
    if (encoded.contained.length > 0) throw new TypeError('put(value, { owner }) of a value that holds Refs: put those with the same owner, or pass them to a call')
    const { ctx } = this
    const id = newObjectId()
    const key = objectKey(id)
    const signal = withTimeout(ctx.combine(options.signal), options.timeoutMs, 'put')
    const adopted = (async () => {
      const inline = encoded.bytes.byteLength <= ctx.inlineThreshold
      const manifest = inline
        ? { size: encoded.bytes.byteLength, chunkSize: ctx.chunkSize, hashes: [], encoding: encoded.encoding }
        : await makeManifest(encoded.bytes, encoded.encoding, ctx.chunkSize, ctx.sha256, ctx.transfer.uplinkRate())
      const object: ObjectInfo = inline
        ? { status: ObjectStatus.INLINE, inline: encoded.bytes, encoding: encoded.encoding, locations: [], contained: [] }
        : { status: ObjectStatus.STORED, inline: new Uint8Array(0), encoding: encoded.encoding, manifest, locations: [ctx.peerId], contained: [] }
      if (!inline) await this.storeBytes(key, id, owner, manifest, encoded.bytes, `put of object ${key}`, signal)
      try {
        await ctx.channels.request(owner, { adopt: { id, object } }, { signal })
      } catch (err) {
        ctx.store.delete(key)
        if (err instanceof QuotaExceededError) throw err
        throw new OwnerDiedError(`${owner} did not take ownership of ${key}: ${(err as Error).message}`)
      }
      // The owner's copy is the one that counts now; ours may be dropped under pressure.
      const local = ctx.store.get(key)
      if (local !== undefined) local.primary = false
    })()
    return ctx.table.createHandedOver(id, owner, adopted)
  }

  /** `adopt`: the owner side of a durable put: copy the object from its maker, then own it with the maker as a borrower. */
  async adopt (from: string, id: Uint8Array, object: ObjectInfo): Promise<void> {
    const { ctx } = this
    const key = objectKey(id)
    if (ctx.table.get(key) !== undefined || ctx.store.has(key)) throw new ProtocolError(`object ${key} exists here already`)
    if (object.contained.length > 0) throw new ProtocolError('an adopted object may not hold Refs')
    const size = object.status === ObjectStatus.INLINE ? object.inline.byteLength : object.manifest?.size ?? 0
    if (!ctx.quotas.take(from, 'bytes', size)) {
      throw new QuotaExceededError(`${from} may not have ${ctx.peerId} keep ${size} more bytes for it (its quota is ${ctx.quotas.limit('bytes')} bytes)`)
    }
    this.adoptedFor.set(key, { peer: from, bytes: size })
    const signal = ctx.stopSignal
    const handle = ctx.table.createOwned(id, { state: 'pending' })
    ctx.table.addBorrower(key, from)
    try {
      if (object.status === ObjectStatus.INLINE) {
        const manifest = { size: object.inline.byteLength, chunkSize: ctx.chunkSize, hashes: [], encoding: object.encoding }
        await this.storeBytes(key, id, ctx.peerId, manifest, object.inline, `adopted object ${key}`, signal)
        ctx.table.settle(key, { state: 'ready', inline: true, encoding: object.encoding, size: manifest.size, locations: [ctx.peerId], contained: [] })
      } else if (object.status === ObjectStatus.STORED && object.manifest !== undefined) {
        const manifest = object.manifest
        await ctx.transfer.pull({ key, id, owner: ctx.peerId, manifest, sources: [from], signal })
        const copy = ctx.store.get(key)
        if (copy === undefined) throw new ObjectLostError(`adopted object ${key} was dropped as soon as it arrived`)
        copy.primary = true
        ctx.table.settle(key, { state: 'ready', inline: false, encoding: manifest.encoding, size: manifest.size, manifest, locations: [ctx.peerId, from], contained: [] })
      } else {
        throw new ProtocolError(`adopt of ${key} with status ${object.status}`)
      }
    } catch (err) {
      if (this.adoptedFor.delete(key)) ctx.quotas.give(from, 'bytes', size)
      ctx.table.removeBorrower(key, from)
      ctx.table.settle(key, { state: 'failed', error: errorToInfo(err, ctx.peerId), locations: [], contained: [] })
      throw err
    } finally {
      handle.release()
    }
  }

  /** The value of a Ref: waits until it is computed, pulls it here if it lives elsewhere. */
  async get<T> (ref: Ref<T>, options: GetOptions = {}): Promise<T> {
    if (!(ref instanceof Ref)) throw new TypeError('get() takes a Ref')
    ref.trackerOrThrow()
    const { ctx } = this
    const signal = withTimeout(ctx.combine(options.signal), options.timeoutMs, 'get')
    // A durable put's Ref is readable once its owner holds the object (or fails as the put did).
    const registered = ctx.table.get(ref.key)?.registered
    if (registered !== undefined) await raceSignal(registered, signal, 'get')
    // Our own call's result: wait for its reply here, and read it from this store (fetchValue's first look), not through describeOwned.
    const owned = ctx.table.get(ref.key)?.owned
    if (owned?.state === 'pending') await raceSignal(owned.ready, signal, 'get')
    const { encoding, bytes, release } = await this.fetchValue({ id: ref.id, owner: ref.owner }, signal)
    const pending: Array<Promise<void>> = []
    let value: unknown
    try {
      value = decodeValue(encoding, bytes, desc => ctx.table.refFromDesc(desc, pending))
    } finally {
      release()
    }
    if (pending.length > 0) await raceSignal(Promise.all(pending), signal, 'get')
    return value as T
  }

  /** Waits until `count` of `refs` are ready (computed or failed) and returns that many (fewer on a timeout), the rest pending. Never throws for a failed Ref. */
  async wait (refs: Ref[], options: WaitOptions = {}): Promise<{ ready: Ref[], pending: Ref[] }> {
    const count = Math.min(options.count ?? refs.length, refs.length)
    const ready = new Set<Ref>()
    const controller = new AbortController()
    const signal = withTimeout(AbortSignal.any([controller.signal, this.ctx.stopSignal, ...(options.signal !== undefined ? [options.signal] : [])]), options.timeoutMs, 'wait')
    let wake!: () => void
    let woken = new Promise<void>(resolve => { wake = resolve })
    for (const ref of refs) {
      this.whenReady(ref, signal as AbortSignal).then(() => {
        ready.add(ref)
        wake()
      }, () => {})
    }
    try {
      while (ready.size < count && signal?.aborted !== true) {
        await raceSignal(woken, signal, 'wait').catch(() => {})
        woken = new Promise<void>(resolve => { wake = resolve })
      }
    } finally {
      controller.abort()
    }
    // Exactly `count` ready (as Ray's num_returns), the first in the order of `refs`: a
    // `while (pending.length)` loop with count 1 then sees each Ref once.
    const readyList = refs.filter(r => ready.has(r)).slice(0, count)
    const chosen = new Set(readyList)
    return { ready: readyList, pending: refs.filter(r => !chosen.has(r)) }
  }

  /** Resolves when the object is computed (or failed), without fetching it. */
  async whenReady (ref: Ref, signal: AbortSignal): Promise<void> {
    const { ctx } = this
    const entry = ctx.table.get(ref.key)
    if (entry?.owned !== undefined) {
      await raceSignal(entry.owned.ready, signal, `wait for ${ref}`)
      return
    }
    if (entry?.registered !== undefined) await raceSignal(entry.registered, signal, `wait for ${ref}`)
    for (let attempt = 0; ;) {
      // A Ref whose owner died is settled: reading it fails with OwnerDiedError.
      if (entry?.ownerDied === true || ctx.membership.isDead(ref.owner)) return
      let reply: Envelope
      try {
        reply = await ctx.channels.request(ref.owner, { locate: { id: ref.id, wait: true, fetch: false, timeoutMs: DEFAULTS.locateParkMs } }, { signal })
      } catch (err) {
        if (!(err instanceof PeerDiedError) || signal.aborted) throw err
        await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt++))), signal, `wait for ${ref}`)
        continue
      }
      if (reply.locateReply?.object?.status !== ObjectStatus.PENDING) return
    }
  }

  /**
   * The encoded value of an object, from this store, the owner's reply, or
   * pulled from holders. Bytes in this store stay in memory until `release()`.
   */
  async fetchValue (desc: RefDesc, signal: AbortSignal | undefined): Promise<FetchedValue> {
    const { ctx } = this
    const key = objectKey(desc.id)
    const what = `object ${key}`
    const local = ctx.store.readInMemory(key) ?? await ctx.store.read(key, what, signal)
    if (local !== undefined) return { encoding: (ctx.store.get(key) as StoredObject).manifest.encoding, ...local }
    // Holders can die while we pull; the owner then points at others, or computes the
    // object again (lineage), or says it is lost. Under sustained churn that can go on
    // for as long as peers keep dying, so there is no cap on the rounds: what bounds
    // them is the caller's signal (its timeout), and an owner that names the same
    // holders, none of which serves it, for longer than the failure detector takes to
    // declare a holder dead. A lineage call that keeps killing its executor fails on
    // its own (its retries), and the owner then answers FAILED.
    let deadline = performance.now() + this.failureBoundMs() * 2
    let named = ''
    let failed: Error | undefined
    for (let attempt = 0; ; attempt++) {
      const info = await this.locate(desc, signal)
      const holders = [...info.locations].sort().join(',')
      if (holders !== named) {
        // New holders (a copy elsewhere, or a value computed again): progress, so the clock starts over.
        named = holders
        deadline = performance.now() + this.failureBoundMs() * 2
        attempt = 0
      } else if (failed !== undefined && performance.now() >= deadline && !this.allDeadHere(info.locations)) {
        // The owner is asked once more after a failed pull however long that pull took
        // (a detour can outlast the bound): only the same holders named again end it.
        // Unless this peer knows them all dead: the owner's own detector will tell it too
        // (a loaded owner can lag behind), and it then computes the object again; until
        // then the caller's signal bounds the wait.
        throw failed
      }
      try {
        return await this.fetchDescribed(desc, info, signal)
      } catch (err) {
        const retry = err instanceof ObjectLostError && info.status === ObjectStatus.STORED && signal?.aborted !== true
        if (!retry) throw err
        failed = err
        log('fetch of %s failed (%s); asking its owner again (attempt %d)', key, (err as Error).message, attempt + 1)
        await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt))), signal, `get of ${key}`)
      }
    }
  }

  /** Whether every one of `holders` (at least one) is dead to this peer's failure detector. */
  private allDeadHere (holders: string[]): boolean {
    return holders.length > 0 && holders.every(p => this.ctx.membership.isDead(p))
  }

  /** What the owner says of an object (this peer, or asked over the wire), once it is computed. */
  async locate (desc: RefDesc, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    const key = objectKey(desc.id)
    this.checkOwnerAlive(desc.owner, key)
    return desc.owner === this.ctx.peerId
      ? await this.describeOwned(key, { id: desc.id, wait: true, fetch: true, timeoutMs: 0, denied: this.ctx.transfer.deniedOf(key) }, this.ctx.peerId, signal)
      : await this.locateRemote(desc, signal)
  }

  /** How long the failure detector takes at most to declare a silent peer dead. */
  private failureBoundMs (): number {
    return (DEFAULTS.deadAfterBeats + 1) * this.ctx.heartbeatMs
  }

  /** Fate sharing: a Ref whose owner died is dead too. */
  checkOwnerAlive (owner: string, key: string): void {
    const { ctx } = this
    if (owner === ctx.peerId) return
    if (ctx.table.get(key)?.ownerDied === true || ctx.membership.isDead(owner)) {
      throw new OwnerDiedError(`the owner ${owner} of ${key} died`)
    }
  }

  /** The value, from the owner's description of it: inline, pulled from its holders, or its error. */
  async fetchDescribed (desc: RefDesc, info: ObjectInfo, signal: AbortSignal | undefined): Promise<FetchedValue> {
    const { ctx } = this
    const key = objectKey(desc.id)
    const what = `object ${key}`
    switch (info.status) {
      case ObjectStatus.INLINE:
        return { encoding: info.encoding, bytes: info.inline, release: () => {} }
      case ObjectStatus.STORED: {
        if (info.manifest === undefined) throw new ProtocolError(`no manifest for ${key}`)
        // It may have arrived here while we asked (our own result, or another reader's pull).
        const arrived = await ctx.store.read(key, what, signal)
        if (arrived !== undefined) return { encoding: info.manifest.encoding, ...arrived }
        const sources = info.locations.filter(p => p !== ctx.peerId)
        // Memory pressure may drop a fresh copy before we pin it: pull again then.
        for (let attempt = 0; ; attempt++) {
          const obj = await ctx.transfer.pull({
            key,
            id: desc.id,
            owner: desc.owner,
            manifest: info.manifest,
            sources,
            signal,
            relocate: async () => {
              const again = desc.owner === ctx.peerId ? info : await this.locateRemote(desc, signal)
              return again.locations.filter(p => p !== ctx.peerId)
            },
            onProgress: desc.owner === ctx.peerId
              ? undefined
              : (have, complete) => {
                  ctx.channels.send(desc.owner, { progress: { id: desc.id, have: have.slice(), complete } }).catch((err: Error) => { log('progress to %s failed: %s', desc.owner, err.message) })
                }
          })
          const pulled = await ctx.store.read(key, what, signal)
          if (pulled !== undefined) return { encoding: obj.manifest.encoding, ...pulled }
          if (attempt >= 2) throw new ObjectLostError(`${what} was dropped from memory as soon as it arrived, three times`)
        }
      }
      case ObjectStatus.FAILED:
        throw infoToError(info.error ?? { name: 'RefmeshError', message: 'failed', stack: '', peer: desc.owner, fn: '', remote: false })
      default:
        throw new ObjectLostError(`object ${key} no longer exists (owner ${desc.owner})`)
    }
  }

  /**
   * Asks the owner where an object is (parking while it is computed). An owner that
   * cannot be reached is asked again until the failure detector has a verdict:
   * dead is OwnerDiedError; a blip is forgotten.
   */
  async locateRemote (desc: RefDesc, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    const { ctx } = this
    const key = objectKey(desc.id)
    const deadline = performance.now() + this.failureBoundMs() * 2
    for (let attempt = 0; ;) {
      this.checkOwnerAlive(desc.owner, key)
      let reply: Envelope
      try {
        // Holders the owner named that said they hold nothing of it: the owner's list is stale.
        const denied = ctx.transfer.deniedOf(key)
        reply = await ctx.channels.request(desc.owner, { locate: { id: desc.id, wait: true, fetch: true, timeoutMs: DEFAULTS.locateParkMs, ...denied.length > 0 ? { denied } : {} } }, { signal })
      } catch (err) {
        if (!(err instanceof PeerDiedError) || signal?.aborted === true) throw err
        // An owner the failure detector still holds alive is only slow to answer (a loaded
        // peer under churn): keep asking. The detector's verdict, or the caller's signal, ends it.
        if (performance.now() > deadline && !ctx.membership.isAlive(desc.owner)) throw new OwnerDiedError(`the owner ${desc.owner} of ${key} cannot be reached: ${err.message}`)
        await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt++))), signal, `get of ${key}`)
        continue
      }
      const info = reply.locateReply?.object
      if (info === undefined) throw new ProtocolError(`${desc.owner} sent an empty locate reply`)
      if (info.status !== ObjectStatus.PENDING) return info
    }
  }

  /** `locate`, owner side: what an object is and where it lives; parks while it is being computed (`waited`: this request parked). */
  async describeOwned (key: string, req: Locate, from: string, signal?: AbortSignal, waited = false): Promise<ObjectInfo> {
    const { ctx } = this
    const none: ObjectInfo = { status: ObjectStatus.FREED, inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] }
    const entry = ctx.table.get(key)
    const owned = entry?.owned
    if (entry === undefined || owned === undefined) return none
    // A peer that asks to pull an object does not hold a whole copy, whatever it held before
    // (it dropped it, or freed it thinking this owner dead): it is no holder to point anyone at.
    // Said when the request arrives, not after it waited for the object: the asker may have
    // computed it meanwhile (a call re-run by lineage on the very peer whose call needs it),
    // and dropping that only holder would make lineage run it again, and again.
    if (req.fetch && !waited && from !== ctx.peerId && !this.tree.isReceiving(key, from) && owned.locations.delete(from)) owned.formerLocations.add(from)
    const denied = new Set(req.fetch ? req.denied ?? [] : [])
    if (denied.size > 0 && !waited) this.dropDeniedHolders(key, owned, denied, from)
    if (owned.state === 'pending') {
      if (!req.wait) return { ...none, status: ObjectStatus.PENDING }
      const park = withTimeout(signal ?? ctx.stopSignal, req.timeoutMs, 'locate')
      try {
        await raceSignal(owned.ready, park, 'locate')
      } catch (err) {
        if (signal?.aborted === true) throw err
        return { ...none, status: ObjectStatus.PENDING }
      }
      // Look again from the start: every reader parked here wakes at once, and the first may
      // have found the new value lost already and started another rebuild (pending again).
      // Without this a second reader started a second rebuild of the same result, and the copy
      // the first one made was never freed (chaos left objects in the survivors' stores).
      return await this.describeOwned(key, req, from, signal, true)
    }
    // Contained Refs are pinned while this object lives, so their entries exist.
    const contained = owned.contained.flatMap(k => { const e = ctx.table.get(k); return e === undefined ? [] : [{ id: e.id, owner: e.owner }] })
    if (owned.state === 'failed') return { ...none, status: ObjectStatus.FAILED, error: owned.error }
    if (!owned.inline && !this.hasCompleteCopy(key, owned)) {
      // Every holder died: a call result is computed again (then described), a put() is gone.
      if (this.lineage.has(key)) {
        this.lineage.reconstruct(key)
        return await this.describeOwned(key, req, from, signal)
      }
      return { ...none, status: ObjectStatus.FAILED, error: errorToInfo(new ObjectLostError(`every copy of ${key} is lost; it was made by put(), which cannot be computed again`), ctx.peerId) }
    }
    if (owned.inline) {
      const held = await ctx.store.read(key, `object ${key}`, signal)
      if (held === undefined) return none
      held.release()
      return { status: ObjectStatus.INLINE, inline: held.bytes, encoding: owned.encoding, locations: [], contained }
    }
    // Not named to the asker again: those that told it they hold nothing (they are named to
    // others, and to it again once its own window on them has passed).
    let locations = [...owned.locations].filter(p => !denied.has(p))
    if (req.fetch && from !== ctx.peerId) {
      owned.locations.add(from)
      locations = this.tree.feedOrRedirect(key, from, locations)
    }
    if (req.fetch && from === ctx.peerId) owned.locations.add(ctx.peerId)
    return { status: ObjectStatus.STORED, inline: new Uint8Array(0), encoding: owned.encoding, manifest: owned.manifest, locations, contained }
  }

  /**
   * The asker was sent to holders that said they hold nothing of the object (they
   * dropped it, gave up a pull of it, or freed it after a false verdict on this
   * owner). While a complete copy is left elsewhere they are only not named to that
   * asker. When none is, the owner would name them forever, the asker would try
   * nobody, and the object would never be computed again: so then they stop being
   * holders (former ones: a free still reaches them), and the owner rebuilds it. A
   * peer that lies here costs one rebuild, no more.
   */
  private dropDeniedHolders (key: string, owned: OwnedObject, denied: Set<string>, from: string): void {
    const { peerId, membership, store } = this.ctx
    const here = store.get(key)
    if (here !== undefined && store.isComplete(here)) return
    // This owner is named too while it pulls its own object: that is no copy.
    const holders = [...owned.locations].filter(p => p !== peerId && !membership.isDead(p))
    const gone = holders.filter(p => denied.has(p))
    if (gone.length === 0 || holders.some(p => !denied.has(p) && !this.tree.isReceiving(key, p))) return
    for (const p of gone) {
      owned.locations.delete(p)
      owned.formerLocations.add(p)
    }
    log('no complete copy of %s but on peers that denied it to %s (%s): they are no longer named', key, from, gone.join(','))
  }

  /** Whether an owned call result that was computed has no complete copy left (so lineage must make it again). */
  isLost (key: string): boolean {
    const owned = this.ctx.table.get(key)?.owned
    return owned !== undefined && owned.state === 'ready' && !owned.inline && !this.hasCompleteCopy(key, owned)
  }

  /** Whether a complete copy of an owned object is left: here, or on a live peer that is not still receiving it. */
  private hasCompleteCopy (key: string, owned: OwnedObject): boolean {
    const { store, peerId, membership } = this.ctx
    // A location can be added after its peer was declared dead (a call's reply or a
    // puller's locate sent just before the death, handled just after): it holds nothing.
    // All of them go before anyone is named: a dead one named as a parent in the tree costs
    // its receiver a detour and a verdict wait, and then a failed call.
    for (const p of owned.locations) if (p !== peerId && membership.isDead(p)) owned.locations.delete(p)
    for (const p of owned.locations) {
      if (p === peerId ? store.get(key) !== undefined && store.isComplete(store.get(key) as StoredObject) : !this.tree.isReceiving(key, p)) return true
    }
    return false
  }

  /** Whether this peer holds a complete copy of an object. */
  holds (desc: RefDesc): boolean {
    const obj = this.ctx.store.get(objectKey(desc.id))
    return obj !== undefined && this.ctx.store.isComplete(obj)
  }

  /** Stores a value this peer owns and marks it ready. */
  private async storeOwned (key: string, id: Uint8Array, encoded: EncodedValue, contained: string[], signal: AbortSignal | undefined): Promise<void> {
    const { ctx } = this
    const inline = encoded.bytes.byteLength <= ctx.inlineThreshold
    const manifest = inline
      ? { size: encoded.bytes.byteLength, chunkSize: ctx.chunkSize, hashes: [], encoding: encoded.encoding }
      : await makeManifest(encoded.bytes, encoded.encoding, ctx.chunkSize, ctx.sha256, ctx.transfer.uplinkRate())
    if (ctx.table.get(key) === undefined) return
    await this.storeBytes(key, id, ctx.peerId, manifest, encoded.bytes, `put of object ${key}`, signal)
    if (ctx.table.get(key) === undefined) {
      ctx.store.delete(key)
      return
    }
    ctx.table.settle(key, { state: 'ready', inline, encoding: encoded.encoding, size: manifest.size, manifest: inline ? undefined : manifest, locations: [ctx.peerId], contained })
  }

  /**
   * Puts bytes this peer made into its store: waits for room (backpressure);
   * a value larger than the whole store goes straight to disk, and
   * OutOfMemoryError only when it fits nowhere.
   */
  async storeBytes (key: string, id: Uint8Array, owner: string, manifest: Manifest, bytes: Uint8Array, what: string, signal: AbortSignal | undefined): Promise<void> {
    const { store } = this.ctx
    if (!store.fitsInMemory(bytes.byteLength)) {
      if (await store.putOnDisk(key, id, owner, manifest, bytes)) return
      throw new OutOfMemoryError(`${what} is ${bytes.byteLength} bytes: more than the store's capacity (${store.capacity}) and its free spill space`)
    }
    await store.reserve(bytes.byteLength, what, signal)
    store.putComplete(key, id, owner, manifest, bytes, true)
  }

  /** Owner side: nothing refers to the object any more; drop every copy. */
  freeOwned (entry: Entry, owned: OwnedObject): void {
    const { ctx } = this
    ctx.store.delete(entry.key)
    const adopted = this.adoptedFor.get(entry.key)
    if (adopted !== undefined) {
      this.adoptedFor.delete(entry.key)
      ctx.quotas.give(adopted.peer, 'bytes', adopted.bytes)
    }
    this.onFreed(entry.key)
    for (const k of owned.contained) ctx.table.unpin(k)
    for (const peer of new Set([...owned.locations, ...owned.formerLocations])) {
      if (peer === ctx.peerId) continue
      ctx.channels.send(peer, { free: { ids: [entry.id] } }).catch((err: Error) => { log('free to %s failed: %s', peer, err.message) })
    }
  }

  /** `free` from an owner: drop this peer's copies of what it owns. */
  onFree (from: string, ids: Uint8Array[]): void {
    for (const id of ids) {
      const key = objectKey(id)
      if (this.ctx.store.get(key)?.owner === from) this.ctx.store.delete(key)
    }
  }

  /** `borrow`: `from` holds a Ref to an object this peer owns now (add), or no longer. */
  onBorrow (from: string, id: Uint8Array, add: boolean): void {
    const key = objectKey(id)
    if (add) {
      if (!this.ctx.table.addBorrower(key, from)) throw new ObjectLostError(`object ${key} is not owned here (freed?)`)
    } else {
      this.ctx.table.removeBorrower(key, from)
    }
  }

  /** Fate sharing: copies of what a dead peer owned are freed (nobody can free them later). */
  ownerGone (peer: string): void {
    const orphans = this.ctx.store.ownedBy(peer)
    for (const key of orphans) this.ctx.store.delete(key)
    if (orphans.length > 0) log('freed %d copies owned by dead %s', orphans.length, peer)
  }
}
