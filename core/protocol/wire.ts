/**
 * A small schema-driven protobuf (proto3) codec over protons-runtime's reader
 * and writer. Each message in messages.ts is a field table that mirrors
 * refmesh.proto, so the .proto file stays the spec and no generated code (whose
 * namespaces and enums are not erasable TypeScript) is needed.
 */
import { reader as createReader, writer as createWriter } from 'protons-runtime'
import type { Reader, Writer } from 'protons-runtime'
import { MalformedFrameError } from '../errors.ts'

type Scalar = 'uint32' | 'uint64' | 'bool' | 'string' | 'bytes' | 'double'

export interface FieldSpec {
  no: number
  name: string
  type: Scalar | MessageCodec<any>
  repeated?: true
}

export interface MessageCodec<T> {
  readonly name: string
  readonly fields: readonly FieldSpec[]
  encode(value: T): Uint8Array
  decode(bytes: Uint8Array): T
  write(value: T, writer: Writer): void
  read(reader: Reader, end: number, depth: number): T
}

const WIRE_VARINT = 0
const WIRE_64 = 1
const WIRE_LEN = 2
const MAX_DEPTH = 16

function wireTypeOf (type: FieldSpec['type']): number {
  if (typeof type !== 'string') return WIRE_LEN
  switch (type) {
    case 'uint32': case 'uint64': case 'bool': return WIRE_VARINT
    case 'double': return WIRE_64
    default: return WIRE_LEN
  }
}

function defaultOf (field: FieldSpec): unknown {
  if (field.repeated === true) return []
  if (typeof field.type !== 'string') return undefined
  switch (field.type) {
    case 'uint32': case 'uint64': case 'double': return 0
    case 'bool': return false
    case 'string': return ''
    case 'bytes': return new Uint8Array(0)
  }
}

function writeScalar (w: Writer, type: Scalar, v: unknown): void {
  switch (type) {
    case 'uint32': w.uint32(Number(v)); break
    case 'uint64': w.uint64Number(Number(v)); break
    case 'bool': w.bool(Boolean(v)); break
    case 'double': w.double(Number(v)); break
    case 'string': w.string(String(v)); break
    case 'bytes': w.bytes(v as Uint8Array); break
  }
}

function readScalar (r: Reader, type: Scalar): unknown {
  switch (type) {
    case 'uint32': return r.uint32()
    case 'uint64': return r.uint64Number()
    case 'bool': return r.bool()
    case 'double': return r.double()
    case 'string': return utf8(r.bytes())
    case 'bytes': return r.bytes()
  }
}

const textDecoder = new TextDecoder()

/**
 * A string field's bytes as a string. protons-runtime's own reader grows an array a
 * code unit at a time for every string; a hello or a state is mostly short ASCII
 * strings (function names, addresses, peer ids), which fromCharCode takes straight
 * from the bytes. On an idle peer the strings of its neighbours' hellos were a quarter
 * of all it allocated (bench:sched idle_cpu).
 */
function utf8 (bytes: Uint8Array): string {
  if (bytes.byteLength > 256) return textDecoder.decode(bytes)
  for (let i = 0; i < bytes.byteLength; i++) if (bytes[i] > 0x7f) return textDecoder.decode(bytes)
  return String.fromCharCode.apply(null, bytes as unknown as number[])
}

function isDefault (v: unknown): boolean {
  return v === undefined || v === null || v === 0 || v === false || v === '' ||
    (v instanceof Uint8Array && v.byteLength === 0)
}

export function message<T> (name: string, fields: readonly FieldSpec[]): MessageCodec<T> {
  const byNo = new Map<number, FieldSpec>(fields.map(f => [f.no, f]))
  // A decoded message starts as a copy of this (its immutable defaults), plus a fresh
  // array per repeated field: cheaper than asking defaultOf field by field, per message.
  const template: Record<string, unknown> = {}
  for (const f of fields) if (f.repeated !== true) template[f.name] = defaultOf(f)
  const repeatedNames = fields.filter(f => f.repeated === true).map(f => f.name)
  const writeOne = (f: FieldSpec, item: unknown, w: Writer): void => {
    w.uint32((f.no << 3) | wireTypeOf(f.type))
    if (typeof f.type === 'string') {
      writeScalar(w, f.type, item)
    } else {
      w.fork()
      f.type.write(item, w)
      w.ldelim()
    }
  }

  const codec: MessageCodec<T> = {
    name,
    fields,
    write (value: T, w: Writer): void {
      const obj = value as Record<string, unknown>
      for (const f of fields) {
        const v = obj[f.name]
        if (f.repeated === true) {
          for (const item of (v as unknown[] | undefined) ?? []) if (item !== undefined && item !== null) writeOne(f, item, w)
        } else if (v !== undefined && v !== null && !(typeof f.type === 'string' && isDefault(v))) {
          writeOne(f, v, w)
        }
      }
    },
    read (r: Reader, end: number, depth: number): T {
      if (depth > MAX_DEPTH) throw new MalformedFrameError(`${name}: nesting deeper than ${MAX_DEPTH}`)
      const out: Record<string, unknown> = { ...template }
      for (const name of repeatedNames) out[name] = []
      while (r.pos < end) {
        const tag = r.uint32()
        const no = tag >>> 3
        const wire = tag & 7
        const f = byNo.get(no)
        if (f === undefined) {
          r.skipType(wire)
          continue
        }
        if (f.repeated === true && wire === WIRE_LEN && typeof f.type === 'string' && wireTypeOf(f.type) !== WIRE_LEN) {
          const packedEnd = r.uint32() + r.pos
          if (packedEnd > end) throw new MalformedFrameError(`${name}.${f.name}: packed field runs past the frame`)
          while (r.pos < packedEnd) (out[f.name] as unknown[]).push(readScalar(r, f.type))
          continue
        }
        if (wireTypeOf(f.type) !== wire) {
          r.skipType(wire)
          continue
        }
        let v: unknown
        if (typeof f.type === 'string') {
          v = readScalar(r, f.type)
        } else {
          const len = r.uint32()
          const subEnd = r.pos + len
          if (subEnd > end) throw new MalformedFrameError(`${name}.${f.name}: length ${len} runs past the frame`)
          v = f.type.read(r, subEnd, depth + 1)
          r.pos = subEnd
        }
        if (f.repeated === true) (out[f.name] as unknown[]).push(v)
        else out[f.name] = v
      }
      if (r.pos !== end) throw new MalformedFrameError(`${name}: field runs past the frame`)
      return out as T
    },
    encode (value: T): Uint8Array {
      const w = createWriter()
      codec.write(value, w)
      return w.finish()
    },
    decode (bytes: Uint8Array): T {
      try {
        const r = createReader(bytes)
        return codec.read(r, bytes.byteLength, 0)
      } catch (err) {
        if (err instanceof MalformedFrameError) throw err
        throw new MalformedFrameError(`${name}: ${(err as Error).message}`)
      }
    }
  }
  return codec
}
