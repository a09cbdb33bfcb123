/**
 * Property-based fuzzing (fast-check) of every decoder on the wire path: frame
 * splitting, the control Envelope, chunk requests and headers, gossiped peer
 * states, value and argument encodings. Inputs are generated valid messages,
 * those messages mutated (bytes flipped, cut short, spliced, repeated), and
 * random bytes. The property: a decoder returns, or throws a typed refmesh error;
 * nothing else (no TypeError or RangeError from deep inside, no hang).
 *
 * `npm run fuzz` runs at least 100,000 frames and then the same kind of garbage
 * over real streams at a real peer process; test/fuzz.test.ts runs a smaller count.
 */
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { RefmeshError } from '../core/errors.ts'
import { FrameDecoder, encodeVarint, frame } from '../core/protocol/framing.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, EnvelopeCodec, PeerStateCodec } from '../core/protocol/messages.ts'
import type { Envelope } from '../core/protocol/messages.ts'
import { decodeArgs, decodeValue, encodeArgs, encodeValue } from '../core/codec.ts'
import type { RefDesc } from '../core/protocol/messages.ts'

const bytes = (max = 64): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength: max })
const peerId = fc.constantFrom('12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', '12D3KooWMeAtnj3kxQDTk3DxsB5FUKFDTmx4P7wLEJ4ST4VtN3TC')
const refDesc: fc.Arbitrary<RefDesc> = fc.record({ id: bytes(16), owner: peerId, size: fc.option(fc.nat(), { nil: undefined }), locations: fc.option(fc.array(peerId, { maxLength: 3 }), { nil: undefined }) })
const errorInfo = fc.record({ name: fc.string(), message: fc.string(), stack: fc.string(), peer: fc.string(), fn: fc.string(), remote: fc.boolean() })
const manifest = fc.record({ size: fc.nat(), chunkSize: fc.nat(), hashes: fc.array(bytes(32), { maxLength: 4 }), encoding: fc.nat(12) })
const objectInfo = fc.record({ status: fc.nat(6), inline: bytes(), encoding: fc.nat(12), manifest: fc.option(manifest, { nil: undefined }), locations: fc.array(peerId, { maxLength: 3 }), error: fc.option(errorInfo, { nil: undefined }), contained: fc.array(refDesc, { maxLength: 3 }) })

/** Every kind of control message, each as a whole Envelope. */
export const envelope: fc.Arbitrary<Envelope> = fc.oneof(
  fc.record({ hello: fc.record({ functions: fc.array(fc.string(), { maxLength: 4 }), addrs: fc.array(fc.string(), { maxLength: 3 }), peers: fc.array(fc.record({ peer: peerId, addrs: fc.array(fc.string(), { maxLength: 2 }) }), { maxLength: 3 }) }) }),
  fc.record({ call: fc.record({ resultId: bytes(16), fn: fc.string(), args: bytes(), timeoutMs: fc.nat(), argBytes: fc.nat(), maySpillBack: fc.boolean() }) }),
  fc.record({ callReply: fc.record({ result: fc.option(objectInfo, { nil: undefined }) }) }),
  fc.record({ locate: fc.record({ id: bytes(16), wait: fc.boolean(), fetch: fc.boolean(), timeoutMs: fc.nat() }) }),
  fc.record({ locateReply: fc.record({ object: fc.option(objectInfo, { nil: undefined }) }) }),
  fc.record({ borrow: fc.record({ id: bytes(16), add: fc.boolean() }) }),
  fc.record({ free: fc.record({ ids: fc.array(bytes(16), { maxLength: 3 }) }) }),
  fc.record({ progress: fc.record({ id: bytes(16), have: bytes(), complete: fc.boolean() }) }),
  fc.record({ prefetch: fc.record({ object: refDesc }) }),
  fc.record({ adopt: fc.record({ id: bytes(16), object: objectInfo }) }),
  fc.record({ nameLookup: fc.record({ name: fc.string() }) }),
  fc.record({ resultAck: fc.record({ resultId: bytes(16) }) }),
  fc.record({ error: errorInfo })
).map(body => ({ id: 1, reply: false, ...body }) as Envelope)

/** A valid frame of each decoder, as bytes. */
const validFrames = fc.oneof(
  envelope.map(e => ({ kind: 'envelope' as const, bytes: EnvelopeCodec.encode(e) })),
  fc.record({ id: bytes(16), indices: fc.array(fc.nat(), { maxLength: 8 }), bitfield: fc.boolean(), watch: fc.boolean() }).map(r => ({ kind: 'chunkRequest' as const, bytes: ChunkRequestCodec.encode(r) })),
  fc.record({ id: bytes(16), index: fc.nat(), status: fc.nat(4) }).map(h => ({ kind: 'chunkHeader' as const, bytes: ChunkHeaderCodec.encode(h) })),
  fc.jsonValue().map(v => ({ kind: 'value' as const, bytes: encodeValue(v).bytes })),
  fc.array(fc.jsonValue(), { maxLength: 4 }).map(a => ({ kind: 'args' as const, bytes: encodeArgs(a).bytes }))
)

const kinds = ['envelope', 'chunkRequest', 'chunkHeader', 'peerState', 'value', 'args'] as const
type Kind = typeof kinds[number]

type Framed = { kind: Kind, bytes: Uint8Array }

/** Mutations of a valid frame body: what a buggy or hostile peer sends. */
function mutate (valid: fc.Arbitrary<Framed>): fc.Arbitrary<Framed> {
  return fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 6 }), fc.nat(), fc.constantFrom('flip', 'truncate', 'splice', 'repeat', 'prefix'), bytes(16)).map(([f, flips, cut, how, extra]) => {
    const b = f.bytes.slice()
    switch (how) {
      case 'flip': for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v; return { kind: f.kind, bytes: b }
      case 'truncate': return { kind: f.kind, bytes: b.subarray(0, b.length === 0 ? 0 : cut % b.length) }
      case 'splice': { const at = b.length === 0 ? 0 : cut % b.length; return { kind: f.kind, bytes: new Uint8Array([...b.subarray(0, at), ...extra, ...b.subarray(at)]) } }
      case 'repeat': return { kind: f.kind, bytes: new Uint8Array([...b, ...b]) }
      default: return { kind: f.kind, bytes: new Uint8Array([...extra, ...b]) }
    }
  })
}
const mutated = mutate(validFrames as fc.Arbitrary<Framed>)
const validEnvelopes: fc.Arbitrary<Framed> = envelope.map(e => ({ kind: 'envelope' as const, bytes: EnvelopeCodec.encode(e) }))
const validChunkRequests: fc.Arbitrary<Framed> = fc.record({ id: bytes(16), indices: fc.array(fc.nat(64), { maxLength: 8 }), bitfield: fc.boolean(), watch: fc.boolean() }).map(r => ({ kind: 'chunkRequest' as const, bytes: ChunkRequestCodec.encode(r) }))
const randomFrames = fc.tuple(fc.constantFrom(...kinds), bytes(256)).map(([kind, b]) => ({ kind, bytes: b }))

/** Decodes `bytes` as `kind`; returns the error's name when it threw. */
export function decodeAs (kind: Kind, bytes: Uint8Array): string | undefined {
  try {
    switch (kind) {
      case 'envelope': EnvelopeCodec.decode(bytes); break
      case 'chunkRequest': ChunkRequestCodec.decode(bytes); break
      case 'chunkHeader': ChunkHeaderCodec.decode(bytes); break
      case 'peerState': PeerStateCodec.decode(bytes); break
      case 'value': for (const encoding of [0, 1, 5, 9, 12]) decodeValue(encoding, bytes, desc => { throw new RefmeshError(`ref ${desc.owner}`) }); break
      case 'args': decodeArgs(bytes); break
    }
    return undefined
  } catch (err) {
    if (err instanceof RefmeshError) return err.name
    throw new Error(`${kind} decoder threw an untyped ${(err as Error).name}: ${(err as Error).message} (input ${Buffer.from(bytes).toString('hex').slice(0, 200)})`)
  }
}

/** Splits a stream of bytes into frames in arbitrary pieces: lengths beyond the limit must fail typed, before the body arrives. */
function framesProperty (): fc.IPropertyWithHooks<[Uint8Array[], number]> {
  return fc.property(fc.array(bytes(300), { maxLength: 8 }), fc.integer({ min: 1, max: 4096 }), (pieces, limit) => {
    const decoder = new FrameDecoder(limit)
    try {
      for (const piece of pieces) for (const f of decoder.push(new Uint8ArrayList(piece))) if (f.byteLength > limit) throw new Error(`a frame of ${f.byteLength} bytes passed a limit of ${limit}`)
    } catch (err) {
      if (!(err instanceof RefmeshError)) throw err
    }
  })
}

export interface FuzzCounts { frames: number, typedErrors: number, accepted: number }

/** Runs `runs` generated inputs through each property; throws on the first untyped failure. */
export function fuzzDecoders (runs: number, seed?: number): FuzzCounts {
  const counts: FuzzCounts = { frames: 0, typedErrors: 0, accepted: 0 }
  const check = (input: { kind: Kind, bytes: Uint8Array }): void => {
    counts.frames++
    if (decodeAs(input.kind, input.bytes) === undefined) counts.accepted++
    else counts.typedErrors++
  }
  const third = Math.ceil(runs / 3)
  const params = { numRuns: third, seed, endOnFailure: true }
  fc.assert(fc.property(mutated, check), params)
  fc.assert(fc.property(randomFrames, check), params)
  fc.assert(fc.property(validFrames, f => { check({ kind: f.kind as Kind, bytes: f.bytes }) }), params)
  fc.assert(framesProperty(), { ...params, numRuns: Math.ceil(third / 10) })
  return counts
}

export type WireProtocol = 'control' | 'chunk'
export interface GarbageStream { protocol: WireProtocol, frames: Uint8Array[] }

/**
 * Garbage for the wire, stream by stream (control and chunk alternate): mostly
 * near-valid frames (a valid Envelope or ChunkRequest, mutated, behind one length
 * prefix, so it reaches the protocol's decoder), some valid ones, and now and then
 * a length far beyond any limit (the framing refuses it). The first two streams
 * (one of each protocol) carry valid frames only: the positive control, which the
 * peer must read to the end and answer. Unframed junk is left to the in-process
 * framing property: its first bytes read as a plausible length make the peer wait
 * for a body that never comes, which is right but ends nothing.
 */
export function wireGarbage (streams: number, framesPerStream = 4, seed?: number): GarbageStream[] {
  const framed = (arb: fc.Arbitrary<Framed>): fc.Arbitrary<Uint8Array> => arb.map(m => frame(m.bytes).subarray())
  const garbageFor = (valid: fc.Arbitrary<Framed>): fc.Arbitrary<Uint8Array> => fc.oneof(
    { arbitrary: framed(mutate(valid)), weight: 8 },
    { arbitrary: framed(valid), weight: 4 },
    { arbitrary: fc.constant(encodeVarint(2 ** 31)), weight: 1 }
  )
  const sample = (arb: fc.Arbitrary<Uint8Array>): Uint8Array[] => fc.sample(arb, { numRuns: streams * framesPerStream, seed })
  const control = sample(garbageFor(validEnvelopes))
  const chunk = sample(garbageFor(validChunkRequests))
  const validControl = sample(framed(validEnvelopes))
  const validChunk = sample(framed(validChunkRequests))
  return Array.from({ length: streams }, (_, s) => {
    const range = [s * framesPerStream, (s + 1) * framesPerStream] as const
    return s % 2 === 0
      ? { protocol: 'control' as const, frames: (s < 2 ? validControl : control).slice(...range) }
      : { protocol: 'chunk' as const, frames: (s < 2 ? validChunk : chunk).slice(...range) }
  })
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runs = Number(process.env.FUZZ_RUNS ?? 100_000)
  const started = performance.now()
  const counts = fuzzDecoders(runs)
  console.log(`decoders: ${counts.frames} frames in ${Math.round(performance.now() - started)} ms: ${counts.accepted} accepted, ${counts.typedErrors} refused with typed errors, 0 untyped`)
  const { fuzzPeer } = await import('./fuzz-peer.ts')
  const wire = await fuzzPeer(wireGarbage(Number(process.env.FUZZ_STREAMS ?? 400)))
  console.log(`wire: ${wire.sent} frames sent on ${wire.streams} streams at a peer process (${wire.answered} read to the end and answered, ${wire.reset} reset by the peer); its decoders saw ${JSON.stringify(wire.seen)}; it stayed up and served an honest call and a 4 MiB pull afterwards`)
}
