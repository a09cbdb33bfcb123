/**
 * Writes core/protocol/vectors/*.json from the project's own codecs. Run it only when the
 * protocol changes on purpose (and say so in PROTOCOL.md); test/vectors.test.ts checks the
 * codecs against the files, so a codec that changes alone fails the tests.
 *   node scripts/make-vectors.ts
 */
import { createHash, createHmac } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { EnvelopeCodec, PeerStateCodec, ChunkRequestCodec, ChunkHeaderCodec, ObjectStatus, ChunkStatus } from '../core/protocol/messages.ts'
import { encodeVarint } from '../core/protocol/framing.ts'
import { encodeArgs, encodeValue } from '../core/codec.ts'
import { AUTH_PROTOCOL, authMessage } from '../core/auth.ts'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { STATE_TOPIC } from '../core/gossip.ts'
import { CHUNK_PROTOCOL } from '../core/pull.ts'
import { hex, toFields } from '../test/vector-fields.ts'
import { CBOR_ROWS, evalRow } from '../test/cbor-rows.ts'
import { Ref } from '../core/ref.ts'

const dir = new URL('../core/protocol/vectors/', import.meta.url)
const write = (name: string, data: unknown): void => { writeFileSync(new URL(name, dir), JSON.stringify(data, null, 2) + '\n') }
const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts))
const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest())

async function peer (seedByte: number): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seedByte))).toString()
}
const A = await peer(1)
const B = await peer(2)
const C = await peer(3)
const id = (byte: number): Uint8Array => new Uint8Array(16).map((_, i) => (byte + i) & 255)
const OBJ = id(0x10)
const RESULT = id(0xa0)
const tracker = { dropHandle () {}, dupHandle (r: Ref<unknown>) { return r } }
const ref = new Ref(OBJ, A, tracker)

// ---------------------------------------------------------------- control
const big = { size: 2_500_000, chunkSize: 1_048_576, encoding: 1 }
const bigBytes = new Uint8Array(big.size).map((_, i) => i % 251)
const hashes = [0, 1, 2].map(i => sha256(bigBytes.subarray(i * big.chunkSize, Math.min(big.size, (i + 1) * big.chunkSize))))
const manifest = { ...big, hashes }
const noObject = { inline: new Uint8Array(0), encoding: 0, locations: [], contained: [] }
const state = {
  peer: B, seq: 42, functions: ['add', 'make'], addrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${B}`], slots: 2, queued: 1, running: 2,
  storeUsed: 4_194_304, storeCapacity: 536_870_912, spilledBytes: 1_048_576, admitBytes: 425_302_835, bandwidth: 125_000_000.5,
  pooledFunctions: ['make'], runtime: 'node', links: [{ peer: A, transport: 'tcp' }, { peer: C, transport: 'ws' }],
  flows: [{ from: C, bytesPerSecond: 1.5e8 }], names: ['dataset']
}
const control: Array<{ name: string, note?: string, env: Record<string, unknown> }> = [
  { name: 'hello', note: 'one-way (id 0); addrs carry the /p2p suffix', env: { id: 0, reply: false, hello: { functions: ['add', 'make'], addrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${B}`], peers: [{ peer: C, addrs: [`/ip4/127.0.0.1/tcp/4002/p2p/${C}`] }] } } },
  { name: 'call, plain arguments', note: 'add(2, 3): each argument is a byte string holding its own CBOR', env: { id: 1, reply: false, call: { resultId: RESULT, fn: 'add', args: encodeArgs([2, 3]).bytes, timeoutMs: 0, argBytes: 0, maySpillBack: true } } },
  { name: 'call, a Ref argument to dereference', note: 'checksum(ref): tag 40401 with placement hints; arg_bytes is the sum of the dereferenced sizes', env: { id: 2, reply: false, call: { resultId: RESULT, fn: 'checksum', args: encodeArgs([ref], () => ({ size: 2_500_000, locations: [A] })).bytes, timeoutMs: 60_000, argBytes: 2_500_000, maySpillBack: true } } },
  { name: 'call_reply INLINE', env: { id: 1, reply: true, callReply: { result: { ...noObject, status: ObjectStatus.INLINE, inline: encodeValue(5).bytes, encoding: 0 } } } },
  { name: 'call_reply STORED', note: 'the result stays on the executor (locations), owned by the caller', env: { id: 2, reply: true, callReply: { result: { ...noObject, status: ObjectStatus.STORED, encoding: 1, manifest, locations: [B] } } } },
  { name: 'call_reply INLINE with a contained Ref', note: 'the caller registers (borrow add) with the owner, then sends result_ack', env: { id: 3, reply: true, callReply: { result: { ...noObject, status: ObjectStatus.INLINE, inline: encodeValue({ inner: ref }).bytes, encoding: 0, contained: [{ id: OBJ, owner: A, size: 0, locations: [] }] } } } },
  { name: 'call_reply FAILED, the function threw', env: { id: 4, reply: true, callReply: { result: { ...noObject, status: ObjectStatus.FAILED, error: { name: 'RangeError', message: 'boom', stack: 'RangeError: boom\n    at boom (functions.ts:1:1)', peer: B, fn: 'boom', remote: true } } } } },
  { name: 'call_reply FAILED, unknown function', env: { id: 5, reply: true, callReply: { result: { ...noObject, status: ObjectStatus.FAILED, error: { name: 'FunctionNotFoundError', message: 'no such function: nope', stack: '', peer: B, fn: 'nope', remote: false } } } } },
  { name: 'call_reply spillback', env: { id: 6, reply: true, callReply: { spillback: { ...state, seq: 0 } } } },
  { name: 'call, multiple return values', note: 'split(ref) with returns: 3; the second id is empty: a rebuild needs only results 1 and 3 (the executor discards value 2)', env: { id: 20, reply: false, call: { resultId: RESULT, fn: 'split', args: encodeArgs([ref], () => ({ size: 2_500_000, locations: [A] })).bytes, timeoutMs: 0, argBytes: 2_500_000, maySpillBack: true, resultIds: [RESULT, new Uint8Array(0), id(0xb0)] } } },
  { name: 'call_reply, multiple return values', note: 'one ObjectInfo per result id, in order: FREED for the empty one; no result', env: { id: 20, reply: true, callReply: { results: [{ ...noObject, status: ObjectStatus.STORED, encoding: 1, manifest, locations: [B] }, { ...noObject, status: ObjectStatus.FREED }, { ...noObject, status: ObjectStatus.INLINE, inline: encodeValue('part 3').bytes, encoding: 0 }] } } },
  { name: 'call_reply FAILED, wrong number of values', note: 'returns: 3 and the function returned 2 values: every result of the call fails with this error', env: { id: 21, reply: true, callReply: { result: { ...noObject, status: ObjectStatus.FAILED, error: { name: 'ReturnCountError', message: 'split was called with returns: 3 and returned 2 values', stack: '', peer: B, fn: 'split', remote: false } } } } },
  { name: 'result_ack', note: 'one-way', env: { id: 0, reply: false, resultAck: { resultId: RESULT } } },
  { name: 'locate', note: 'a puller: park while pending, and record the asker as a location', env: { id: 7, reply: false, locate: { id: OBJ, wait: true, fetch: true, timeoutMs: 30_000 } } },
  { name: 'locate, wait only', note: 'wait(ref): park while pending, fetch nothing', env: { id: 19, reply: false, locate: { id: OBJ, wait: true, fetch: false, timeoutMs: 30_000 } } },
  { name: 'locate_reply STORED', env: { id: 7, reply: true, locateReply: { object: { ...noObject, status: ObjectStatus.STORED, encoding: 1, manifest, locations: [A, C] } } } },
  { name: 'locate_reply FREED', note: 'the asked peer does not own (or no longer has) the object', env: { id: 8, reply: true, locateReply: { object: { ...noObject, status: ObjectStatus.FREED } } } },
  { name: 'locate_reply PENDING', env: { id: 9, reply: true, locateReply: { object: { ...noObject, status: ObjectStatus.PENDING } } } },
  { name: 'borrow add', env: { id: 10, reply: false, borrow: { id: OBJ, add: true } } },
  { name: 'borrow drop', env: { id: 11, reply: false, borrow: { id: OBJ, add: false } } },
  { name: 'ack', env: { id: 10, reply: true, ack: {} } },
  { name: 'free', note: 'one-way', env: { id: 0, reply: false, free: { ids: [OBJ, RESULT] } } },
  { name: 'stats', env: { id: 12, reply: false, stats: {} } },
  { name: 'stats_reply', env: { id: 12, reply: true, statsReply: { json: `{"peer":"${B}","peers":[]}` } } },
  { name: 'progress', note: 'one-way, receiver to owner', env: { id: 0, reply: false, progress: { id: OBJ, have: new Uint8Array([1, 1, 0]), complete: false } } },
  { name: 'prefetch', env: { id: 13, reply: false, prefetch: { object: { id: OBJ, owner: A, size: 2_500_000, locations: [A] } } } },
  { name: 'adopt', env: { id: 14, reply: false, adopt: { id: OBJ, object: { ...noObject, status: ObjectStatus.INLINE, inline: encodeValue('kept').bytes, encoding: 0 } } } },
  { name: 'name_lookup', env: { id: 15, reply: false, nameLookup: { name: 'dataset' } } },
  { name: 'name_reply', env: { id: 15, reply: true, nameReply: { object: { id: OBJ, owner: A, size: 2_500_000, locations: [A] }, handoff: id(0xc0) } } },
  { name: 'name_reply, not published', env: { id: 16, reply: true, nameReply: { handoff: new Uint8Array(0) } } },
  { name: 'error reply, unknown request', note: 'an Envelope with no known body', env: { id: 17, reply: true, error: { name: 'ProtocolError', message: 'unknown or empty request', stack: '', peer: B, fn: '', remote: false } } },
  { name: 'error reply, quota', env: { id: 18, reply: true, error: { name: 'QuotaExceededError', message: `${A} has too many calls queued at ${B}`, stack: '', peer: B, fn: '', remote: false } } }
]
write('control.json', {
  protocol: CONTROL_PROTOCOL,
  message: 'Envelope',
  notation: 'see README.md; hex is the Envelope, frame_hex the same with its varint length prefix',
  peers: { A, B, C },
  vectors: control.map(v => {
    const body = EnvelopeCodec.encode(v.env as any)
    return { name: v.name, ...(v.note !== undefined ? { note: v.note } : {}), fields: toFields(EnvelopeCodec, EnvelopeCodec.decode(body) as any), hex: hex(body), frame_hex: hex(concat(encodeVarint(body.byteLength), body)) }
  })
})

const stateBytes = PeerStateCodec.encode({ ...state } as any)
write('gossip.json', {
  topic: STATE_TOPIC,
  message: 'PeerState',
  notation: 'see README.md; hex is the pubsub message data (no length prefix: gossipsub frames it)',
  vectors: [{ name: 'peer state', fields: toFields(PeerStateCodec, PeerStateCodec.decode(stateBytes) as any), hex: hex(stateBytes) }]
})

// ---------------------------------------------------------------- chunks
const small = new TextEncoder().encode('0123456789')
const smallManifest = { size: 10, chunkSize: 4, hashes: [0, 1, 2].map(i => sha256(small.subarray(i * 4, Math.min(10, i * 4 + 4)))), encoding: 1 }
const requests = [
  { name: 'bitfield request, watched, no indices', req: { id: OBJ, indices: [], bitfield: true, watch: true } },
  { name: 'chunk request', req: { id: OBJ, indices: [0, 1, 2], bitfield: false, watch: false } },
  { name: 'bitfield and chunks in one request', req: { id: OBJ, indices: [2], bitfield: true, watch: false } },
  { name: 'chunk request of a swarming puller (it takes SPREAD answers)', req: { id: OBJ, indices: [1], bitfield: false, watch: false, spread: true } }
]
const chunkFrame = (header: { id: Uint8Array, index: number, status: number }, body = new Uint8Array(0)): { header: Uint8Array, frame: Uint8Array } => {
  const h = ChunkHeaderCodec.encode(header)
  const inner = concat(encodeVarint(h.byteLength), h, body)
  return { header: h, frame: concat(encodeVarint(inner.byteLength), inner) }
}
const frames = [
  { name: 'BITFIELD', note: 'index is 0; the body has one byte per chunk', header: { id: OBJ, index: 0, status: ChunkStatus.BITFIELD }, body: new Uint8Array([1, 0, 1]) },
  { name: 'OK chunk 0', header: { id: OBJ, index: 0, status: ChunkStatus.OK }, body: small.subarray(0, 4) },
  { name: 'OK chunk 1', header: { id: OBJ, index: 1, status: ChunkStatus.OK }, body: small.subarray(4, 8) },
  { name: 'OK chunk 2 (the last, short)', header: { id: OBJ, index: 2, status: ChunkStatus.OK }, body: small.subarray(8, 10) },
  { name: 'NOT_FOUND', header: { id: OBJ, index: 1, status: ChunkStatus.NOT_FOUND } },
  { name: 'NOT_FOUND answering a bitfield request', note: 'index 0, no body', header: { id: OBJ, index: 0, status: ChunkStatus.NOT_FOUND } },
  { name: 'NOT_YET', header: { id: OBJ, index: 1, status: ChunkStatus.NOT_YET } },
  { name: 'REFUSED', header: { id: OBJ, index: 1, status: ChunkStatus.REFUSED } },
  { name: 'SPREAD', note: 'only to a request with spread; the body is the peer id (UTF-8) of the receiver the chunk went to', header: { id: OBJ, index: 1, status: ChunkStatus.SPREAD }, body: new TextEncoder().encode(B) }
]
write('chunk.json', {
  protocol: CHUNK_PROTOCOL,
  notation: 'see README.md; requests: hex is the ChunkRequest, frame_hex adds its length prefix. Chunk frames: frame_hex = varint frame length | varint header length | ChunkHeader | body',
  object: { id: hex(OBJ), bytes_hex: hex(small), manifest: { size: 10, chunk_size: 4, hashes: smallManifest.hashes.map(hex), encoding: 1 } },
  requests: requests.map(r => {
    const body = ChunkRequestCodec.encode(r.req)
    return { name: r.name, fields: toFields(ChunkRequestCodec, ChunkRequestCodec.decode(body) as any), hex: hex(body), frame_hex: hex(concat(encodeVarint(body.byteLength), body)) }
  }),
  frames: frames.map(f => {
    const { header, frame } = chunkFrame(f.header, f.body)
    return { name: f.name, ...(f.note !== undefined ? { note: f.note } : {}), header: toFields(ChunkHeaderCodec, ChunkHeaderCodec.decode(header) as any), header_hex: hex(header), body_hex: hex(f.body ?? new Uint8Array(0)), frame_hex: hex(frame) }
  })
})

// ---------------------------------------------------------------- auth
const secret = 'correct horse battery staple'
const transcript = (nonce: Uint8Array, challenger: string, responder: string): Record<string, string> => {
  const message = authMessage(nonce, challenger, responder)
  return { challenger, responder, nonce: hex(nonce), message: hex(message), answer: hex(new Uint8Array(createHmac('sha256', secret).update(message).digest())) }
}
write('auth.json', {
  protocol: AUTH_PROTOCOL,
  notation: 'secret_hex is the HMAC key (the secret as UTF-8); on the wire the challenger writes the 32 nonce bytes and the responder the 32 answer bytes, nothing else, no length prefixes',
  secret,
  secret_hex: hex(new TextEncoder().encode(secret)),
  tag: 'refmesh-auth-v1',
  exchanges: [
    { name: 'A challenges B', ...transcript(new Uint8Array(32).map((_, i) => i), A, B) },
    { name: 'B challenges A', ...transcript(new Uint8Array(32).map((_, i) => 0xff - i), B, A) }
  ]
})

// ---------------------------------------------------------------- CBOR
write('cbor.json', {
  notation: 'js: the JavaScript value (an expression); encoding: the value encoding code; hex: the encoded bytes; decoded: what a JavaScript peer gets back when it differs; encode_error / decode_error: the typed error instead',
  peers: { A },
  rows: CBOR_ROWS.map(row => {
    const out: Record<string, unknown> = { ...row }
    if (row.encode_error === undefined && row.js !== undefined) {
      const value = evalRow(row.js, A)
      const e = value.args === true ? { encoding: 0, bytes: encodeArgs(value.value as unknown[], value.hintsOf).bytes } : encodeValue(value.value, value.hintsOf)
      if (row.hex !== undefined && row.hex !== hex(e.bytes)) throw new Error(`row ${row.row}: hex ${hex(e.bytes)} is not the ${row.hex} written`)
      out.encoding = e.encoding
      out.hex = hex(e.bytes)
    }
    return out
  })
})
console.log('wrote vectors for peers', A, B, C)
