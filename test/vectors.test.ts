/**
 * The project's codecs against the protocol's test vectors (core/protocol/vectors), both
 * ways: decoding each vector's bytes gives its fields, encoding its fields gives its bytes.
 * A codec that changes without the vectors (or the vectors without the codec) fails here.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { EnvelopeCodec, PeerStateCodec, ChunkRequestCodec, ChunkHeaderCodec, ChunkStatus } from '../core/protocol/messages.ts'
import { FrameDecoder, decodeVarint, encodeVarint, frame } from '../core/protocol/framing.ts'
import { decodeArgs, decodeValue, encodeArgs, encodeValue } from '../core/codec.ts'
import { authMessage } from '../core/auth.ts'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { STATE_TOPIC } from '../core/gossip.ts'
import { AUTH_PROTOCOL } from '../core/auth.ts'
import { fromFields, hex, toFields, unhex } from './vector-fields.ts'
import { CBOR_ROWS, evalRow } from './cbor-rows.ts'
import type { MessageCodec } from '../core/protocol/wire.ts'

const load = (name: string): any => JSON.parse(readFileSync(new URL(`../core/protocol/vectors/${name}`, import.meta.url), 'utf8'))
const control = load('control.json')
const gossip = load('gossip.json')
const chunk = load('chunk.json')
const auth = load('auth.json')
const cbor = load('cbor.json')

function bothWays (codec: MessageCodec<any>, v: { name: string, fields: Record<string, unknown>, hex: string }): void {
  const decoded = codec.decode(unhex(v.hex))
  assert.deepStrictEqual(decoded, fromFields(codec, v.fields), `${v.name}: decoding`)
  assert.deepStrictEqual(toFields(codec, decoded), v.fields, `${v.name}: fields`)
  assert.equal(hex(codec.encode(fromFields(codec, v.fields))), v.hex, `${v.name}: encoding`)
}

test('vectors name the protocol ids the code speaks', () => {
  assert.equal(control.protocol, CONTROL_PROTOCOL)
  assert.equal(chunk.protocol, CHUNK_PROTOCOL)
  assert.equal(gossip.topic, STATE_TOPIC)
  assert.equal(auth.protocol, AUTH_PROTOCOL)
})

test('control: every Envelope vector, both ways, framed', () => {
  for (const v of control.vectors) {
    bothWays(EnvelopeCodec, v)
    const framed = frame(unhex(v.hex)).subarray()
    assert.equal(hex(framed), v.frame_hex, `${v.name}: frame`)
    const frames = new FrameDecoder(8 * 1024 * 1024).push(unhex(v.frame_hex))
    assert.equal(frames.length, 1)
    assert.equal(hex(frames[0].subarray()), v.hex)
  }
  // Every body of the Envelope has a vector: a new message cannot land without one.
  const bodies = new Set(control.vectors.flatMap((v: any) => Object.keys(v.fields)))
  for (const f of EnvelopeCodec.fields) {
    if (f.name === 'id' || f.name === 'reply') continue
    const name = f.name.replace(/[A-Z]/g, c => '_' + c.toLowerCase())
    assert.ok(bodies.has(name), `no vector for the Envelope body ${name}`)
  }
})

test('gossip: the PeerState vector, both ways, every field set', () => {
  for (const v of gossip.vectors) bothWays(PeerStateCodec, v)
  assert.equal(Object.keys(gossip.vectors[0].fields).length, PeerStateCodec.fields.length)
})

test('chunk: requests and every status of a chunk frame, both ways', () => {
  for (const r of chunk.requests) {
    bothWays(ChunkRequestCodec, r)
    assert.equal(hex(frame(unhex(r.hex)).subarray()), r.frame_hex)
  }
  const seen = new Set<number>()
  for (const f of chunk.frames) {
    // Decode: frame length, header length, header, body.
    const [inner] = new FrameDecoder(1024 * 1024).push(unhex(f.frame_hex))
    const bytes = inner.subarray()
    const [headerLength, prefix] = decodeVarint(bytes) as [number, number]
    const header = ChunkHeaderCodec.decode(bytes.subarray(prefix, prefix + headerLength))
    assert.deepStrictEqual(header, fromFields(ChunkHeaderCodec, f.header), f.name)
    assert.equal(hex(bytes.subarray(prefix, prefix + headerLength)), f.header_hex)
    assert.equal(hex(bytes.subarray(prefix + headerLength)), f.body_hex, `${f.name}: body`)
    // Encode, as a holder writes it.
    const h = ChunkHeaderCodec.encode(fromFields(ChunkHeaderCodec, f.header) as any)
    assert.equal(hex(frame(encodeVarint(h.byteLength), h, unhex(f.body_hex)).subarray()), f.frame_hex, `${f.name}: encoding`)
    seen.add(header.status)
  }
  for (const status of Object.values(ChunkStatus)) assert.ok(seen.has(status), `no vector for chunk status ${status}`)
  // The example object: its chunks hash to its manifest.
  const okFrames = chunk.frames.filter((f: any) => (f.header.status ?? 0) === ChunkStatus.OK)
  const whole = okFrames.map((f: any) => f.body_hex).join('')
  assert.equal(whole, chunk.object.bytes_hex)
})

test('auth: the transcript for a fixed secret, nonces and peer ids', async () => {
  const key = await crypto.subtle.importKey('raw', unhex(auth.secret_hex), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  assert.equal(hex(new TextEncoder().encode(auth.secret)), auth.secret_hex)
  for (const x of auth.exchanges) {
    const message = authMessage(unhex(x.nonce), x.challenger, x.responder)
    assert.equal(hex(message), x.message, x.name)
    assert.equal(hex(new Uint8Array(await crypto.subtle.sign('HMAC', key, message))), x.answer, x.name)
  }
})

test('CBOR: every row of the mapping table, both ways', () => {
  assert.deepStrictEqual(cbor.rows.map((r: any) => r.row), CBOR_ROWS.map(r => r.row), 'the rows of cbor.json and test/cbor-rows.ts')
  const A = cbor.peers.A
  const decodeRow = (encoding: number, bytes: Uint8Array, isArgs: boolean): unknown => isArgs ? decodeArgs(bytes) : decodeValue(encoding, bytes, desc => desc as any)
  for (const row of cbor.rows) {
    if (row.encode_error !== undefined) {
      assert.throws(() => encodeValue(evalRow(row.js, A).value), { name: row.encode_error }, row.row)
      continue
    }
    const isArgs = row.js !== undefined && evalRow(row.js, A).args === true
    if (row.js !== undefined) {
      const { value, hintsOf } = evalRow(row.js, A)
      const e = isArgs ? { encoding: 0, bytes: encodeArgs(value as unknown[], hintsOf).bytes } : encodeValue(value, hintsOf)
      assert.equal(hex(e.bytes), row.hex, `${row.row}: encoding`)
      assert.equal(e.encoding, row.encoding, `${row.row}: encoding code`)
    }
    const encoding = row.encoding ?? 0
    if (row.decode_error !== undefined) {
      assert.throws(() => decodeRow(encoding, unhex(row.hex), isArgs), { name: row.decode_error }, row.row)
      continue
    }
    const expected = evalRow(row.decoded ?? row.js, A).value
    const got = decodeRow(encoding, unhex(row.hex), isArgs)
    // A decoded ArrayBuffer and typed arrays compare by content and type.
    assert.deepStrictEqual(got, expected, `${row.row}: decoding`)
  }
})
