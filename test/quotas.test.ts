/**
 * Quotas per remote peer: a flooding peer (bounded loops on loopback) past each
 * quota is refused with typed refusals, then hung up on, while an honest peer's
 * calls keep completing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { peerIdFromString } from '@libp2p/peer-id'
import { createMesh } from '../node/index.ts'
import type { Mesh } from '../node/index.ts'
import { waitFor } from '../node/local-cluster.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { STATE_TOPIC } from '../core/gossip.ts'
import { ChunkRequestCodec } from '../core/protocol/messages.ts'
import { frame } from '../core/protocol/framing.ts'
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

    // Chunks: batches of 8 on 6 streams at once, beyond 8 in flight.
    const id = peerIdFromString(t)
    await Promise.all(Array.from({ length: 6 }, async () => {
      const stream = await flooder.libp2p.dialProtocol(id, CHUNK_PROTOCOL).catch(() => undefined)
      if (stream === undefined) return
      for (let i = 0; i < 10; i++) {
        try { stream.send(frame(ChunkRequestCodec.encode({ id: big.id, indices: [0, 1, 2, 3, 4, 5, 6, 7], bitfield: false }))) } catch { break }
      }
    }))
    // Gossip: far more than the mesh makes.
    const pubsub = (flooder.libp2p.services as { pubsub: { publish: (topic: string, data: Uint8Array) => Promise<unknown> } }).pubsub
    for (let i = 0; i < 60; i++) await pubsub.publish(STATE_TOPIC, new Uint8Array([i & 255])).catch(() => {})

    await waitFor('chunk requests past the quota to be refused', () => target.stats().quotas.chunks > 0 ? true : undefined, 10_000)
    await waitFor('gossip past the rate to be ignored', () => target.stats().quotas.gossip > 0 ? true : undefined, 10_000)
    // Calls: 200 long ones at once (a plain function: nothing on the caller's side holds them back).
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
