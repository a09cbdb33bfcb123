/**
 * The test vectors' field notation (core/protocol/vectors/README.md): proto field
 * names, bytes as lowercase hex, 64-bit integers as JSON numbers, fields at their
 * proto3 default left out. Converts between it and the objects the project's codecs take.
 */
import type { MessageCodec } from '../core/protocol/wire.ts'

export const hex = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
export const unhex = (text: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(text, 'hex'))
const snake = (name: string): string => name.replace(/[A-Z]/g, c => '_' + c.toLowerCase())

function isDefault (v: unknown): boolean {
  return v === undefined || v === 0 || v === false || v === '' || (v instanceof Uint8Array && v.byteLength === 0)
}

/** A decoded message in vector notation. */
export function toFields (codec: MessageCodec<any>, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const f of codec.fields) {
    const v = value[f.name]
    const one = (item: unknown): unknown => typeof f.type !== 'string'
      ? toFields(f.type, item as Record<string, unknown>)
      : f.type === 'bytes' ? hex(item as Uint8Array) : item
    if (f.repeated === true) {
      const items = (v as unknown[] | undefined) ?? []
      if (items.length > 0) out[snake(f.name)] = items.map(one)
    } else if (typeof f.type !== 'string') {
      if (v !== undefined) out[snake(f.name)] = one(v)
    } else if (!isDefault(v)) {
      out[snake(f.name)] = one(v)
    }
  }
  return out
}

/** A message object as the project's decoder returns it (every scalar field present, at its default when absent). */
export function fromFields (codec: MessageCodec<any>, fields: Record<string, unknown>): Record<string, unknown> {
  const known = new Set(codec.fields.map(f => snake(f.name)))
  for (const k of Object.keys(fields)) if (!known.has(k)) throw new TypeError(`${codec.name} has no field ${k}`)
  const out: Record<string, unknown> = {}
  for (const f of codec.fields) {
    const v = fields[snake(f.name)]
    const one = (item: unknown): unknown => typeof f.type !== 'string'
      ? fromFields(f.type, item as Record<string, unknown>)
      : f.type === 'bytes' ? unhex(item as string) : item
    if (f.repeated === true) out[f.name] = ((v as unknown[] | undefined) ?? []).map(one)
    else if (v !== undefined) out[f.name] = one(v)
    else if (typeof f.type !== 'string') out[f.name] = undefined
    else out[f.name] = { uint32: 0, uint64: 0, double: 0, bool: false, string: '', bytes: new Uint8Array(0) }[f.type]
  }
  return out
}
