/**
 * A maintained patch of @chainsafe/libp2p-quic 2.1.1: `QuicStream.readFromStream`
 * asks the native stream for at most 4 KiB per read (CHUNK_SIZE), so a 32 MiB
 * pull is 8,192 napi calls, each a promise settled on the JavaScript thread
 * and a Uint8ArrayList around it: measured the largest share of a receiver's
 * main thread (test/bench/cpu-per-byte.ts). The native read returns what has
 * arrived, up to the size asked, so asking for more costs nothing when little
 * has arrived and saves a round per 4 KiB when much has.
 *
 * The read loop keeps the stream in a private field, so the patch is on the
 * native class's `read`, which the loop calls. test/transport-patches.test.ts
 * checks it is installed and that a bulk transfer over QUIC reads more than
 * 4 KiB at a time.
 */
export const QUIC_READ_BYTES = 256 * 1024

export const quicReadPatch = { installed: false, reads: 0, bytes: 0 }

const napiModule = new URL('./napi.js', import.meta.resolve('@chainsafe/libp2p-quic'))
const { Stream } = await import(napiModule.href) as { Stream?: { prototype: { read?: (this: unknown, max: number) => Promise<Uint8Array | null> } } }
const original = Stream?.prototype.read
if (Stream === undefined || typeof original !== 'function') {
  throw new Error('@chainsafe/libp2p-quic changed: napi.js no longer exports Stream with read(); revisit node/quic-reads.ts')
}
Stream.prototype.read = async function (max: number): Promise<Uint8Array | null> {
  const chunk = await original.call(this, Math.max(max, QUIC_READ_BYTES))
  quicReadPatch.reads++
  quicReadPatch.bytes += chunk?.byteLength ?? 0
  return chunk
}
quicReadPatch.installed = true
