/**
 * Garbage over real streams: a peer process is sent fuzzed frames on its control
 * and chunk protocols, stream after stream. Each stream stays open until the peer
 * has read everything on it: it ends with an honest probe, and the sender waits for
 * the probe's answer or for the peer to reset the stream. The peer counts what
 * its decoders made of each frame (test/fixtures/decode-counting.ts); then it must
 * still be alive and serve an honest call and an honest pull.
 */
import { fileURLToPath } from 'node:url'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { FrameDecoder, decodeVarint, frame } from '../core/protocol/framing.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, EnvelopeCodec } from '../core/protocol/messages.ts'
import { startMesh } from './helpers.ts'
import type { TestMesh } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'
import type { DecoderCounts } from './fixtures/decode-counting.ts'
import type { GarbageStream } from './fuzz.ts'

const COUNTING = fileURLToPath(new URL('./fixtures/decode-counting.ts', import.meta.url))
const PROBE_ID = 0xf00d
const PROBE_OBJECT = new Uint8Array(16).fill(0xab)
/** how long a stream may take to be read to its end by the peer */
const STREAM_TIMEOUT_MS = 10_000

export type PeerCounts = Record<'framing' | 'envelope' | 'chunkRequest', DecoderCounts>

/** The frames that show the peer has read all before it: a request it must answer. */
function probe (protocol: GarbageStream['protocol']): Uint8Array {
  return protocol === 'control'
    ? frame(EnvelopeCodec.encode({ id: PROBE_ID, reply: false, nameLookup: { name: 'fuzz-probe' } })).subarray()
    : frame(ChunkRequestCodec.encode({ id: PROBE_OBJECT, indices: [0], bitfield: false, watch: false })).subarray()
}

/** Whether `f` (one frame from the peer) answers the probe. */
function answersProbe (protocol: GarbageStream['protocol'], f: Uint8Array): boolean {
  if (protocol === 'control') {
    const env = EnvelopeCodec.decode(f)
    return env.reply && env.id === PROBE_ID
  }
  const head = decodeVarint(f)
  if (head === undefined) return false
  const [headerLength, prefix] = head
  const header = ChunkHeaderCodec.decode(f.subarray(prefix, prefix + headerLength))
  return Buffer.from(header.id).equals(PROBE_OBJECT)
}

/** Reads the peer's side of `stream` until it answers the probe ('answered') or ends the stream ('reset'). */
async function untilAnswered (stream: Stream, protocol: GarbageStream['protocol']): Promise<'answered' | 'reset'> {
  const decoder = new FrameDecoder(64 * 2 ** 20)
  try {
    for await (const data of stream) {
      for (const f of decoder.push(data)) if (answersProbe(protocol, f.subarray())) return 'answered'
    }
  } catch {
    // Reset by the peer: it refused a frame, as it may.
  }
  return 'reset'
}

async function countsAt (t: TestMesh, peer: string): Promise<PeerCounts> {
  using r = t.caller.fn<() => PeerCounts>('decoderCounts').options({ peer, timeoutMs: 20_000 }).remote()
  return await t.caller.get(r)
}

/** Sends `garbage` at a peer process; returns what was sent and what the peer's decoders saw of it. */
export async function fuzzPeer (garbage: GarbageStream[]): Promise<{ streams: number, sent: number, answered: number, reset: number, seen: PeerCounts }> {
  const t = await startMesh(1, { module: COUNTING })
  try {
    const [target] = t.peers
    const id = peerIdFromString(target.peer)
    const before = await countsAt(t, target.peer)
    let sent = 0
    let answered = 0
    for (const { protocol, frames } of garbage) {
      const stream = await t.caller.libp2p.dialProtocol(id, protocol === 'control' ? CONTROL_PROTOCOL : CHUNK_PROTOCOL, { signal: AbortSignal.timeout(STREAM_TIMEOUT_MS) })
      const ended = untilAnswered(stream, protocol)
      for (const f of [...frames, probe(protocol)]) {
        if (stream.writeStatus !== 'writable') break
        stream.send(f)
        sent++
      }
      let timedOut = false
      const timer = setTimeout(() => { timedOut = true; stream.abort(new Error('fuzz stream timed out')) }, STREAM_TIMEOUT_MS)
      const how = await ended
      clearTimeout(timer)
      if (timedOut) throw new Error(`the peer neither answered nor reset a ${protocol} stream in ${STREAM_TIMEOUT_MS} ms`)
      if (how === 'answered') answered++
      stream.abort(new Error('fuzz stream done'))
    }
    if (target.child.exitCode !== null || target.child.signalCode !== null) throw new Error(`the peer exited (${target.child.exitCode ?? target.child.signalCode}):\n${target.stderr()}`)
    const after = await countsAt(t, target.peer)
    const seen = Object.fromEntries(Object.entries(after).map(([k, c]) => {
      const b = before[k as keyof PeerCounts]
      return [k, { decoded: c.decoded - b.decoded, typed: c.typed - b.typed, untyped: c.untyped - b.untyped }]
    })) as PeerCounts
    // Honest traffic still works: a call, and a pull of a chunked object from the fuzzed peer.
    const sum = t.caller.fn<(a: number, b: number) => number>('add').options({ peer: target.peer, timeoutMs: 20_000 }).remote(2, 3)
    if (await t.caller.get(sum) !== 5) throw new Error('the honest call came back wrong')
    sum.release()
    const made = t.caller.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: target.peer, timeoutMs: 20_000 }).remote(4 * 2 ** 20, 9)
    const bytes = await t.caller.get(made, { timeoutMs: 20_000 })
    if (checksum(bytes) !== checksum(pattern(4 * 2 ** 20, 9))) throw new Error('the honest pull came back wrong')
    made.release()
    return { streams: garbage.length, sent, answered, reset: garbage.length - answered, seen }
  } finally {
    await t.close()
  }
}
