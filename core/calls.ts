/**
 * Calls, caller side: what a caller owes for each call it made until the call's
 * result is settled (Ray's TaskManager and normal-task submitter). remote()
 * encodes the arguments, pins the Refs they mention and makes the result object
 * this peer owns; dispatch() waits for owned arguments, PLACES the call (the
 * scheduler picks the executor; flow control holds calls an executor has no
 * room for), sends it, and retries it elsewhere when the executor dies, is
 * refused by a quota or hands it back (spillback). onReply() records where the
 * result is and unpins the arguments. Replicated calls (quorum) are replicas.ts.
 *
 * Answers no message (a call is answered by serve.ts); it sends `call` and `resultAck`.
 */
import { logger } from '@libp2p/logger'
import { encodeArgs } from './codec.ts'
import { DEFAULTS } from './constants.ts'
import type { PeerContext } from './context.ts'
import { PeerDiedError, ProtocolError, QuotaExceededError, errorToInfo, infoToError } from './errors.ts'
import type { Executor } from './executor.ts'
import type { Lineage } from './lineage.ts'
import { ObjectStatus } from './protocol/messages.ts'
import type { CallReply, CallRequest, ObjectInfo } from './protocol/messages.ts'
import { Ref, SharedRef, newObjectId } from './ref.ts'
import type { ArgInfo, CandidateView, Scheduler } from './scheduler.ts'
import { checkReturns } from './returns.ts'
import { raceSignal, withTimeout } from './signals.ts'
import type { CallOptions, CallState, PutOptions, SendOrder } from './types.ts'

const log = logger('refmesh:calls')

export interface CallsInit {
  ctx: PeerContext
  scheduler: Scheduler
  executor: Pick<Executor, 'offers' | 'slots' | 'usesSlots'>
  lineage: Pick<Lineage, 'record' | 'updateArgs'>
  objects: { put: <T>(value: T, options?: PutOptions) => Ref<T> }
  /** runs a call placed on this peer (serve.ts), without the wire */
  serveLocal: (from: string, req: CallRequest) => Promise<CallReply>
  /** a result's Refs are registered here: the executor (this peer) may unpin them (handoffs.ts) */
  releaseHandoff: (from: string, key: string) => void
  /** a call with `replicas` > 1 (replicas.ts) */
  replicated: (fn: string, args: unknown[], options: CallOptions) => Ref
}

export class Calls {
  private readonly init: CallsInit
  private readonly ctx: PeerContext
  /** calls this peer made */
  submitted = 0
  /** calls executors handed back to this peer */
  spillbacksReceived = 0

  constructor (init: CallsInit) {
    this.ctx = init.ctx
    this.init = init
  }

  remote (fn: string, args: unknown[], options: CallOptions, order?: SendOrder): Ref {
    if ((options.replicas ?? 1) > 1) return this.init.replicated(fn, args, options)
    return this.submit(fn, args, { ...options, returns: undefined }, order)[0]
  }

  /** Submits a call; its one Ref, or its `options.returns` Refs (multiple return values, returns.ts). */
  submit (fn: string, args: unknown[], options: CallOptions, order?: SendOrder): Ref[] {
    if (options.returns !== undefined) {
      checkReturns(options.returns, DEFAULTS.maxReturns)
      if ((options.replicas ?? 1) > 1) throw new RangeError('a replicated call has one result: returns cannot be combined with replicas')
    }
    const temporaries: Ref[] = []
    // Large plain arguments become objects of their own, so calls stay small and
    // the executor pulls the bytes as chunks.
    const prepared = args.map(arg => {
      if (arg instanceof Ref || arg instanceof SharedRef) return arg
      if (ArrayBuffer.isView(arg) && arg.byteLength > this.ctx.inlineThreshold) {
        const tmp = this.init.objects.put(arg)
        temporaries.push(tmp)
        return tmp
      }
      return arg
    })
    const encoded = encodeArgs(prepared, this.hintsOf)
    const pinned = encoded.contained.map(r => { this.ctx.table.pin(r.key); return r.key })
    const results = Array.from({ length: options.returns ?? 1 }, () => this.ctx.table.createOwned(newObjectId(), { state: 'pending', lineage: { fn } }))
    const returns = options.returns === undefined ? undefined : results.map(r => ({ key: r.key, id: r.id }))
    const call: CallState = { fn, args: prepared, options, result: { key: results[0].key, id: results[0].id }, pinned, temporaries, order, returns }
    this.submitted++
    const lineage = { fn, options, args: encoded.bytes, siblings: returns }
    for (const r of results) this.init.lineage.record(r.key, lineage)
    void this.dispatch(call, encoded.bytes)
    return results
  }

  readonly hintsOf = (ref: Ref): { size: number, locations: string[] } | undefined => this.ctx.table.hints(ref.key)

  /** Runs a call again for a result object that exists already (lineage reconstruction); its arguments are not pinned for it. */
  async rerun (fn: string, args: Uint8Array, options: CallOptions, result: { key: string, id: Uint8Array }, returns?: Array<{ key: string, id: Uint8Array } | undefined>): Promise<void> {
    await this.dispatch({ fn, args: [], options, result, pinned: [], temporaries: [], returns }, args)
  }

  private async dispatch (call: CallState, args: Uint8Array): Promise<void> {
    const key = call.result.key
    const signal = withTimeout(this.ctx.stopSignal, call.options.timeoutMs, `call of ${call.fn}`)
    const exclude = new Set<string>()
    let tries = 1 + (call.options.retries ?? DEFAULTS.retries)
    /** times an argument was lost under the call, and when first */
    let losses = 0
    let firstLoss: number | undefined
    let spillbacks = 0
    let reply: CallReply | undefined
    let executor = ''
    try {
      const pendingAtSubmit = call.args.some(a => a instanceof Ref && this.ctx.table.get(a.key)?.owned?.state === 'pending')
      // Without arguments still being computed, the call is written before this function first awaits.
      const argInfo = this.readyArguments(call) ?? await this.resolveArguments(call, signal)
      const argBytes = argInfo.reduce((n, a) => n + a.size, 0)
      // Arguments still being computed at submit time had no location hints yet: encode them again now.
      if (pendingAtSubmit) {
        args = encodeArgs(call.args, this.hintsOf, true).bytes
        this.init.lineage.updateArgs(key, args)
      }
      if (this.candidates(call.fn).length === 0) await this.waitForOffer(call.fn, signal)
      if (call.order !== undefined) {
        await raceSignal(call.order.after, signal, `call of ${call.fn}`)
        await call.order.bind?.(call)
        call.args[call.order.seqIndex] = call.order.seq()
        args = encodeArgs(call.args, this.hintsOf, true).bytes
      }
      while (reply?.result === undefined && (reply?.results ?? []).length === 0) {
        // Flow control: a caller keeps at most a few calls queued per slot on each executor
        // of a slot-bound function, and holds the rest until one finishes.
        // One view of the candidates for the check and the placement (no await between them).
        let candidates: CandidateView[]
        for (let woken = false; ; woken = true) {
          candidates = this.candidates(call.fn, call.options.peer)
          const eligible = candidates.filter(c => !exclude.has(c.peer) && (call.options.peer === undefined || c.peer === call.options.peer))
          if (eligible.length === 0 || eligible.some(c => this.init.scheduler.hasRoom(c))) break
          await this.init.scheduler.nextFinish(signal, woken)
        }
        executor = this.init.scheduler.place({ fn: call.fn, candidates, args: argInfo, exclude, options: call.options })
        const request: CallRequest = {
          resultId: call.result.id,
          fn: call.fn,
          args,
          timeoutMs: call.options.timeoutMs ?? 0,
          argBytes,
          // A required peer, or a call handed back too often, must be queued rather than handed back again.
          maySpillBack: call.options.peer === undefined && spillbacks < DEFAULTS.maxSpillbacks,
          resultIds: call.returns?.map(r => r?.id ?? new Uint8Array(0)) ?? []
        }
        const started = performance.now()
        this.init.scheduler.started(executor)
        try {
          const replying = executor === this.ctx.peerId
            ? raceSignal(this.init.serveLocal(this.ctx.peerId, request), signal, `call of ${call.fn}`)
            : this.ctx.channels.request(executor, { call: request }, { signal: call.options.timeoutMs ? signal : undefined }).then(env => env.callReply)
          // The next call to the same actor may go now: the stream keeps them in this order.
          call.order?.sent()
          reply = await replying
          if (reply === undefined) throw new ProtocolError(`${executor} sent an empty call reply`)
          if (reply.result?.status === ObjectStatus.FAILED && reply.result.error?.name === 'ArgumentLostError' && signal?.aborted !== true) {
            // An argument's holders died as the executor fetched it; its owner computes it
            // again, and the call goes again once the owned ones are back. Not one of the
            // call's tries (the call did nothing wrong, and a long churn would use them all
            // up): bounded by the call's timeout, or `argumentLossBoundMs` without one.
            firstLoss ??= performance.now()
            if (performance.now() - firstLoss > DEFAULTS.argumentLossBoundMs) throw infoToError(reply.result.error)
            losses++
            log('call %s on %s lost an argument (%s); sending it again', call.fn, executor, reply.result.error.message)
            reply = undefined
            await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(2_000, 100 * 2 ** Math.min(losses, 5)))), signal, `call of ${call.fn}`)
            await this.resolveArguments(call, signal)
            continue
          }
        } catch (err) {
          if (err instanceof QuotaExceededError && signal?.aborted !== true && spillbacks < DEFAULTS.maxSpillbacks) {
            // Refused for now, like a spillback: back off, and place it again.
            spillbacks++
            exclude.add(executor)
            if (this.candidates(call.fn).every(c => exclude.has(c.peer))) exclude.clear()
            await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 20 * 2 ** spillbacks))), signal, `call of ${call.fn}`)
            continue
          }
          if (err instanceof PeerDiedError && call.order?.peerDied !== undefined && signal?.aborted !== true) {
            // An actor's peer died under the call: it runs again on the restarted actor, or fails.
            await call.order.peerDied(executor, err, signal)
            await call.order.bind?.(call)
            call.args[call.order.seqIndex] = call.order.seq()
            args = encodeArgs(call.args, this.hintsOf, true).bytes
            continue
          }
          if (!(err instanceof PeerDiedError) || --tries <= 0 || signal?.aborted === true) throw err
          if (call.options.peer !== undefined) {
            // Required there: a dropped connection is worth another try, a dead peer is not.
            if (this.ctx.membership.isDead(executor)) throw err
            log('call %s on %s failed (%s); trying it again', call.fn, executor, err.message)
            await raceSignal(new Promise(resolve => setTimeout(resolve, 500 * 2 ** (2 - Math.min(2, tries)))), signal, `call of ${call.fn}`)
            continue
          }
          log('call %s on %s failed (%s); retrying elsewhere', call.fn, executor, err.message)
          exclude.add(executor)
          continue
        } finally {
          this.init.scheduler.finished(executor)
        }
        if (reply.spillback !== undefined) {
          // Handed back: learn the executor's state now and place the call elsewhere.
          this.spillbacksReceived++
          spillbacks++
          if (reply.spillback.peer === executor) this.ctx.membership.heard(executor, { state: reply.spillback })
          exclude.add(executor)
          if (this.candidates(call.fn).every(c => exclude.has(c.peer))) {
            // Everyone is full: back off, then try them all again.
            await raceSignal(new Promise(resolve => setTimeout(resolve, Math.min(1000, 20 * 2 ** spillbacks))), signal, `call of ${call.fn}`)
            exclude.clear()
          }
          continue
        }
        this.init.scheduler.observe(call.fn, performance.now() - started)
      }
      if (call.returns === undefined) await this.onReply(call.result.id, key, reply?.result as ObjectInfo, executor)
      else await this.onReplies(call.returns, reply as CallReply, executor)
    } catch (err) {
      for (const r of call.returns ?? [call.result]) {
        if (r !== undefined && this.ctx.table.get(r.key)?.owned?.state === 'pending') this.ctx.table.settle(r.key, { state: 'failed', error: errorToInfo(err, this.ctx.peerId, call.fn), locations: [], contained: [] })
      }
    } finally {
      // A call that failed before it was sent must not hold back the actor's next ones.
      call.order?.sent()
      // Pins and temporaries hold the arguments for the call's first run only.
      for (const k of call.pinned) this.ctx.table.unpin(k)
      for (const t of call.temporaries) t.release()
      call.pinned = []
      call.temporaries = []
    }
  }

  /** resolveArguments when none of the owned arguments is still pending or failed (no wait); undefined otherwise. */
  private readyArguments (call: CallState): ArgInfo[] | undefined {
    const info: ArgInfo[] = []
    for (const arg of call.args) {
      if (!(arg instanceof Ref)) continue
      const state = this.ctx.table.get(arg.key)?.owned?.state
      if (state === 'pending' || state === 'failed') return undefined
      const hints = this.ctx.table.hints(arg.key)
      if (hints !== undefined) info.push(hints)
    }
    return info
  }

  /** Waits for the owned objects among the dereferenced arguments; returns where each argument is and its size. */
  private async resolveArguments (call: CallState, signal: AbortSignal | undefined): Promise<ArgInfo[]> {
    const info: ArgInfo[] = []
    for (const arg of call.args) {
      if (!(arg instanceof Ref)) continue
      const owned = this.ctx.table.get(arg.key)?.owned
      if (owned !== undefined) {
        await raceSignal(owned.ready, signal, `arguments of ${call.fn}`)
        if (owned.state === 'failed' && owned.error !== undefined) throw infoToError(owned.error)
      }
      const hints = this.ctx.table.hints(arg.key)
      if (hints !== undefined) info.push(hints)
    }
    return info
  }

  /**
   * A function nobody offers yet may be registered a moment from now (a peer
   * joining, a register() whose hello is on its way): wait a short grace
   * period for an offer before the call fails with FunctionNotFoundError. A
   * function that peers offered before and that churn took away waits longer
   * (`functionReturnGraceMs`) for a peer that offers it to join.
   */
  async waitForOffer (fn: string, signal: AbortSignal | undefined): Promise<void> {
    let unsubscribe = (): void => {}
    const offered = new Promise<void>(resolve => {
      unsubscribe = this.ctx.membership.onChange(() => { if (this.candidates(fn).length > 0) resolve() })
    })
    const graceMs = this.ctx.membership.wasOffered(fn) ? DEFAULTS.functionReturnGraceMs : DEFAULTS.functionOfferGraceMs
    const grace = withTimeout(signal, graceMs, 'grace') as AbortSignal
    try {
      await raceSignal(offered, grace, 'grace')
    } catch {
      if (signal?.aborted === true) throw signal.reason
    } finally {
      unsubscribe()
    }
  }

  /** Live peers offering `fn` (this one included), as the scheduler sees them. */
  candidates (fn: string, required?: string): CandidateView[] {
    const views: CandidateView[] = this.ctx.membership.offering(fn, required).map(p => ({
      peer: p.peer,
      slots: p.state?.slots ?? 1,
      load: (p.state?.queued ?? 0) + (p.state?.running ?? 0),
      admitBytes: p.state?.admitBytes ?? Infinity,
      bandwidth: p.state?.bandwidth ?? DEFAULTS.bandwidthBytesPerSecond,
      limit: p.state?.pooledFunctions.includes(fn) === true ? (p.state.slots * DEFAULTS.maxQueuePerSlot) : Infinity
    }))
    if (this.init.executor.offers(fn)) {
      // Our own queue is counted exactly by the scheduler's in-flight count.
      views.push({
        peer: this.ctx.peerId,
        slots: this.init.executor.slots,
        load: 0,
        admitBytes: this.ctx.admitBytes(),
        bandwidth: this.ctx.transfer.bandwidth(),
        limit: this.init.executor.usesSlots(fn) ? this.init.executor.slots * DEFAULTS.maxQueuePerSlot : Infinity
      })
    }
    return views
  }

  /** Records the results of a call made with `returns` (all of them fail when the call failed as a whole). */
  private async onReplies (returns: Array<{ key: string, id: Uint8Array } | undefined>, reply: CallReply, executor: string): Promise<void> {
    const results = reply.results ?? []
    if (results.length !== returns.length) {
      if (reply.result?.status !== ObjectStatus.FAILED) throw new ProtocolError(`${executor} answered a call of ${returns.length} results with ${results.length}`)
      for (const r of returns) if (r !== undefined) this.ctx.table.settle(r.key, { state: 'failed', error: reply.result.error, locations: [], contained: [] })
      return
    }
    await Promise.all(returns.map(async (r, i) => {
      if (r !== undefined) await this.onReply(r.id, r.key, results[i], executor)
    }))
  }

  /** Records the result of a call this peer owns, as its executor described it. */
  private async onReply (resultId: Uint8Array, key: string, info: ObjectInfo, executor: string): Promise<void> {
    const pending: Array<Promise<void>> = []
    const contained = info.contained.map(desc => this.ctx.table.pinDesc(desc, pending))
    try {
      if (pending.length > 0) await Promise.all(pending)
    } finally {
      if (info.contained.length > 0) this.ackResult(executor, key, resultId)
    }
    switch (info.status) {
      case ObjectStatus.INLINE: {
        if (this.ctx.table.get(key) !== undefined) {
          if (!this.ctx.store.tryReserve(info.inline.byteLength)) await this.ctx.store.reserve(info.inline.byteLength, `the result ${key}`, this.ctx.stopSignal)
          if (this.ctx.table.get(key) !== undefined) this.ctx.store.putComplete(key, resultId, this.ctx.peerId, { size: info.inline.byteLength, chunkSize: this.ctx.chunkSize, hashes: [], encoding: info.encoding }, info.inline, true)
          else this.ctx.store.unreserve(info.inline.byteLength)
        }
        this.ctx.table.settle(key, { state: 'ready', inline: true, encoding: info.encoding, size: info.inline.byteLength, locations: [this.ctx.peerId], contained })
        break
      }
      case ObjectStatus.STORED:
        if (info.manifest === undefined) throw new ProtocolError('STORED result without a manifest')
        this.ctx.table.settle(key, { state: 'ready', inline: false, encoding: info.encoding, size: info.manifest.size, manifest: info.manifest, locations: info.locations, contained })
        break
      default:
        this.ctx.table.settle(key, { state: 'failed', error: info.error, locations: [], contained })
    }
  }

  private ackResult (executor: string, key: string, resultId: Uint8Array): void {
    if (executor === this.ctx.peerId) {
      this.init.releaseHandoff(this.ctx.peerId, key)
      return
    }
    this.ctx.channels.send(executor, { resultAck: { resultId } }).catch((err: Error) => { log('result ack to %s failed: %s', executor, err.message) })
  }
}
