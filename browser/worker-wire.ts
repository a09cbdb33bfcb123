/**
 * What crosses between a tab and its workers (the function pool's and the
 * OPFS spill's): errors, which structured clone would strip of their names,
 * and the binary values a message can move or share instead of copying.
 */

export { deserializeError, serializeError } from '../core/thread-errors.ts'
export type { SerializedError } from '../core/thread-errors.ts'

/** How deep into arrays, plain objects, Maps and Sets binary values are looked for. */
const MAX_DEPTH = 4

function isPlainObject (v: object): boolean {
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function isShared (buffer: ArrayBufferLike): boolean {
  return typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer
}

/**
 * The plain ArrayBuffers in a value the sender gives up: the value itself, or
 * binary values inside its arrays, plain objects, Maps and Sets. Posted with
 * these in the transfer list they move instead of being serialized and copied
 * back out (two copies). Shared memory is shared anyway.
 */
export function transferablesOf (value: unknown): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>()
  const visit = (v: unknown, depth: number): void => {
    if (v === null || typeof v !== 'object') return
    if (v instanceof ArrayBuffer) {
      if (!v.detached) out.add(v)
      return
    }
    if (ArrayBuffer.isView(v)) {
      if (v.buffer instanceof ArrayBuffer && !v.buffer.detached) out.add(v.buffer)
      return
    }
    if (depth >= MAX_DEPTH) return
    if (Array.isArray(v)) for (const x of v) visit(x, depth + 1)
    else if (v instanceof Map) for (const x of v.values()) visit(x, depth + 1)
    else if (v instanceof Set) for (const x of v) visit(x, depth + 1)
    else if (isPlainObject(v)) for (const x of Object.values(v)) visit(x, depth + 1)
  }
  visit(value, 0)
  return [...out]
}

/**
 * A value the sender keeps (arguments belong to the caller's store), made
 * ready to post with one copy at most: binary values in shared memory or in
 * `keep` (buffers the caller gives up) go as they are; any other binary value
 * becomes a tight copy of its bytes (not of the whole buffer behind a view)
 * that is transferred. Structured clone alone would copy twice, and copy the
 * whole buffer behind a small view. Containers are rebuilt shallowly, only
 * where something inside them changed.
 */
export function detachableCopy (value: unknown, keep: ReadonlySet<ArrayBufferLike>): { value: unknown, transfer: ArrayBuffer[] } {
  const transfer = new Set<ArrayBuffer>()
  const copies = new Map<object, unknown>()
  const visit = (v: unknown, depth: number): unknown => {
    if (v === null || typeof v !== 'object') return v
    const done = copies.get(v)
    if (done !== undefined) return done
    let out: unknown = v
    if (v instanceof ArrayBuffer) {
      if (keep.has(v)) transfer.add(v)
      else if (!v.detached) {
        out = v.slice(0)
        transfer.add(out as ArrayBuffer)
      }
    } else if (ArrayBuffer.isView(v)) {
      const buffer = v.buffer
      if (isShared(buffer)) return v
      if (keep.has(buffer)) {
        transfer.add(buffer as ArrayBuffer)
        return v
      }
      const bytes = new Uint8Array(buffer, v.byteOffset, v.byteLength).slice()
      transfer.add(bytes.buffer)
      const Ctor = v.constructor as new (buffer: ArrayBuffer, byteOffset?: number, length?: number) => ArrayBufferView
      const perElement = (v as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT
      out = perElement === undefined ? new Ctor(bytes.buffer) : new Ctor(bytes.buffer, 0, v.byteLength / perElement)
    } else if (depth < MAX_DEPTH) {
      if (Array.isArray(v)) {
        const items = v.map(x => visit(x, depth + 1))
        if (items.some((x, i) => x !== v[i])) out = items
      } else if (v instanceof Map) {
        const entries = [...v].map(([k, x]) => [k, visit(x, depth + 1)] as const)
        if (entries.some(([k, x]) => x !== v.get(k))) out = new Map(entries)
      } else if (v instanceof Set) {
        const items = [...v].map(x => visit(x, depth + 1))
        if (items.some(x => !v.has(x))) out = new Set(items)
      } else if (isPlainObject(v)) {
        const entries = Object.entries(v).map(([k, x]) => [k, visit(x, depth + 1)] as const)
        if (entries.some(([k, x]) => x !== (v as Record<string, unknown>)[k])) out = Object.fromEntries(entries)
      }
    }
    copies.set(v, out)
    return out
  }
  const out = visit(value, 0)
  return { value: out, transfer: [...transfer] }
}
