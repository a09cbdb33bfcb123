/** Values: binary is stored as it is, structured values are CBOR with typed-array and Ref tags. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import { Encoding, decodeArgs, decodeValue, encodeArgs, encodeValue } from '../core/codec.ts'
import { EncodeError, MalformedFrameError } from '../core/errors.ts'
import { Ref, SharedRef } from '../core/ref.ts'
import type { RefTracker } from '../core/ref.ts'

const tracker: RefTracker = { dropHandle: () => {}, dupHandle: (r) => r }
const noRefs = (): Ref => { throw new Error('no Ref expected') }

test('binary values are not copied: the encoding is a view of the same memory', () => {
  const bytes = new Uint8Array(1000).fill(7)
  const e = encodeValue(bytes)
  assert.equal(e.encoding, Encoding.BYTES)
  assert.equal(e.bytes.buffer, bytes.buffer)
  const floats = new Float32Array([1.5, -2, 3])
  const f = encodeValue(floats)
  assert.equal(f.encoding, Encoding.FLOAT32)
  assert.equal(f.bytes.buffer, floats.buffer)
  assert.deepEqual(decodeValue(f.encoding, f.bytes, noRefs), floats)
})

test('structured values round-trip with typed arrays and nested Refs', () => {
  const id = new Uint8Array(16).fill(1)
  const ref = new Ref(id, 'owner-peer', tracker)
  const value = { n: 1, s: 'text', list: [1, 'two', null], f64: new Float64Array([1.25]), i16: new Int16Array([-3, 4]), big: 2n ** 70n, ref, shared: new SharedRef(ref) }
  const e = encodeValue(value)
  assert.equal(e.encoding, Encoding.CBOR)
  assert.deepEqual(e.contained, [ref, ref])
  const seen: string[] = []
  const back = decodeValue(e.encoding, e.bytes, desc => { seen.push(desc.owner); return new Ref(desc.id, desc.owner, tracker) }) as typeof value
  assert.deepEqual(seen, ['owner-peer', 'owner-peer'])
  assert.equal(back.n, 1)
  assert.deepEqual(back.list, [1, 'two', null])
  assert.deepEqual(back.f64, new Float64Array([1.25]))
  assert.deepEqual(back.i16, new Int16Array([-3, 4]))
  assert.equal(back.big, 2n ** 70n)
  assert.ok(back.ref instanceof Ref)
  assert.deepEqual(back.ref.id, id)
})

test('top-level Ref arguments are marked for dereferencing; SharedRefs stay Refs', () => {
  const ref = new Ref(new Uint8Array(16).fill(2), 'o', tracker)
  const { bytes, contained } = encodeArgs([ref, new SharedRef(ref), 5])
  assert.equal(contained.length, 2)
  const args = decodeArgs(bytes)
  assert.ok('deref' in args[0])
  assert.ok('value' in args[1] && 'value' in args[2])
  const sharedBack = decodeValue(Encoding.CBOR, (args[1] as { value: Uint8Array }).value, d => new Ref(d.id, d.owner, tracker))
  assert.ok(sharedBack instanceof Ref)
})

test('what cannot be encoded or decoded fails with a typed error', () => {
  assert.throws(() => encodeValue({ f: () => 1 }), EncodeError)
  assert.throws(() => encodeValue(new (class Thing {})()), EncodeError)
  const released = new Ref(new Uint8Array(16), 'o', tracker)
  released.release()
  assert.throws(() => encodeValue([released]), { name: 'ReleasedRefError' })
  assert.throws(() => decodeValue(Encoding.CBOR, new Uint8Array([0xff, 0x00]), noRefs), MalformedFrameError)
  assert.throws(() => decodeValue(Encoding.FLOAT64, new Uint8Array(7), noRefs), MalformedFrameError)
  assert.throws(() => decodeValue(99, new Uint8Array(1), noRefs), MalformedFrameError)
  // A Ref tag with the wrong shape.
  assert.throws(() => decodeValue(Encoding.CBOR, new Uint8Array([0xd9, 0x9d, 0xd0, 0x01]), noRefs), MalformedFrameError)
  assert.throws(() => decodeArgs(new Uint8Array([0x01])), MalformedFrameError)
})

test('a typed array arriving at an unaligned offset of a Node Buffer decodes (the bytes are copied, not viewed)', () => {
  const values = Float64Array.from({ length: 100 }, (_, i) => i * 1.5)
  const { bytes, encoding } = encodeValue(values)
  // Received bytes often sit at an odd offset inside a larger Buffer.
  const pool = Buffer.alloc(bytes.byteLength + 3)
  pool.set(bytes, 3)
  const decoded = decodeValue(encoding, pool.subarray(3, 3 + bytes.byteLength), () => { throw new Error('no refs here') })
  assert.deepEqual(decoded, values)
})

test('arguments without a Ref: an array of byte strings, each the argument\'s own CBOR, at every head length', () => {
  // Byte strings and arrays whose heads take 1, 2, 3 and 5 bytes (CBOR's shortest form, as cborg writes it).
  for (const size of [0, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000]) {
    const bin = new Uint8Array(size).map((_v, i) => i * 7)
    const args = [bin, 'text', 42, { a: [1, 2] }, Buffer.from('buffer')]
    const expected = cborEncode(args.map(a => cborEncode(a)))
    assert.deepEqual(encodeArgs(args).bytes, expected, `arguments with ${size} bytes`)
    const decoded = decodeArgs(encodeArgs(args).bytes)
    assert.deepEqual(decodeValue(Encoding.CBOR, (decoded[0] as { value: Uint8Array }).value, noRefs), bin)
  }
  const many = Array.from({ length: 30 }, (_v, i) => new Uint8Array(i))
  assert.deepEqual(encodeArgs(many).bytes, cborEncode(many.map(a => cborEncode(a))))
})

test('byte-string arguments decode by hand as cborg decodes them: a copy for the callee, and a cut or padded frame is still malformed', () => {
  for (const size of [0, 23, 24, 256, 65_536]) {
    const bin = new Uint8Array(size).map((_v, i) => i * 3)
    const encoded = encodeArgs([bin, 'text']).bytes
    const decoded = decodeArgs(encoded)
    assert.deepEqual(decoded.map(a => (a as { value: Uint8Array }).value), (cborDecode(encoded) as Uint8Array[]), `arguments with ${size} bytes`)
    const value = decodeValue(Encoding.CBOR, (decoded[0] as { value: Uint8Array }).value, noRefs) as Uint8Array
    assert.deepEqual(value, bin)
    // The callee owns what it gets: its own buffer, not a window on the frame.
    assert.equal(value.buffer.byteLength, value.byteLength)
    assert.equal(decodeValue(Encoding.CBOR, (decoded[1] as { value: Uint8Array }).value, noRefs), 'text')
    assert.throws(() => decodeArgs(encoded.subarray(0, encoded.byteLength - 1)), MalformedFrameError)
    assert.throws(() => decodeArgs(Uint8Array.from([...encoded, 0])), MalformedFrameError)
    const inner = cborEncode(bin)
    assert.throws(() => decodeValue(Encoding.CBOR, inner.subarray(0, inner.byteLength - 1), noRefs), MalformedFrameError)
  }
})
