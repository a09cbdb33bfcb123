/**
 * The rows of PROTOCOL.md's CBOR mapping table, as test vectors: scripts/make-vectors.ts
 * writes them (with their bytes) to core/protocol/vectors/cbor.json and
 * test/vectors.test.ts checks the codec against that file. `js` and `decoded` are
 * JavaScript expressions; in them `ref(idHex, owner)` is a Ref, `hinted(ref, size,
 * locations)` gives it placement hints, `args([...])` marks top-level call arguments,
 * `desc(idHex, owner, size?, locations?)` is a decoded Ref, `unhex(text)` bytes, `A` a peer id.
 */
import { Ref } from '../core/ref.ts'
import type { RefDesc } from '../core/protocol/messages.ts'
import type { HintsOf } from '../core/codec.ts'
import { unhex } from './vector-fields.ts'

export interface CborRow {
  row: string
  js?: string
  hex?: string
  decoded?: string
  encode_error?: string
  decode_error?: string
  note?: string
}

const ID = '00112233445566778899aabbccddeeff'

export const CBOR_ROWS: CborRow[] = [
  { row: 'undefined', js: 'undefined', note: 'simple value 23, kept (in arrays and object values too)' },
  { row: 'null', js: 'null' },
  { row: 'false', js: 'false' },
  { row: 'true', js: 'true' },
  { row: 'small integer', js: '1' },
  { row: 'negative integer', js: '-5' },
  { row: 'largest safe integer', js: '2 ** 53 - 1', note: 'a number that is a safe integer is a CBOR integer (major type 0 or 1), shortest form' },
  { row: 'integer number above 2^53', js: '2 ** 53', note: 'a number that is not a safe integer is a float, shortest form that keeps its value (here half of a float32)' },
  { row: 'large integer number', js: '2 ** 60', note: 'a float too: use a BigInt for exact integers above 2^53' },
  { row: 'integral float', js: '1.0', note: 'JavaScript has no integral floats: 1.0 is the integer 1' },
  { row: 'negative zero', js: '-0', decoded: '0', note: '-0 is the integer 0: the sign is lost' },
  { row: 'half-precision float', js: '1.5', note: 'floats use the shortest of float16/32/64 that keeps the value' },
  { row: 'double', js: '0.1' },
  { row: 'NaN', js: 'NaN' },
  { row: 'Infinity', js: 'Infinity' },
  { row: 'BigInt within 2^53', js: '5n', decoded: '5', note: 'a BigInt is a CBOR integer; one that decodes to a safe integer comes back as a number' },
  { row: 'BigInt within 64 bits', js: '2n ** 60n', note: 'an integer above 2^53 (up to 2^64 - 1, down to -2^64) decodes to a BigInt' },
  { row: 'BigInt, largest 64-bit', js: '2n ** 64n - 1n' },
  { row: 'BigInt, most negative 64-bit', js: '-(2n ** 64n)' },
  { row: 'BigInt beyond 64 bits', js: '2n ** 64n', note: 'tag 2 (positive bignum), big-endian magnitude' },
  { row: 'negative BigInt beyond 64 bits', js: '-(2n ** 64n) - 1n', note: 'tag 3 (negative bignum): -1 - n' },
  { row: 'integer decoded from another peer above 2^53', hex: '1b0020000000000000', decoded: '2n ** 53n', note: 'any CBOR integer outside the safe range decodes to a BigInt' },
  { row: 'string', js: "'hé'", note: 'UTF-8 text string' },
  { row: 'plain object', js: '{ z: 1, a: 2 }', note: 'a map with text keys, sorted length-first then bytewise (RFC 8949 4.2.3 order): insertion order is not kept' },
  { row: 'object with an undefined value', js: '{ a: undefined, b: 1 }' },
  { row: 'nested object', js: '{ list: [1, { deep: true }] }' },
  { row: 'Map with text keys', js: "new Map([['k', 1]])", decoded: '{ k: 1 }', note: 'a Map is a CBOR map like an object; it decodes to a plain object' },
  { row: 'Map with other keys', js: "new Map([[1, 'x']])", decode_error: 'MalformedFrameError', note: 'encodes, but no refmesh peer can decode it: keys must be text' },
  { row: 'map with non-text keys from another peer', hex: 'a1f56161', decode_error: 'MalformedFrameError' },
  { row: 'array', js: "[1, 'a']" },
  { row: 'sparse array', js: '[1, , 3]', decoded: '[1, undefined, 3]', note: 'a hole is undefined' },
  { row: 'indefinite-length array from another peer', hex: '9f01ff', decoded: '[1]' },
  { row: 'indefinite-length byte string from another peer', hex: '5f4101ff', decode_error: 'MalformedFrameError' },
  { row: 'Uint8Array inside a value', js: '{ b: new Uint8Array([1, 2]) }', note: 'a CBOR byte string' },
  { row: 'ArrayBuffer inside a value', js: '{ b: new Uint8Array([1, 2]).buffer }', decoded: '{ b: new Uint8Array([1, 2]) }', note: 'a byte string: it decodes to a Uint8Array' },
  { row: 'typed array inside a value', js: '{ a: new Int16Array([1, -1]) }', note: 'RFC 8746 little-endian tag (Int16Array: 77)' },
  { row: 'Float64Array inside a value', js: '[new Float64Array([1.5])]', note: 'tag 86' },
  { row: 'big-endian typed array from another peer', hex: 'd84142000100', decode_error: 'MalformedFrameError', note: 'tags 64-67 and 73-76, 81-84 (big-endian) are not accepted' },
  { row: 'Uint8Array as the whole value', js: 'new Uint8Array([1, 2, 3])', note: 'not CBOR: encoding 1, the bytes themselves' },
  { row: 'Float32Array as the whole value', js: 'new Float32Array([1.5])', note: 'encoding 8, little-endian bytes' },
  { row: 'ArrayBuffer as the whole value', js: 'new Uint8Array([9]).buffer', note: 'encoding 12' },
  { row: 'Date', js: 'new Date(0)', encode_error: 'EncodeError', note: 'not encoded: send date.getTime() or date.toISOString()' },
  { row: 'date tag from another peer', hex: 'c11a00000000', decode_error: 'MalformedFrameError', note: 'tags 0 and 1 are not accepted' },
  { row: 'Set', js: 'new Set([1])', encode_error: 'EncodeError' },
  { row: 'class instance', js: 'new (class Point { x = 1 })()', encode_error: 'EncodeError', note: 'only plain objects (prototype Object.prototype or null)' },
  { row: 'function', js: '() => 1', encode_error: 'EncodeError' },
  { row: 'Ref nested in a value', js: `[ref('${ID}', A)]`, decoded: `[desc('${ID}', A)]`, note: 'tag 40400 [id: bytes(16), owner: text]' },
  { row: 'Ref with placement hints', js: `hinted(ref('${ID}', A), 4194304, [A])`, decoded: `desc('${ID}', A, 4194304, [A])`, note: 'tag 40400 [id, owner, size: uint, locations: [text]]' },
  { row: 'call arguments', js: `args([2, 'x', ref('${ID}', A)])`, decoded: `[{ value: unhex('02') }, { value: unhex('6178') }, { deref: desc('${ID}', A) }]`, note: 'a CBOR array: each plain argument as a byte string of its own CBOR, each dereferenced Ref as tag 40401' },
  { row: 'call arguments with a hinted Ref', js: `args([hinted(ref('${ID}', A), 4194304, [A])])`, decoded: `[{ deref: desc('${ID}', A, 4194304, [A]) }]` }
]

export interface RowValue { value: unknown, hintsOf?: HintsOf, args?: boolean }

const tracker = { dropHandle () {}, dupHandle (r: Ref<unknown>) { return r } }

/** The JavaScript value a row's expression stands for. */
export function evalRow (js: string, A: string): RowValue {
  const hints = new Map<Ref, { size: number, locations: string[] }>()
  let isArgs = false
  const scope = {
    A,
    unhex,
    ref: (idHex: string, owner: string): Ref => new Ref(unhex(idHex), owner, tracker),
    hinted: (r: Ref, size: number, locations: string[]): Ref => { hints.set(r, { size, locations }); return r },
    args: (list: unknown[]): unknown[] => { isArgs = true; return list },
    desc: (idHex: string, owner: string, size?: number, locations?: string[]): RefDesc => size === undefined ? { id: unhex(idHex), owner } : { id: unhex(idHex), owner, size, locations }
  }
  // eslint-disable-next-line no-new-func
  const value = new Function(...Object.keys(scope), `return (${js})`)(...Object.values(scope))
  return { value, hintsOf: hints.size > 0 ? (r: Ref) => hints.get(r) : undefined, args: isArgs }
}
