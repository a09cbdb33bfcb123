/**
 * A maintained patch of one method of @libp2p/utils 7.4:
 * `LengthPrefixedDecoder.decode` loops until its length decoder throws a
 * RangeError for want of bytes, so every read that ends on a frame boundary
 * (nearly all of them for small messages) builds and throws an Error, stack
 * trace and all: Noise decodes every TCP read this way, and the throw was
 * ~25 us of a sequential no-op call's CPU on each side (its largest JS cost).
 * An empty buffer can never hold a length, so we stop there instead; what is
 * yielded, and every error, is unchanged.
 * test/transport-patches.test.ts checks the patch is installed and counts the
 * throws it saves.
 */
import { LengthPrefixedDecoder } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'

export const lpDecodePatch = { installed: false, skipped: 0 }

type Decode = (this: LengthPrefixedDecoder, buf: Uint8Array | Uint8ArrayList) => Generator<Uint8ArrayList>
const proto = LengthPrefixedDecoder.prototype as unknown as { decode: Decode }
const original = proto.decode
if (typeof original !== 'function' || !Object.hasOwn(proto, 'decode') || !('buffer' in new LengthPrefixedDecoder())) {
  throw new Error('@libp2p/utils changed: LengthPrefixedDecoder.decode or its buffer is gone; revisit node/lp-decode.ts')
}
proto.decode = function * (buf) {
  const pending = (this as unknown as { buffer: Uint8ArrayList }).buffer
  for (const frame of original.call(this, buf)) {
    yield frame
    // Checked after the consumer ran: an empty buffer cannot hold even a length, so the original's next turn could only throw.
    if (pending.byteLength === 0) {
      lpDecodePatch.skipped++
      return
    }
  }
}
lpDecodePatch.installed = true
