/**
 * Quotas per remote peer: a flooding peer (bounded loops on loopback) past each
 * quota is refused with typed refusals, then hung up on, while an honest peer's
 * calls keep completing; and the defaults README states are the ones enforced.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { DEFAULTS, createMesh } from '../node/index.ts'
import type { Mesh } from '../node/index.ts'
import { waitFor } from '../node/local-cluster.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { encodeArgs } from '../core/codec.ts'
import { STATE_TOPIC } from '../core/gossip.ts'
import { ChunkHeaderCodec, ChunkRequestCodec, ChunkStatus, EnvelopeCodec } from '../core/protocol/messages.ts'
import { FrameDecoder, decodeVarint, frame } from '../core/protocol/framing.ts'
import register from './fixtures/functions.ts'

test('a flooding peer past its call, chunk and gossip quotas is refused, then hung up on; an honest peer\'s calls keep completing', async () => {
  const target = await createMesh({ quotas: { callsInFlight: 16, chunksInFlight: 8, gossipPerSecond: 20, strikesBeforeHangUp: 150 } })
  register(target)
  const join = { bootstrap: target.libp2p.getMultiaddrs().map(String) }
  const honest = await createMesh(join)
  const flooder = await createMesh(join)
  const meshes: Mesh[] = [flooder, honest, target]
  let stop = false
  try {
    const t = target.peerId
    const big = honest.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: t }).remote(8 * 2 ** 20, 1)
    await honest.wait([big], { timeoutMs: 20_000 })

    // Honest traffic, all along.
    let honestDone = 0
    const honestLoop = (async () => {
      try {
      while (!stop) {
        const r = honest.fn<(a: number, b: number) => number>('add').options({ peer: t, timeoutMs: 20_000 }).remote(honestDone, 1)
        assert.equal(await honest.get(r), honestDone + 1)
        r.release()
        honestDone++
      }
      } catch (err) {
        if (!stop) throw err
      }
    })()

    // Chunks: batches of 8 on 6 streams at once, beyond 8 in flight; the flooder reads what comes back.
    const id = peerIdFromString(t)
    const chunkAnswers = { ok: 0, refused: 0 }
    await Promise.all(Array.from({ length: 6 }, async () => {
      const stream = await flooder.libp2p.dialProtocol(id, CHUNK_PROTOCOL).catch(() => undefined)
      if (stream === undefined) return
      void (async () => {
        const decoder = new FrameDecoder(2 * 2 ** 20)
        try {
          for await (const data of stream) {
            for (const f of decoder.push(data)) {
              const [headerLength, prefix] = decodeVarint(f)!
              const { status } = ChunkHeaderCodec.decode(f.subarray(prefix, prefix + headerLength))
              if (status === ChunkStatus.REFUSED) chunkAnswers.refused++
              if (status === ChunkStatus.OK) chunkAnswers.ok++
            }
          }
        } catch {
          // Hung up on: the end of this stream.
        }
      })()
      for (let i = 0; i < 10; i++) {
        try { stream.send(frame(ChunkRequestCodec.encode({ id: big.id, indices: [0, 1, 2, 3, 4, 5, 6, 7], bitfield: false }))) } catch { break }
      }
    }))
    // Gossip: far more than the mesh makes.
    const pubsub = (flooder.libp2p.services as { pubsub: { publish: (topic: string, data: Uint8Array) => Promise<unknown> } }).pubsub
    for (let i = 0; i < 60; i++) await pubsub.publish(STATE_TOPIC, new Uint8Array([i & 255])).catch(() => {})

    await waitFor('chunk requests past the quota to be refused', () => target.stats().quotas.chunks > 0 ? true : undefined, 10_000)
    // The flooder is told so, chunk by chunk, while the quota's worth is served.
    await waitFor('the flooder to receive REFUSED chunk frames', () => chunkAnswers.refused > 0 ? true : undefined, 10_000)
    await waitFor('chunks within the quota to be served', () => chunkAnswers.ok > 0 ? true : undefined, 10_000)
    await waitFor('gossip past the rate to be ignored', () => target.stats().quotas.gossip > 0 ? true : undefined, 10_000)
    // Calls, first on a control stream of the flooder's own: 20 long ones at a quota of 16. What the
    // target answers is read off the wire, since the flooder's mesh would take a refusal as a
    // reason to place the call again later (and is hung up on before it gives up).
    const control = await flooder.libp2p.dialProtocol(id, CONTROL_PROTOCOL)
    const callReplies: string[] = []
    void (async () => {
      const decoder = new FrameDecoder(2 ** 20)
      try {
        for await (const data of control) for (const f of decoder.push(data)) callReplies.push(EnvelopeCodec.decode(f.subarray()).error?.name ?? 'a call reply')
      } catch {
        // Hung up on later in the test.
      }
    })()
    const sleepArgs = encodeArgs([3_000]).bytes
    for (let i = 1; i <= 20; i++) {
      const resultId = crypto.getRandomValues(new Uint8Array(16))
      control.send(frame(EnvelopeCodec.encode({ id: i, reply: false, call: { resultId, fn: 'sleep', args: sleepArgs, timeoutMs: 60_000, argBytes: 0, maySpillBack: false } })))
    }
    await waitFor('the flooder to receive QuotaExceededError for the calls past its quota', () => callReplies.filter(n => n === 'QuotaExceededError').length >= 4 ? true : undefined, 10_000)
    // Then 200 through the flooder's mesh at once (a plain function: nothing on the caller's side holds them back).
    const flood = Array.from({ length: 200 }, () => flooder.fn<(ms: number) => number>('sleep').options({ peer: t, timeoutMs: 60_000 }).remote(3_000))
    await waitFor('calls past the quota to be refused', () => target.stats().quotas.calls > 0 ? true : undefined, 10_000)
    await waitFor('the target to hang up on the flooder', () => target.stats().quotas.hangUps > 0 && flooder.libp2p.getConnections(id).length === 0 ? true : undefined, 30_000)
    const before = honestDone
    await waitFor('honest calls to keep completing', () => honestDone >= before + 5 ? true : undefined, 20_000)
    stop = true
    await honestLoop
    for (const r of flood) r.release()
    big.release()
  } finally {
    stop = true
    for (const m of meshes) await m.stop()
  }
})

test('durable puts past a peer\'s stored-bytes quota are refused, room comes back when they are freed, and a peer that persists is hung up on', async () => {
  const MiB = 2 ** 20
  const target = await createMesh({ quotas: { storedBytes: 4 * MiB, strikesBeforeHangUp: 6 } })
  const join = { bootstrap: target.libp2p.getMultiaddrs().map(String) }
  const honest = await createMesh(join)
  const pusher = await createMesh(join)
  const meshes: Mesh[] = [pusher, honest, target]
  try {
    const t = target.peerId
    await waitFor('both peers to know the target', () => honest.peers().some(p => p.peer === t) && pusher.peers().some(p => p.peer === t) ? true : undefined, 10_000)
    const kept = [pusher.put(new Uint8Array(3 * MiB).fill(1), { owner: t, timeoutMs: 20_000 })]
    assert.deepEqual((await pusher.get(kept[0]!)).subarray(0, 4), new Uint8Array([1, 1, 1, 1]))
    // 3 MiB held for the pusher: 2 MiB more does not fit its 4 MiB.
    const over = pusher.put(new Uint8Array(2 * MiB).fill(2), { owner: t, timeoutMs: 20_000 })
    await assert.rejects(pusher.get(over), (err: Error) => err.name === 'QuotaExceededError' && /quota is 4194304 bytes/.test(err.message))
    over.release()
    assert.equal(target.stats().quotas.bytes, 1)
    assert.equal(target.suspects()[pusher.peerId]?.refused, 1, 'the refusal is on the pusher\'s record')
    // The quota is per peer: another peer's put of the same size is taken.
    const honestPut = honest.put(new Uint8Array(2 * MiB).fill(3), { owner: t, timeoutMs: 20_000 })
    assert.equal((await honest.get(honestPut))[0], 3)
    // Freed, the bytes count no more.
    kept[0]!.release()
    await waitFor('the released object to be freed at the target', () => target.stats().refs.owned <= 1 ? true : undefined, 10_000)
    const again = pusher.put(new Uint8Array(2 * MiB).fill(4), { owner: t, timeoutMs: 20_000 })
    assert.equal((await pusher.get(again))[0], 4)
    // Persisting past the quota: refused each time, then hung up on.
    const id = peerIdFromString(t)
    for (let i = 0; i < 6 && pusher.libp2p.getConnections(id).length > 0; i++) {
      const r = pusher.put(new Uint8Array(3 * MiB).fill(5), { owner: t, timeoutMs: 20_000 })
      await assert.rejects(pusher.get(r))
      r.release()
    }
    await waitFor('the target to hang up on the pusher', () => target.stats().quotas.hangUps > 0 && pusher.libp2p.getConnections(id).length === 0 ? true : undefined, 10_000)
    assert.equal((await honest.get(honestPut))[0], 3)
    honestPut.release()
  } finally {
    for (const m of meshes) await m.stop()
  }
})

/** A shortened strike window (the default is 10 s), so the test sees old refusals stop counting. */
const STRIKE_WINDOW_MS = 3_000

test('the default quotas are README\'s and enforced: 4,096 calls and 256 chunks in flight, gossip max(100, 4 x peers) a second, a hang-up at 200 refusals within the strike window', async () => {
  // README's numbers, where the defaults live.
  assert.equal(DEFAULTS.quotaCallsInFlight, 4096)
  assert.equal(DEFAULTS.quotaChunksInFlight, 256)
  assert.equal(DEFAULTS.quotaGossipPerSecond, 100)
  assert.equal(DEFAULTS.quotaStrikesBeforeHangUp, 200)
  assert.equal(DEFAULTS.quotaStrikeWindowMs, 10_000)
  // Every quota at its default but the strike window.
  const target = await createMesh({ quotas: { strikeWindowMs: STRIKE_WINDOW_MS } })
  let release = (): void => {}
  const released = new Promise<void>(resolve => { release = resolve })
  // A call that stays in flight until the test lets it end.
  target.register('hold', async () => { await released; return 0 })
  const flooder = await createMesh({ bootstrap: target.libp2p.getMultiaddrs().map(String) })
  const meshes: Mesh[] = [flooder, target]
  try {
    const t = target.peerId
    const id = peerIdFromString(t)
    await waitFor('the flooder to know the target', () => flooder.peers().some(p => p.peer === t && p.functions.includes('hold')) ? true : undefined, 10_000)

    // Calls: 4,097 on a control stream of the flooder's own; the 4,097th is refused, the rest run.
    const control = await flooder.libp2p.dialProtocol(id, CONTROL_PROTOCOL)
    const replies = { refused: [] as number[], answered: 0, other: [] as string[] }
    void (async () => {
      const decoder = new FrameDecoder(2 ** 20)
      try {
        for await (const data of control) {
          for (const f of decoder.push(data)) {
            const env = EnvelopeCodec.decode(f.subarray())
            if (env.error?.name === 'QuotaExceededError') replies.refused.push(env.id)
            else if (env.callReply !== undefined) replies.answered++
            else replies.other.push(env.error?.name ?? 'an empty reply')
          }
        }
      } catch {
        // Hung up on later in the test.
      }
    })()
    const noArgs = encodeArgs([]).bytes
    const CALLS = DEFAULTS.quotaCallsInFlight + 1
    for (let i = 1; i <= CALLS; i++) {
      const resultId = crypto.getRandomValues(new Uint8Array(16))
      control.send(frame(EnvelopeCodec.encode({ id: i, reply: false, call: { resultId, fn: 'hold', args: noArgs, timeoutMs: 60_000, argBytes: 0, maySpillBack: false } })))
    }
    await waitFor('the call past 4,096 in flight to be refused', () => replies.refused.length > 0 ? true : undefined, 20_000)
    release()
    await waitFor('every call to be answered', () => replies.refused.length + replies.answered + replies.other.length >= CALLS ? true : undefined, 30_000)
    assert.deepEqual({ refused: replies.refused.length, answered: replies.answered, other: replies.other }, { refused: 1, answered: CALLS - 1, other: [] })
    assert.equal(target.stats().quotas.calls, 1)

    // Chunks: one request of 256 (of an object the target does not hold) is answered, one of 257 refused.
    const chunks = await flooder.libp2p.dialProtocol(id, CHUNK_PROTOCOL)
    const answers = { refused: 0, other: 0 }
    void (async () => {
      const decoder = new FrameDecoder(2 ** 20)
      try {
        for await (const data of chunks) {
          for (const f of decoder.push(data)) {
            const [headerLength, prefix] = decodeVarint(f)!
            const { status } = ChunkHeaderCodec.decode(f.subarray(prefix, prefix + headerLength))
            if (status === ChunkStatus.REFUSED) answers.refused++
            else answers.other++
          }
        }
      } catch {
        // Hung up on at the end of the test.
      }
    })()
    const unknown = crypto.getRandomValues(new Uint8Array(16))
    const ask = (n: number): void => { chunks.send(frame(ChunkRequestCodec.encode({ id: unknown, indices: Array.from({ length: n }, (_, i) => i), bitfield: false }))) }
    ask(DEFAULTS.quotaChunksInFlight)
    await waitFor('256 chunk answers', () => answers.refused + answers.other >= 256 ? true : undefined, 10_000)
    assert.deepEqual(answers, { refused: 0, other: 256 }, 'a request of 256 chunks is within the quota')
    ask(DEFAULTS.quotaChunksInFlight + 1)
    await waitFor('257 more chunk answers', () => answers.refused + answers.other >= 256 + 257 ? true : undefined, 10_000)
    assert.deepEqual(answers, { refused: 257, other: 256 }, 'a request of 257 chunks is refused, chunk by chunk')
    assert.equal(target.stats().quotas.chunks, 1)

    // Gossip, as the target's validator takes it from one relaying peer (one of its own: no
    // message of the mesh's own gossip comes from it): 100 a second with one peer known...
    const validators = (target.libp2p.services as { pubsub: { topicValidators: Map<string, (from: { toString(): string }, msg: unknown) => string> } }).pubsub.topicValidators
    const validate = validators.get(STATE_TOPIC)!
    const newPeer = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const relay = await newPeer()
    /** how many of `n` messages the relay sends within one second the target accepts */
    const acceptedOf = async (n: number): Promise<number> => {
      // All in one second of the quota's clock, not one used before: early in the next (a timer may fire a little early).
      const used = Math.floor(performance.now() / 1000)
      while (Math.floor(performance.now() / 1000) === used || performance.now() % 1000 > 200) await new Promise(resolve => setTimeout(resolve, 1010 - performance.now() % 1000))
      let accepted = 0
      for (let i = 0; i < n; i++) if (validate({ toString: () => relay }, {}) === 'accept') accepted++
      return accepted
    }
    assert.equal(target.peers().length, 1)
    assert.equal(await acceptedOf(150), 100, 'max(100, 4 x 1)')
    // ...and 4 a second per known peer once that is more: 40 more peers said hello, 4 x 41.
    const membership = (target as unknown as { membership: { heard: (peer: string, u: { functions: string[] }) => void } }).membership
    for (let i = 0; i < 40; i++) membership.heard(await newPeer(), { functions: [] })
    assert.equal(target.peers().length, 41)
    assert.equal(await acceptedOf(250), 4 * 41, 'max(100, 4 x 41)')
    assert.ok(flooder.libp2p.getConnections(id).length > 0, 'not hung up on yet')

    // Strikes: old refusals stop counting after the window; 200 within it hang up. Refusals of
    // the flooder's gossip are one strike each and cost nothing to make (a refused chunk
    // request costs 257 frames), so the counts come within the window.
    /** `n` refusals of the flooder, all in this turn */
    const refusals = (n: number): void => {
      for (let refused = 0; refused < n;) if (validate(flooder.libp2p.peerId, {}) !== 'accept') refused++
    }
    refusals(100)
    // Past the window since the last of those (and of the calls' and chunks' above), and of
    // the flooder's own gossip that came later in that second, over the rate those used up.
    await new Promise(resolve => setTimeout(resolve, STRIKE_WINDOW_MS + 1_100))
    const burst = performance.now()
    refusals(199)
    assert.equal(target.stats().quotas.hangUps, 0, `299 refusals, but only 199 within ${STRIKE_WINDOW_MS} ms: not hung up on`)
    refusals(1)
    assert.ok(performance.now() - burst < STRIKE_WINDOW_MS, 'the last 200 refusals came within the window')
    assert.equal(target.stats().quotas.hangUps, 1, 'the 200th refusal within the window hangs up')
    await waitFor('the target to hang up on the flooder', () => flooder.libp2p.getConnections(id).length === 0 ? true : undefined, 10_000)
  } finally {
    release()
    for (const m of meshes) await m.stop()
  }
})
