/**
 * Values on the wire and in the store. Binary values are stored as they are:
 * their chunks are slices of the caller's own buffer. Everything else is CBOR
 * (RFC 8949) with RFC 8746 typed-array tags and one tag for a Ref.
 */
import { encode as cborEncode, decode as cborDecode, Token, Type } from 'cborg'
import type { TagDecoder, TypeEncoder } from 'cborg'
import { bigIntDecoder, bigIntEncoder, bigNegIntDecoder } from 'cborg/taglib'
import { EncodeError, MalformedFrameError, RefmeshError } from './errors.ts'
import { Ref, SharedRef } from './ref.ts'
import type { RefDesc } from './protocol/messages.ts'

export const Encoding = {
  CBOR: 0,
  BYTES: 1,
  INT8: 2,
  UINT8_CLAMPED: 3,
  INT16: 4,
  UINT16: 5,
  INT32: 6,
  UINT32: 7,
  FLOAT32: 8,
  FLOAT64: 9,
  BIGINT64: 10,
  BIGUINT64: 11,
  ARRAY_BUFFER: 12
} as const

/** CBOR tag of a Ref nested in a value: [id: bytes(16), owner: text] or, with placement hints, [id, owner, size: uint, locations: [text]]. */
export const REF_TAG = 40400
/** CBOR tag of a top-level call argument the executor must dereference: same payload. */
export const DEREF_TAG = 40401

type TypedArrayCtor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayBufferView
interface TypedKind { encoding: number, tag: number, ctor: TypedArrayCtor, name: string }

// RFC 8746 little-endian tags; this code assumes a little-endian host, as every
// browser and Node platform in practice is.
const typedKinds: TypedKind[] = [
  { encoding: Encoding.INT8, tag: 72, ctor: Int8Array, name: 'Int8Array' },
  { encoding: Encoding.UINT8_CLAMPED, tag: 68, ctor: Uint8ClampedArray, name: 'Uint8ClampedArray' },
  { encoding: Encoding.INT16, tag: 77, ctor: Int16Array, name: 'Int16Array' },
  { encoding: Encoding.UINT16, tag: 69, ctor: Uint16Array, name: 'Uint16Array' },
  { encoding: Encoding.INT32, tag: 78, ctor: Int32Array, name: 'Int32Array' },
  { encoding: Encoding.UINT32, tag: 70, ctor: Uint32Array, name: 'Uint32Array' },
  { encoding: Encoding.FLOAT32, tag: 85, ctor: Float32Array, name: 'Float32Array' },
  { encoding: Encoding.FLOAT64, tag: 86, ctor: Float64Array, name: 'Float64Array' },
  { encoding: Encoding.BIGINT64, tag: 79, ctor: BigInt64Array as unknown as TypedArrayCtor, name: 'BigInt64Array' },
  { encoding: Encoding.BIGUINT64, tag: 71, ctor: BigUint64Array as unknown as TypedArrayCtor, name: 'BigUint64Array' }
]
const kindByName = new Map(typedKinds.map(k => [k.name, k]))
const kindByEncoding = new Map(typedKinds.map(k => [k.encoding, k]))

export interface EncodedValue {
  encoding: number
  bytes: Uint8Array
  /** every Ref nested in the value, in order of appearance (duplicates kept) */
  contained: Ref[]
}

function bytesOf (view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
}

/** A view of `bytes` as the typed array, copying only if the offset is misaligned. */
function viewAs (kind: TypedKind, bytes: Uint8Array): ArrayBufferView {
  const size = (kind.ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT
  if (bytes.byteLength % size !== 0) throw new MalformedFrameError(`${kind.name} of ${bytes.byteLength} bytes is not a whole number of elements`)
  // Buffer.prototype.slice is a view, not a copy: copy with Uint8Array's own slice.
  const aligned = bytes.byteOffset % size === 0 ? bytes : Uint8Array.prototype.slice.call(bytes)
  return new kind.ctor(aligned.buffer, aligned.byteOffset, aligned.byteLength / size)
}

/** Placement hints for a Ref: where its object is and how big, if known. */
export type HintsOf = (ref: Ref) => { size: number, locations: string[] } | undefined

function refTokens (tag: number, ref: Ref, hintsOf: HintsOf | undefined): Token[] {
  if (!allowReleased) ref.trackerOrThrow()
  const hints = hintsOf?.(ref)
  const head = [new Token(Type.tag, tag), new Token(Type.array, hints === undefined ? 2 : 4), new Token(Type.bytes, ref.id), new Token(Type.string, ref.owner)]
  if (hints === undefined) return head
  return [...head, new Token(Type.uint, hints.size), new Token(Type.array, hints.locations.length), ...hints.locations.map(l => new Token(Type.string, l))]
}

// Encoders are built once (building them per call cost more than the encoding);
// the Ref sink and hint source of the encode in progress live here, which is
// safe because encoding is synchronous. They are cleared after each encode: the
// last sink would otherwise keep its Refs from the GC backstop until the next.
let sink: Ref[] = []
let curHints: HintsOf | undefined
let allowReleased = false
function makeTypeEncoders (topLevelArgs: boolean): Record<string, TypeEncoder> {
  const contained = { push: (r: Ref): void => { sink.push(r) } }
  const hintsOf = (r: Ref): ReturnType<HintsOf> | undefined => curHints?.(r)
  const encoders: Record<string, TypeEncoder> = {
    Object: (obj: unknown) => {
      if (obj instanceof Ref) {
        contained.push(obj)
        return refTokens(REF_TAG, obj, hintsOf)
      }
      if (obj instanceof SharedRef) {
        contained.push(obj.ref)
        return refTokens(REF_TAG, obj.ref, hintsOf)
      }
      const proto = Object.getPrototypeOf(obj)
      if (proto !== Object.prototype && proto !== null && !(obj instanceof Map)) {
        throw new EncodeError(`cannot encode an instance of ${(obj as object).constructor?.name ?? 'a class'}; pass plain objects, arrays, Maps, binary and Refs`)
      }
      return null
    },
    ArrayBuffer: (obj: ArrayBuffer) => [new Token(Type.bytes, new Uint8Array(obj))],
    Function: () => { throw new EncodeError('cannot encode a function: register it on a peer and call it by name') },
    symbol: () => { throw new EncodeError('cannot encode a symbol') },
    bigint: bigIntEncoder as TypeEncoder
  }
  for (const kind of typedKinds) {
    encoders[kind.name] = (obj: ArrayBufferView) => [new Token(Type.tag, kind.tag), new Token(Type.bytes, bytesOf(obj))]
  }
  if (topLevelArgs) {
    // Top-level call arguments: a bare Ref means "give the callee the value".
    encoders.Array = (args: unknown[]) => {
      const tokens: Token[] = [new Token(Type.array, args.length)]
      for (const arg of args) {
        if (arg instanceof Ref) {
          contained.push(arg)
          tokens.push(...refTokens(DEREF_TAG, arg, hintsOf))
        } else {
          const inner = cborEncode(arg, VALUE_OPTS)
          tokens.push(new Token(Type.bytes, inner))
        }
      }
      return tokens
    }
  }
  return encoders
}

const VALUE_OPTS = { typeEncoders: makeTypeEncoders(false) }
const ARGS_OPTS = { typeEncoders: makeTypeEncoders(true) }
function cbor (value: unknown, contained: Ref[], hintsOf?: HintsOf): Uint8Array {
  try {
    sink = contained
    curHints = hintsOf
    return cborEncode(value, VALUE_OPTS)
  } catch (err) {
    if (err instanceof RefmeshError) throw err
    throw new EncodeError(`cannot encode value: ${(err as Error).message}`)
  } finally {
    sink = []
    curHints = undefined
  }
}

/** Encodes a value for the store. Binary values are not copied. */
export function encodeValue (value: unknown, hintsOf?: HintsOf): EncodedValue {
  if (value instanceof Uint8Array && !(value instanceof Uint8ClampedArray)) {
    return { encoding: Encoding.BYTES, bytes: bytesOf(value), contained: [] }
  }
  if (value instanceof ArrayBuffer) {
    return { encoding: Encoding.ARRAY_BUFFER, bytes: new Uint8Array(value), contained: [] }
  }
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    const kind = kindByName.get(value.constructor.name)
    if (kind !== undefined) return { encoding: kind.encoding, bytes: bytesOf(value), contained: [] }
  }
  const contained: Ref[] = []
  return { encoding: Encoding.CBOR, bytes: cbor(value, contained, hintsOf), contained }
}

/**
 * Call arguments: a CBOR array whose items are either DEREF_TAG(ref) (the callee
 * gets the value) or a byte string holding the argument's own CBOR encoding,
 * so each argument decodes on its own and large binary arguments can be sent
 * as objects instead.
 */
/**
 * `reencode`: the arguments were encoded (and their objects pinned) before; the
 * caller may have released its own handles since, which is fine.
 */
export function encodeArgs (args: unknown[], hintsOf?: HintsOf, reencode = false): { bytes: Uint8Array, contained: Ref[] } {
  const contained: Ref[] = []
  try {
    sink = contained
    curHints = hintsOf
    allowReleased = reencode
    const bytes = args.some(a => a instanceof Ref) ? cborEncode(args, ARGS_OPTS) : argsWithoutDerefs(args)
    return { bytes, contained }
  } catch (err) {
    if (err instanceof RefmeshError) throw err
    throw new EncodeError(`cannot encode arguments: ${(err as Error).message}`)
  } finally {
    allowReleased = false
    sink = []
    curHints = undefined
  }
}

/** Bytes of the head of a CBOR item of length `n`, shortest form (as cborg writes it). */
function cborHeadLength (n: number): number {
  if (n < 24) return 1
  if (n < 0x100) return 2
  if (n < 0x10000) return 3
  if (n < 0x100000000) return 5
  throw new EncodeError('an argument of 4 GiB or more cannot be encoded')
}

/** Writes the head of a CBOR item of major type `major` and length `n` at `at`; returns where it ends. */
function putCborHead (out: Uint8Array, at: number, major: number, n: number): number {
  const m = major << 5
  switch (cborHeadLength(n)) {
    case 1: out[at] = m | n; return at + 1
    case 2: out[at] = m | 24; out[at + 1] = n; return at + 2
    case 3: out[at] = m | 25; out[at + 1] = n >>> 8; out[at + 2] = n & 0xff; return at + 3
    default:
      out[at] = m | 26
      out[at + 1] = n >>> 24
      out[at + 2] = (n >>> 16) & 0xff
      out[at + 3] = (n >>> 8) & 0xff
      out[at + 4] = n & 0xff
      return at + 5
  }
}

/**
 * encodeArgs without a top-level Ref: the same bytes as the ARGS_OPTS encoder
 * (an array of byte strings, each an argument's own CBOR), built by hand, and a
 * binary argument's CBOR (a byte string) too: through cborg's custom-encoder
 * path, a 100-byte argument cost ~5 us of every small call.
 */
function argsWithoutDerefs (args: unknown[]): Uint8Array {
  // Per argument: its own CBOR, or, for binary, the length of its byte-string head.
  const inners: Array<Uint8Array | number> = []
  let size = cborHeadLength(args.length)
  for (const arg of args) {
    if (arg instanceof Uint8Array) {
      const innerLength = cborHeadLength(arg.byteLength) + arg.byteLength
      inners.push(innerLength)
      size += cborHeadLength(innerLength) + innerLength
    } else {
      const inner = cborEncode(arg, VALUE_OPTS)
      inners.push(inner)
      size += cborHeadLength(inner.byteLength) + inner.byteLength
    }
  }
  const out = new Uint8Array(size)
  let at = putCborHead(out, 0, 4, args.length)
  for (let i = 0; i < args.length; i++) {
    const inner = inners[i]
    if (typeof inner === 'number') {
      const bin = args[i] as Uint8Array
      at = putCborHead(out, at, 2, inner)
      at = putCborHead(out, at, 2, bin.byteLength)
      out.set(bin, at)
      at += bin.byteLength
    } else {
      at = putCborHead(out, at, 2, inner.byteLength)
      out.set(inner, at)
      at += inner.byteLength
    }
  }
  return out
}

export type RefFactory = (desc: RefDesc) => Ref
export type DecodedArg = { deref: RefDesc } | { value: Uint8Array }

function refDescOf (inner: unknown): RefDesc {
  if (!Array.isArray(inner) || (inner.length !== 2 && inner.length !== 4) || !(inner[0] instanceof Uint8Array) || inner[0].byteLength !== 16 || typeof inner[1] !== 'string') {
    throw new MalformedFrameError('a Ref tag must hold [16-byte id, owner peer id] or [id, owner, size, locations]')
  }
  if (inner.length === 2) return { id: inner[0], owner: inner[1] }
  const [id, owner, size, locations] = inner as [Uint8Array, string, unknown, unknown]
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || !Array.isArray(locations) || locations.length > 1024 || !locations.every(l => typeof l === 'string')) {
    throw new MalformedFrameError('bad Ref hints')
  }
  return { id, owner, size, locations: locations as string[] }
}

// Built once; the Ref factory and sink of the decode in progress live here (decoding
// is synchronous), cleared after it, as the encoder's are.
let curMakeRef: RefFactory | undefined
let curDescs: RefDesc[] = []
let cachedTags: TagDecoder[] | undefined
function decodeRefs (bytes: Uint8Array, makeRef: RefFactory | undefined, descs: RefDesc[]): unknown {
  curMakeRef = makeRef
  curDescs = descs
  cachedTags ??= buildTagDecoders()
  try {
    return cborDecodeSafe(bytes, cachedTags)
  } finally {
    curMakeRef = undefined
    curDescs = []
  }
}
function buildTagDecoders (): TagDecoder[] {
  const tags: TagDecoder[] = []
  tags[2] = bigIntDecoder as TagDecoder
  tags[3] = bigNegIntDecoder as TagDecoder
  tags[REF_TAG] = (inner: unknown) => {
    const desc = refDescOf(inner)
    curDescs.push(desc)
    return curMakeRef === undefined ? desc : curMakeRef(desc)
  }
  for (const kind of typedKinds) {
    tags[kind.tag] = (inner: unknown) => {
      if (!(inner instanceof Uint8Array)) throw new MalformedFrameError(`tag ${kind.tag} must hold a byte string`)
      return viewAs(kind, inner)
    }
  }
  return tags
}

function cborDecodeSafe (bytes: Uint8Array, tags: TagDecoder[]): unknown {
  try {
    return cborDecode(bytes, { tags, useMaps: false, allowUndefined: true })
  } catch (err) {
    if (err instanceof MalformedFrameError) throw err
    throw new MalformedFrameError(`bad CBOR value: ${(err as Error).message}`)
  }
}

/** The Refs nested in an encoded value, without making handles for them. */
export function containedRefs (encoding: number, bytes: Uint8Array): RefDesc[] {
  if (encoding !== Encoding.CBOR) return []
  const descs: RefDesc[] = []
  decodeRefs(bytes, undefined, descs)
  return descs
}

/**
 * Reads the head of a CBOR item of major type `major` at `at` (definite lengths only,
 * as cborg and putCborHead write them): its length and where its content starts,
 * or undefined for anything else, which the caller leaves to cborg.
 */
function readCborHead (bytes: Uint8Array, at: number, major: number): { n: number, at: number } | undefined {
  if (at >= bytes.byteLength || bytes[at] >>> 5 !== major) return undefined
  const info = bytes[at] & 31
  if (info < 24) return { n: info, at: at + 1 }
  const width = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : 0
  if (width === 0 || at + 1 + width > bytes.byteLength) return undefined
  let n = 0
  for (let i = 1; i <= width; i++) n = n * 256 + bytes[at + i]
  return { n, at: at + 1 + width }
}

/** A value that is one byte string and nothing else (a binary argument), without cborg's set-up: ~2 us of every small call. */
function plainByteString (bytes: Uint8Array): Uint8Array | undefined {
  const head = readCborHead(bytes, 0, 2)
  // A copy, as cborg makes: the callee may keep it, or read its .buffer, without the frame around it.
  return head !== undefined && head.at + head.n === bytes.byteLength ? bytes.slice(head.at) : undefined
}

/** Decodes a stored value; nested Refs become handles made by `makeRef`. */
export function decodeValue (encoding: number, bytes: Uint8Array, makeRef: RefFactory): unknown {
  switch (encoding) {
    case Encoding.CBOR: return plainByteString(bytes) ?? decodeRefs(bytes, makeRef, [])
    case Encoding.BYTES: return bytes
    case Encoding.ARRAY_BUFFER: return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : Uint8Array.prototype.slice.call(bytes).buffer
    default: {
      const kind = kindByEncoding.get(encoding)
      if (kind === undefined) throw new MalformedFrameError(`unknown value encoding ${encoding}`)
      return viewAs(kind, bytes)
    }
  }
}

/** decodeArgs for what argsWithoutDerefs writes (an array of byte strings), by hand; undefined for anything else. */
function argsWithoutDerefsDecoded (bytes: Uint8Array): DecodedArg[] | undefined {
  const array = readCborHead(bytes, 0, 4)
  if (array === undefined || array.n > bytes.byteLength) return undefined
  const out: DecodedArg[] = []
  let at = array.at
  for (let i = 0; i < array.n; i++) {
    const item = readCborHead(bytes, at, 2)
    if (item === undefined || item.at + item.n > bytes.byteLength) return undefined
    out.push({ value: bytes.subarray(item.at, item.at + item.n) })
    at = item.at + item.n
  }
  return at === bytes.byteLength ? out : undefined
}

const DEREF_TAGS: TagDecoder[] = []
DEREF_TAGS[DEREF_TAG] = (inner: unknown) => ({ deref: refDescOf(inner) })

/** Splits encoded call arguments into Refs to dereference and encoded values. */
export function decodeArgs (bytes: Uint8Array): DecodedArg[] {
  const plain = argsWithoutDerefsDecoded(bytes)
  if (plain !== undefined) return plain
  const tags = DEREF_TAGS
  const items = cborDecodeSafe(bytes, tags)
  if (!Array.isArray(items)) throw new MalformedFrameError('call arguments must be a CBOR array')
  return items.map((item: unknown): DecodedArg => {
    if (item instanceof Uint8Array) return { value: item }
    if (item !== null && typeof item === 'object' && 'deref' in item) return item as DecodedArg
    throw new MalformedFrameError('each call argument must be a byte string or a deref tag')
  })
}
