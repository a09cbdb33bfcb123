/** Chunk boundaries and SHA-256 manifests. WebCrypto, so the browser runs the same code. */
import type { Manifest } from './protocol/messages.ts'

export const DEFAULT_CHUNK_SIZE = 1024 * 1024
/**
 * An object is cut into at least this many chunks where chunks of MIN_CHUNK_SIZE allow it:
 * a chunk is what receivers relay to each other in a broadcast, and one crosses a slow
 * uplink in a while (1 MiB: 0.4 s at 20 Mbit/s), so the first relays start a chunk's time
 * after the seed does and the last chunk still has its rounds to make after the seed's last
 * byte. With 16 chunks of 1 MiB, 16 MiB to 8 receivers behind 20 Mbit/s uplinks took 1.9
 * times S/B; cut in 64 of 256 KiB, about 1.5.
 */
const MIN_CHUNKS = 64
const MIN_CHUNK_SIZE = 256 * 1024
/**
 * Where the maker has measured its uplink (uplink.ts), a chunk crosses it in at most about
 * this long, down to SLOW_LINK_MIN_CHUNK_SIZE: behind 20 Mbit/s uplinks 16 MiB in 128 chunks
 * of 128 KiB reached 8 receivers in 1.25 times S/B, in 64 of 256 KiB 1.34 (3 interleaved
 * runs each). On loopback, where the cores are the limit, a 32 MiB object cut in 256 KiB
 * chunks instead of 512 KiB took 7-30% longer: an unmeasured uplink keeps the rule above.
 */
const CHUNK_SECONDS = 0.08
const SLOW_LINK_MIN_CHUNK_SIZE = 128 * 1024

/**
 * The chunk size of an object of `size` bytes: `largest` halved while it makes fewer than
 * MIN_CHUNKS chunks, down to MIN_CHUNK_SIZE; then, given the maker's uplink in bytes per
 * second, while a chunk would take longer than CHUNK_SECONDS to cross it.
 */
export function chunkSizeFor (size: number, largest: number, uplinkBytesPerSecond?: number): number {
  let chunkSize = largest
  while (chunkSize / 2 >= MIN_CHUNK_SIZE && size / chunkSize < MIN_CHUNKS) chunkSize /= 2
  if (uplinkBytesPerSecond !== undefined && uplinkBytesPerSecond > 0) {
    while (chunkSize / 2 >= SLOW_LINK_MIN_CHUNK_SIZE && chunkSize / uplinkBytesPerSecond > CHUNK_SECONDS) chunkSize /= 2
  }
  return chunkSize
}

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

/** The manifest of `data`, in chunks of at most `largestChunk` bytes (chunkSizeFor, with the maker's uplink where measured). */
export async function makeManifest (data: Uint8Array, encoding: number, largestChunk = DEFAULT_CHUNK_SIZE, sha256: Hasher = webCryptoSha256, uplinkBytesPerSecond?: number): Promise<Manifest> {
  const chunkSize = chunkSizeFor(data.byteLength, largestChunk, uplinkBytesPerSecond)
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
