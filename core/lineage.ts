/**
 * Lineage: how each call result this peer owns was made (the function, its call
 * options and its encoded arguments), kept while the result lives so that it can
 * be computed again when every copy of it is lost (Ray's ObjectRecoveryManager).
 *
 * It does not keep the arguments alive: an argument freed since (nobody held it)
 * makes a reconstruction fail with ObjectLostError. Ray pins arguments for
 * lineage instead; we keep reclamation exact, and say so in PROTOCOL.md.
 *
 * Answers no message: objects.ts asks it to reconstruct when a `locate` finds
 * no complete copy left; the call runs again through the caller side (calls.ts).
 */
import { logger } from '@libp2p/logger'
import type { OwnershipTable } from './ownership.ts'
import type { CallOptions } from './types.ts'

const log = logger('refmesh:lineage')

/** How an owned call result was made; the results of one call with `returns` share one record. */
export interface LineageRecord {
  fn: string
  options: CallOptions
  args: Uint8Array
  /** multiple return values: every result of the call, in order */
  siblings?: Array<{ key: string, id: Uint8Array }>
}

export interface LineageInit {
  table: Pick<OwnershipTable, 'reopen' | 'get' | 'unpin'>
  /** runs a call again for an existing result object (calls.ts) */
  rerun: (fn: string, args: Uint8Array, options: CallOptions, result: { key: string, id: Uint8Array }, returns?: Array<{ key: string, id: Uint8Array } | undefined>) => Promise<void>
  /** whether an owned call result that was computed has no complete copy left (objects.ts) */
  isLost: (key: string) => boolean
  /** forgets what is known of the lost copies (the owner's distribution tree) */
  copiesLost: (key: string) => void
}

export class Lineage {
  private readonly records = new Map<string, LineageRecord>()
  private readonly init: LineageInit
  /** calls run again because every copy of their result was lost */
  reconstructions = 0

  constructor (init: LineageInit) {
    this.init = init
  }

  record (key: string, record: LineageRecord): void {
    this.records.set(key, record)
  }

  /** The call's arguments were encoded again (location hints of arguments computed since). */
  updateArgs (key: string, args: Uint8Array): void {
    const record = this.records.get(key)
    if (record !== undefined) record.args = args
  }

  has (key: string): boolean {
    return this.records.has(key)
  }

  drop (key: string): void {
    this.records.delete(key)
  }

  /**
   * Every copy of an owned call result is lost, so the call runs again. For a call
   * with `returns`, once for every sibling lost by then (the executor discards the
   * values of the others, which still have copies or were freed).
   */
  reconstruct (key: string): void {
    const lineage = this.records.get(key)
    if (lineage === undefined) return
    const lost = (lineage.siblings ?? [{ key, id: this.init.table.get(key)?.id as Uint8Array }]).map(s => s.key === key || this.init.isLost(s.key) ? s : undefined)
    this.reconstructions++
    log('every copy of %s is lost: running %s again for %d result(s)', key, lineage.fn, lost.filter(s => s !== undefined).length)
    const oldContained: string[] = []
    for (const s of lost) {
      if (s === undefined) continue
      oldContained.push(...this.init.table.reopen(s.key))
      // The old copies' tree is gone with them.
      this.init.copiesLost(s.key)
    }
    // Its arguments are not held for it: placement has no hints, and a freed one fails the call.
    // A peer it was required to run on is most likely the one that died: prefer it instead.
    const options: CallOptions = { ...lineage.options, peer: undefined, prefer: lineage.options.peer ?? lineage.options.prefer }
    const first = lost.find(s => s !== undefined) as { key: string, id: Uint8Array }
    void this.init.rerun(lineage.fn, lineage.args, options, first, lineage.siblings === undefined ? undefined : lost).finally(() => {
      for (const k of oldContained) this.init.table.unpin(k)
    })
  }
}
