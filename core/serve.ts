/**
 * Calls, executor side: where a call RUNS and where its result is STORED. onCall()
 * admits a call from a caller (quotas; a full or pressed peer hands it back, a
 * spillback, with its state so the caller learns it), fetches its dereferenced
 * arguments (ahead of a slot with prefetch), runs it in the executor, and
 * describes the result: inline in the reply when small, else stored in this
 * peer's store for its owner, the caller (describeResult). Refs in the result
 * stay pinned here until the caller acknowledges (handoffs.ts).
 *
 * Answers: `call`. Never throws for a call that ran: failures become FAILED results.
 */
import { logger } from '@libp2p/logger'
import type { Admitted, MemoryAdmission } from './admission.ts'
import { makeManifest } from './chunks.ts'
import { Encoding, decodeArgs, decodeValue, encodeValue } from './codec.ts'
import { DEFAULTS } from './constants.ts'
import type { PeerContext } from './context.ts'
import { ArgumentLostError, FunctionNotFoundError, QuotaExceededError, TimeoutError, errorToInfo } from './errors.ts'
import type { ErrorInfo } from './errors.ts'
import type { Executor } from './executor.ts'
import type { PeerState } from './membership.ts'
import { ObjectStatus } from './protocol/messages.ts'
import type { CallReply, CallRequest, Manifest, ObjectInfo, RefDesc } from './protocol/messages.ts'
import { objectKey } from './ref.ts'
import type { Ref } from './ref.ts'
import { splitReturns } from './returns.ts'
import { raceSignal, withTimeout } from './signals.ts'

const log = logger('refmesh:serve')

export interface ServeInit {
  ctx: PeerContext
  executor: Executor
  admission: MemoryAdmission
  /** fetch the arguments of queued calls while others run */
  prefetch: boolean
  /** the object parts the executor side uses (objects.ts) */
  objects: {
    holds: (desc: RefDesc) => boolean
    fetchValue: (desc: RefDesc, signal: AbortSignal | undefined) => Promise<{ encoding: number, bytes: Uint8Array, release: () => void }>
    storeBytes: (key: string, id: Uint8Array, owner: string, manifest: Manifest, bytes: Uint8Array, what: string, signal: AbortSignal | undefined) => Promise<void>
  }
  handoffs: { hold: (key: string, peer: string, keys: string[]) => void, release: (peer: string, key: string) => void }
  /** this peer's state, sent with a spillback */
  spillbackState: () => Omit<PeerState, 'seq'>
}

export class Serve {
  private readonly init: ServeInit
  private readonly ctx: PeerContext
  /** bytes of dereferenced arguments found in this peer's store, and fetched from others */
  readonly argBytes = { localBytes: 0, fetchedBytes: 0 }
  /** calls handed back to their callers */
  spilledBack = 0

  constructor (init: ServeInit) {
    this.ctx = init.ctx
    this.init = init
  }

  private readonly hintsOf = (ref: Ref): { size: number, locations: string[] } | undefined => this.ctx.table.hints(ref.key)

  /** Above 80% of its store a peer admits no new calls until pressure falls. */
  private underPressure (): boolean {
    return this.ctx.store.used > this.ctx.store.capacity * DEFAULTS.admitFraction
  }

  /**
   * Executor side: admits a call (or hands it back), fetches its arguments,
   * runs it, and describes its result. Never throws: failures become FAILED results.
   */
  async onCall (from: string, req: CallRequest): Promise<CallReply> {
    if (from === this.ctx.peerId) return await this.runCall(from, req)
    if (!this.ctx.quotas.take(from, 'calls')) throw new QuotaExceededError(`${from} has too many calls queued at ${this.ctx.peerId}`)
    try {
      return await this.runCall(from, req)
    } finally {
      this.ctx.quotas.give(from, 'calls')
    }
  }

  private async runCall (from: string, req: CallRequest): Promise<CallReply> {
    const scope: Ref[] = []
    const resultKey = objectKey(req.resultId)
    let admitted = false
    let release = (): void => {}
    let releaseFetch = (): void => {}
    const unpin: Array<() => void> = []
    let resultStored: Admitted | undefined
    try {
      if (!this.init.executor.offers(req.fn)) throw new FunctionNotFoundError(req.fn)
      const decoded = decodeArgs(req.args)
      const missing = decoded.reduce((n, a) => 'deref' in a && !this.init.objects.holds(a.deref) ? n + (a.deref.size ?? 0) : n, 0)
      // Arguments not in memory here (fetched, or restored from disk) will take room.
      const incoming = decoded.reduce((n, a) => 'deref' in a && this.ctx.store.get(objectKey(a.deref.id))?.data === undefined ? n + (a.deref.size ?? 0) : n, 0)
      const full = this.init.executor.usesSlots(req.fn) && this.init.executor.admitted >= this.init.executor.slots * DEFAULTS.maxQueuePerSlot
      if (req.maySpillBack && (missing > this.ctx.admitBytes() || full || this.underPressure() || this.init.admission.check(req.fn, incoming) === 'full')) {
        this.spilledBack++
        log('handing back %s from %s: %d argument bytes missing, %d admitted', req.fn, from, missing, this.init.executor.admitted)
        return { spillback: { ...this.init.spillbackState(), seq: 0 } }
      }
      // Functions on this peer's own thread take no slot: no wait for one, and no turn of the promise queue either.
      const slotBound = this.init.executor.usesSlots(req.fn)
      admitted = slotBound
      if (admitted) this.init.executor.admitted++
      const signal = withTimeout(this.ctx.stopSignal, req.timeoutMs, `arguments of ${req.fn}`)
      // Room for what the call will make, before its arguments come in and it starts making it.
      resultStored = this.init.admission.startNow(req.fn, incoming) ?? await this.init.admission.start(req.fn, incoming, signal)
      const pending: Array<Promise<void>> = []
      const makeRef = (desc: RefDesc): Ref => {
        const ref = this.ctx.table.refFromDesc(desc, pending)
        scope.push(ref)
        return ref
      }
      // With prefetch, arguments are fetched (in order, a slot's worth ahead)
      // while earlier calls hold the slots; without, only once a slot is ours.
      if (slotBound && !this.init.prefetch) release = await this.init.executor.acquire(req.fn, signal)
      else if (slotBound) releaseFetch = await this.init.executor.acquireFetch(req.fn, signal)
      const args = decoded.every(arg => 'value' in arg)
        ? decoded.map(arg => decodeValue(Encoding.CBOR, (arg as { value: Uint8Array }).value, makeRef))
        : await Promise.all(decoded.map(async arg => {
          if ('value' in arg) return decodeValue(Encoding.CBOR, arg.value, makeRef)
          const local = this.init.objects.holds(arg.deref)
          const { encoding, bytes, release } = await this.init.objects.fetchValue(arg.deref, signal).catch((err: Error) => {
            // Lost (its holders died), not failed: its owner can compute it again, so the caller may retry.
            throw err.name === 'ObjectLostError' ? new ArgumentLostError(`an argument of ${req.fn} was lost: ${err.message}`, { cause: err }) : err
          })
          // The argument stays in memory while the call runs.
          unpin.push(release)
          this.argBytes[local ? 'localBytes' : 'fetchedBytes'] += bytes.byteLength
          return decodeValue(encoding, bytes, makeRef)
        }))
      if (pending.length > 0) await raceSignal(Promise.all(pending), signal, `arguments of ${req.fn}`)
      if (this.init.prefetch && slotBound) {
        release = await this.init.executor.acquire(req.fn, signal)
        releaseFetch()
      }
      // Blocked in get or wait, the call lends its admission back (admission.ts).
      const value = await this.init.executor.run(req.fn, args, signal, { lend: resultStored.lend })
      if (signal?.aborted === true) {
        // The caller has given up on this call: keep nothing for it.
        throw new TimeoutError(`${req.fn} finished after its ${req.timeoutMs} ms deadline`)
      }
      if ((req.resultIds ?? []).length > 0) {
        const results = await this.describeResults(from, req, await splitReturns(value, (req.resultIds ?? []).length, req.fn), signal)
        resultStored(results.reduce((n, r) => n + (r.manifest?.size ?? 0), 0))
        return { results }
      }
      const result = await this.describeResult(from, req.resultId, resultKey, value, signal)
      resultStored(result.manifest?.size ?? 0)
      return { result }
    } catch (err) {
      const info: ErrorInfo = errorToInfo(err, this.ctx.peerId, req.fn)
      return { result: { status: ObjectStatus.FAILED, inline: new Uint8Array(0), encoding: 0, error: info, locations: [], contained: [] } }
    } finally {
      releaseFetch()
      release()
      for (const u of unpin) u()
      resultStored?.()
      if (admitted) this.init.executor.admitted--
      for (const r of scope) r.release()
    }
  }

  /**
   * Executor side: the results of a call made with `returns`, each described (inline or
   * stored here) on its own. A value whose id is empty is not wanted (a re-execution
   * for its lost siblings): Refs it holds are released and it is answered FREED.
   */
  private async describeResults (caller: string, req: CallRequest, values: unknown[], signal: AbortSignal | undefined): Promise<ObjectInfo[]> {
    const ids = req.resultIds ?? []
    const results: ObjectInfo[] = []
    try {
      for (const [i, id] of ids.entries()) {
        if (id.byteLength === 0) {
          for (const r of encodeValue(values[i]).contained) r.release()
          results.push({ status: ObjectStatus.FREED, inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] })
          continue
        }
        results.push(await this.describeResult(caller, id, objectKey(id), values[i], signal))
      }
      return results
    } catch (err) {
      // The call fails as a whole: what was stored for it here has no owner that knows of it.
      for (const id of ids.slice(0, results.length)) {
        if (id.byteLength === 0) continue
        this.ctx.store.delete(objectKey(id))
        this.init.handoffs.release(caller, objectKey(id))
      }
      for (const v of values.slice(results.length + 1)) {
        try { for (const r of encodeValue(v).contained) r.release() } catch {}
      }
      throw err
    }
  }

  /** Executor side: a return value, inline when small, else stored here for the caller (its owner). */
  private async describeResult (caller: string, resultId: Uint8Array, resultKey: string, value: unknown, signal: AbortSignal | undefined): Promise<ObjectInfo> {
    const encoded = encodeValue(value, this.hintsOf)
    const contained = encoded.contained.map(r => { this.ctx.table.pin(r.key); return r.key })
    // A Ref handed to a durable owner moves on only once that owner holds the object.
    const registrations = contained.flatMap(k => { const r = this.ctx.table.get(k)?.registered; return r === undefined ? [] : [r] })
    if (registrations.length > 0) {
      try {
        await raceSignal(Promise.all(registrations), signal, `the result of call ${resultKey}`)
      } catch (err) {
        for (const k of contained) this.ctx.table.unpin(k)
        for (const r of encoded.contained) r.release()
        throw err
      }
    }
    if (contained.length > 0) this.init.handoffs.hold(resultKey, caller, contained)
    const containedDescs: RefDesc[] = encoded.contained.map(r => ({ id: r.id, owner: r.owner, ...this.ctx.table.hints(r.key) }))
    // Refs in the return value move to the caller: this peer's handles go.
    for (const r of encoded.contained) r.release()
    if (encoded.bytes.byteLength <= this.ctx.inlineThreshold) {
      return { status: ObjectStatus.INLINE, inline: encoded.bytes, encoding: encoded.encoding, locations: [], contained: containedDescs }
    }
    const manifest = await makeManifest(encoded.bytes, encoded.encoding, this.ctx.chunkSize, this.ctx.sha256, this.ctx.transfer.uplinkRate())
    await this.init.objects.storeBytes(resultKey, resultId, caller, manifest, encoded.bytes, `the result of call ${resultKey}`, signal)
    return { status: ObjectStatus.STORED, inline: new Uint8Array(0), encoding: encoded.encoding, manifest, locations: [this.ctx.peerId], contained: containedDescs }
  }
}
