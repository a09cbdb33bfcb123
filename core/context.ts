/**
 * What every part of a peer is given: the building blocks the facade (mesh.ts)
 * makes once and shares. Parts take this and, for whatever they need of each
 * other, a small interface of their own; none of them imports another part, so
 * core/ has no import cycles (test/core-imports.test.ts keeps it so).
 */
import type { ControlChannels } from './channel.ts'
import type { Hasher } from './chunks.ts'
import type { Membership } from './membership.ts'
import type { OwnershipTable } from './ownership.ts'
import type { PeerQuotas } from './quota.ts'
import type { ObjectStore } from './store.ts'
import type { Transfer } from './transfer.ts'

export interface PeerContext {
  readonly peerId: string
  readonly table: OwnershipTable
  readonly store: ObjectStore
  readonly channels: ControlChannels
  readonly transfer: Transfer
  readonly membership: Membership
  readonly quotas: PeerQuotas
  /** values whose encoding is at most this many bytes travel inline */
  readonly inlineThreshold: number
  readonly chunkSize: number
  readonly sha256: Hasher
  readonly heartbeatMs: number
  /** aborts when the mesh stops */
  readonly stopSignal: AbortSignal
  /** the mesh's stop signal, joined with the caller's when there is one */
  combine: (signal: AbortSignal | undefined) => AbortSignal
  /** Argument bytes this peer can take in now: up to 80% of its store (DESIGN.md section 5). */
  admitBytes: () => number
}

