/** The wire: frames, messages and values decode strictly; bad input costs one stream, never the peer. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Stream } from '@libp2p/interface'
import { FrameDecoder, encodeVarint, frame } from '../core/protocol/framing.ts'
import { EnvelopeCodec, ManifestCodec } from '../core/protocol/messages.ts'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { FrameTooLargeError, MalformedFrameError } from '../core/errors.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'

test('frames split across reads decode whole; an oversized length is refused before its body arrives', () => {
  const decoder = new FrameDecoder(100)
  const f = frame(new Uint8Array([1, 2, 3]), new Uint8Array([4])).subarray()
  assert.deepEqual(decoder.push(f.subarray(0, 2)), [])
  const frames = decoder.push(f.subarray(2))
  assert.equal(frames.length, 1)
  assert.deepEqual([...frames[0].subarray()], [1, 2, 3, 4])
  assert.throws(() => new FrameDecoder(100).push(encodeVarint(101)), FrameTooLargeError)
  assert.throws(() => new FrameDecoder(100).push(new Uint8Array(9).fill(0xff)), MalformedFrameError)
})

test('messages round-trip, skip unknown fields, and reject garbage with MalformedFrameError', () => {
  const env = { id: 7, reply: false, locate: { id: new Uint8Array(16).fill(3), wait: true, fetch: false, timeoutMs: 500, denied: ["12D3KooWholder"] } }
  const bytes = EnvelopeCodec.encode(env)
  const back = EnvelopeCodec.decode(bytes)
  assert.equal(back.id, 7)
  assert.deepEqual(back.locate, env.locate)
  // An unknown field (number 99, varint) from a newer peer is skipped.
  const withUnknown = new Uint8Array([...bytes, (99 << 3) & 0x7f | 0x80, 99 >> 4, 1])
  assert.equal(EnvelopeCodec.decode(withUnknown).id, 7)
  assert.throws(() => EnvelopeCodec.decode(new Uint8Array([0x2a, 0x05, 1])), MalformedFrameError)
  assert.throws(() => ManifestCodec.decode(new Uint8Array([0x1a, 0xff, 0xff, 0xff, 0x0f])), MalformedFrameError)
})

async function remoteCloses (stream: Stream, timeoutMs: number): Promise<void> {
  const deadline = AbortSignal.timeout(timeoutMs)
  const closed = (async () => {
    try {
      for await (const _ of stream) { /* drain until the remote closes or resets */ }
    } catch { /* a reset is a close too */ }
  })()
  await Promise.race([closed, new Promise((_r, reject) => deadline.addEventListener('abort', () => reject(new Error('the peer kept a bad stream open'))))])
}

test('a malformed or oversized frame closes that stream only; the peer keeps serving', async () => {
  const t = await startMesh(1)
  try {
    const target = peerIdFromString(t.peers[0].peer)
    const cases: Array<{ protocol: string, bytes: Uint8Array, expect: 'close' | 'error reply' }> = [
      { protocol: CONTROL_PROTOCOL, bytes: frame(new Uint8Array([0x2a, 0x05, 1, 2])).subarray(), expect: 'close' },
      { protocol: CONTROL_PROTOCOL, bytes: encodeVarint(64 * 2 ** 20), expect: 'close' },
      { protocol: CONTROL_PROTOCOL, bytes: frame(EnvelopeCodec.encode({ id: 3, reply: false })).subarray(), expect: 'error reply' },
      { protocol: CHUNK_PROTOCOL, bytes: encodeVarint(2 ** 30), expect: 'close' },
      { protocol: CHUNK_PROTOCOL, bytes: frame(new Uint8Array([0xff, 0xff, 0xff])).subarray(), expect: 'close' }
    ]
    for (const { protocol, bytes, expect } of cases) {
      const stream = await t.caller.libp2p.dialProtocol(target, protocol)
      stream.send(bytes)
      if (expect === 'close') {
        await remoteCloses(stream, 5_000)
        continue
      }
      // A well-formed request the peer does not understand gets a typed error reply.
      for await (const data of stream) {
        // The reply carries the error's stack, whose length follows the install path: no tight limit here.
        const reply = EnvelopeCodec.decode(new FrameDecoder(64 * 1024).push(data)[0].subarray())
        assert.equal(reply.id, 3)
        assert.equal(reply.error?.name, 'ProtocolError')
        break
      }
      stream.abort(new Error('done'))
    }
    const sum = t.caller.fn<(a: number, b: number) => number>('add').remote(2, 3)
    assert.equal(await t.caller.get(sum, { timeoutMs: 5_000 }), 5)
    sum.release()
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})
