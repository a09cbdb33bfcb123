/** Chunk boundaries and SHA-256 manifests. WebCrypto, so the browser runs the same code. */
import type { Manifest } from './protocol/messages.ts'

export const DEFAULT_CHUNK_SIZE = 1024 * 1024

export function chunkCount (size: number, chunkSize: number): number {
  return size === 0 ? 0 : Math.ceil(size / chunkSize)
}

export function chunkRange (manifest: Pick<Manifest, 'size' | 'chunkSize'>, index: number): [number, number] {
  const start = index * manifest.chunkSize
  return [start, Math.min(manifest.size, start + manifest.chunkSize)]
}

/** SHA-256 of some bytes. Runtimes may supply a faster one (Node: node:crypto, which also takes shared memory). */
export type Hasher = (data: Uint8Array) => Promise<Uint8Array> | Uint8Array

export const webCryptoSha256: Hasher = async (data) => {
  // WebCrypto refuses views of shared memory: hash a private copy of those.
  const view = data.buffer instanceof ArrayBuffer ? data : data.slice()
  return new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', view as Uint8Array<ArrayBuffer>))
}

export async function makeManifest (data: Uint8Array, encoding: number, chunkSize = DEFAULT_CHUNK_SIZE, sha256: Hasher = webCryptoSha256): Promise<Manifest> {
  const count = chunkCount(data.byteLength, chunkSize)
  const hashes: Uint8Array[] = new Array(count)
  const manifest: Manifest = { size: data.byteLength, chunkSize, hashes, encoding }
  for (let i = 0; i < count; i++) {
    const [start, end] = chunkRange(manifest, i)
    hashes[i] = await sha256(data.subarray(start, end))
  }
  return manifest
}

export function sameHash (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
