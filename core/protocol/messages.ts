/** The messages of refmesh.proto, as codecs. Field numbers must match the .proto file. */
import { message } from './wire.ts'
import type { ErrorInfo } from '../errors.ts'
import type { ChunkFlow, PeerLink, PeerState } from '../membership.ts'

export const ObjectStatus = {
  INLINE: 1,
  STORED: 2,
  FAILED: 3,
  FREED: 4,
  PENDING: 5
} as const
export type ObjectStatusCode = typeof ObjectStatus[keyof typeof ObjectStatus]

export const ChunkStatus = { OK: 0, NOT_FOUND: 1, NOT_YET: 2, BITFIELD: 3, REFUSED: 4, SPREAD: 5 } as const

export interface PeerAddrs { peer: string, addrs: string[] }
/** A Ref on the wire; size and locations are placement hints, possibly stale. */
export interface RefDesc { id: Uint8Array, owner: string, size?: number, locations?: string[] }
export interface Manifest { size: number, chunkSize: number, hashes: Uint8Array[], encoding: number }
export interface ObjectInfo {
  status: number
  inline: Uint8Array
  encoding: number
  manifest?: Manifest
  locations: string[]
  error?: ErrorInfo
  contained: RefDesc[]
}
export interface Hello { functions: string[], addrs: string[], peers: PeerAddrs[], state?: PeerState }
export interface CallRequest { resultId: Uint8Array, fn: string, args: Uint8Array, timeoutMs: number, argBytes: number, maySpillBack: boolean, resultIds?: Uint8Array[] }
export interface CallReply { result?: ObjectInfo, spillback?: PeerState, results?: ObjectInfo[] }
export interface ResultAck { resultId: Uint8Array }
export interface Locate { id: Uint8Array, wait: boolean, fetch: boolean, timeoutMs: number, denied?: string[] }
export interface LocateReply { object?: ObjectInfo }
export interface Borrow { id: Uint8Array, add: boolean }
export interface Free { ids: Uint8Array[] }
export type StatsRequest = Record<string, never>
export interface StatsReply { json: string }
export type Ack = Record<string, never>
export interface Progress { id: Uint8Array, have: Uint8Array, complete: boolean }
export interface Prefetch { object: RefDesc }
/** What a published name stands for; `handoff` is acknowledged (ResultAck) once the asker has registered as a borrower. */
export interface NameLookup { name: string }
export interface NameReply { object?: RefDesc, handoff: Uint8Array }
/** Asks a peer to become the owner of an object the sender made (durable put). */
export interface Adopt { id: Uint8Array, object: ObjectInfo }

export interface Envelope {
  id: number
  reply: boolean
  error?: ErrorInfo
  hello?: Hello
  call?: CallRequest
  callReply?: CallReply
  resultAck?: ResultAck
  locate?: Locate
  locateReply?: LocateReply
  borrow?: Borrow
  free?: Free
  stats?: StatsRequest
  statsReply?: StatsReply
  ack?: Ack
  progress?: Progress
  prefetch?: Prefetch
  adopt?: Adopt
  nameLookup?: NameLookup
  nameReply?: NameReply
}

export interface ChunkRequest { id: Uint8Array, indices: number[], bitfield: boolean, watch?: boolean, spread?: boolean }
export interface ChunkHeader { id: Uint8Array, index: number, status: number }

export const ErrorInfoCodec = message<ErrorInfo>('ErrorInfo', [
  { no: 1, name: 'name', type: 'string' },
  { no: 2, name: 'message', type: 'string' },
  { no: 3, name: 'stack', type: 'string' },
  { no: 4, name: 'peer', type: 'string' },
  { no: 5, name: 'fn', type: 'string' },
  { no: 6, name: 'remote', type: 'bool' }
])

export const PeerAddrsCodec = message<PeerAddrs>('PeerAddrs', [
  { no: 1, name: 'peer', type: 'string' },
  { no: 2, name: 'addrs', type: 'string', repeated: true }
])

export const RefDescCodec = message<RefDesc>('RefDesc', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'owner', type: 'string' },
  { no: 3, name: 'size', type: 'uint64' },
  { no: 4, name: 'locations', type: 'string', repeated: true }
])

export const ManifestCodec = message<Manifest>('Manifest', [
  { no: 1, name: 'size', type: 'uint64' },
  { no: 2, name: 'chunkSize', type: 'uint32' },
  { no: 3, name: 'hashes', type: 'bytes', repeated: true },
  { no: 4, name: 'encoding', type: 'uint32' }
])

export const ObjectInfoCodec = message<ObjectInfo>('ObjectInfo', [
  { no: 1, name: 'status', type: 'uint32' },
  { no: 2, name: 'inline', type: 'bytes' },
  { no: 3, name: 'encoding', type: 'uint32' },
  { no: 4, name: 'manifest', type: ManifestCodec },
  { no: 5, name: 'locations', type: 'string', repeated: true },
  { no: 6, name: 'error', type: ErrorInfoCodec },
  { no: 7, name: 'contained', type: RefDescCodec, repeated: true }
])

const PeerLinkCodec = message<PeerLink>('PeerLink', [
  { no: 1, name: 'peer', type: 'string' },
  { no: 2, name: 'transport', type: 'string' }
])

const ChunkFlowCodec = message<ChunkFlow>('ChunkFlow', [
  { no: 1, name: 'from', type: 'string' },
  { no: 2, name: 'bytesPerSecond', type: 'double' }
])

export const PeerStateCodec = message<PeerState>('PeerState', [
  { no: 1, name: 'peer', type: 'string' },
  { no: 2, name: 'seq', type: 'uint64' },
  { no: 3, name: 'functions', type: 'string', repeated: true },
  { no: 4, name: 'addrs', type: 'string', repeated: true },
  { no: 5, name: 'slots', type: 'uint32' },
  { no: 6, name: 'queued', type: 'uint32' },
  { no: 7, name: 'running', type: 'uint32' },
  { no: 8, name: 'storeUsed', type: 'uint64' },
  { no: 9, name: 'storeCapacity', type: 'uint64' },
  { no: 10, name: 'spilledBytes', type: 'uint64' },
  { no: 11, name: 'admitBytes', type: 'uint64' },
  { no: 12, name: 'bandwidth', type: 'double' },
  { no: 13, name: 'pooledFunctions', type: 'string', repeated: true },
  { no: 14, name: 'runtime', type: 'string' },
  { no: 15, name: 'links', type: PeerLinkCodec, repeated: true },
  { no: 16, name: 'flows', type: ChunkFlowCodec, repeated: true },
  { no: 17, name: 'names', type: 'string', repeated: true }
])

const HelloCodec = message<Hello>('Hello', [
  { no: 1, name: 'functions', type: 'string', repeated: true },
  { no: 2, name: 'addrs', type: 'string', repeated: true },
  { no: 3, name: 'peers', type: PeerAddrsCodec, repeated: true },
  { no: 4, name: 'state', type: PeerStateCodec }
])

const CallRequestCodec = message<CallRequest>('CallRequest', [
  { no: 1, name: 'resultId', type: 'bytes' },
  { no: 2, name: 'fn', type: 'string' },
  { no: 3, name: 'args', type: 'bytes' },
  { no: 4, name: 'timeoutMs', type: 'uint32' },
  { no: 5, name: 'argBytes', type: 'uint64' },
  { no: 6, name: 'maySpillBack', type: 'bool' },
  { no: 7, name: 'resultIds', type: 'bytes', repeated: true }
])

const CallReplyCodec = message<CallReply>('CallReply', [
  { no: 1, name: 'result', type: ObjectInfoCodec },
  { no: 2, name: 'spillback', type: PeerStateCodec },
  { no: 3, name: 'results', type: ObjectInfoCodec, repeated: true }
])

const ResultAckCodec = message<ResultAck>('ResultAck', [
  { no: 1, name: 'resultId', type: 'bytes' }
])

const LocateCodec = message<Locate>('Locate', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'wait', type: 'bool' },
  { no: 3, name: 'fetch', type: 'bool' },
  { no: 4, name: 'timeoutMs', type: 'uint32' },
  { no: 5, name: 'denied', type: 'string', repeated: true }
])

const LocateReplyCodec = message<LocateReply>('LocateReply', [
  { no: 1, name: 'object', type: ObjectInfoCodec }
])

const BorrowCodec = message<Borrow>('Borrow', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'add', type: 'bool' }
])

const FreeCodec = message<Free>('Free', [
  { no: 1, name: 'ids', type: 'bytes', repeated: true }
])

const EmptyCodec = message<Record<string, never>>('Empty', [])

const ProgressCodec = message<Progress>('Progress', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'have', type: 'bytes' },
  { no: 3, name: 'complete', type: 'bool' }
])

const PrefetchCodec = message<Prefetch>('Prefetch', [
  { no: 1, name: 'object', type: RefDescCodec }
])

const NameLookupCodec = message<NameLookup>('NameLookup', [
  { no: 1, name: 'name', type: 'string' }
])

const NameReplyCodec = message<NameReply>('NameReply', [
  { no: 1, name: 'object', type: RefDescCodec },
  { no: 2, name: 'handoff', type: 'bytes' }
])

const AdoptCodec = message<Adopt>('Adopt', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'object', type: ObjectInfoCodec }
])

const StatsReplyCodec = message<StatsReply>('StatsReply', [
  { no: 1, name: 'json', type: 'string' }
])

export const EnvelopeCodec = message<Envelope>('Envelope', [
  { no: 1, name: 'id', type: 'uint32' },
  { no: 2, name: 'reply', type: 'bool' },
  { no: 3, name: 'error', type: ErrorInfoCodec },
  { no: 4, name: 'hello', type: HelloCodec },
  { no: 5, name: 'call', type: CallRequestCodec },
  { no: 6, name: 'callReply', type: CallReplyCodec },
  { no: 7, name: 'resultAck', type: ResultAckCodec },
  { no: 8, name: 'locate', type: LocateCodec },
  { no: 9, name: 'locateReply', type: LocateReplyCodec },
  { no: 10, name: 'borrow', type: BorrowCodec },
  { no: 11, name: 'free', type: FreeCodec },
  { no: 12, name: 'stats', type: EmptyCodec },
  { no: 13, name: 'statsReply', type: StatsReplyCodec },
  { no: 14, name: 'ack', type: EmptyCodec },
  { no: 15, name: 'progress', type: ProgressCodec },
  { no: 16, name: 'prefetch', type: PrefetchCodec },
  { no: 17, name: 'adopt', type: AdoptCodec },
  { no: 18, name: 'nameLookup', type: NameLookupCodec },
  { no: 19, name: 'nameReply', type: NameReplyCodec }
])

export const ChunkRequestCodec = message<ChunkRequest>('ChunkRequest', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'indices', type: 'uint32', repeated: true },
  { no: 3, name: 'bitfield', type: 'bool' },
  { no: 4, name: 'watch', type: 'bool' },
  { no: 5, name: 'spread', type: 'bool' }
])

export const ChunkHeaderCodec = message<ChunkHeader>('ChunkHeader', [
  { no: 1, name: 'id', type: 'bytes' },
  { no: 2, name: 'index', type: 'uint32' },
  { no: 3, name: 'status', type: 'uint32' }
])
