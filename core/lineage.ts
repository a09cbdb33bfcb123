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

export interface LineageRecord {
  fn: string
  options: CallOptions
  args: Uint8Array
}

export interface LineageInit {
  table: Pick<OwnershipTable, 'reopen' | 'get' | 'unpin'>
  /** runs a call again for an existing result object (calls.ts) */
  rerun: (fn: string, args: Uint8Array, options: CallOptions, result: { key: string, id: Uint8Array }) => Promise<void>
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

  /** Every copy of an owned call result is lost, so the call runs again. */
  reconstruct (key: string): void {
    const lineage = this.records.get(key)
    if (lineage === undefined) return
    this.reconstructions++
    log('every copy of %s is lost: running %s again', key, lineage.fn)
    const oldContained = this.init.table.reopen(key)
    // The old copies' tree is gone with them.
    this.init.copiesLost(key)
    const id = this.init.table.get(key)?.id as Uint8Array
    // Its arguments are not held for it: placement has no hints, and a freed one fails the call.
    // A peer it was required to run on is most likely the one that died: prefer it instead.
    const options: CallOptions = { ...lineage.options, peer: undefined, prefer: lineage.options.peer ?? lineage.options.prefer }
    void this.init.rerun(lineage.fn, lineage.args, options, { key, id }).finally(() => {
      for (const k of oldContained) this.init.table.unpin(k)
    })
  }
}
