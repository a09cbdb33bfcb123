/**
 * Private meshes: a peer without the mesh secret (or with a wrong one) cannot
 * run a call, fetch a chunk, or get into the gossip; with it, it can.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createMesh, PeerDiedError } from '../node/index.ts'
import type { Mesh } from '../node/index.ts'
import { spawnPeers, stopAll, waitFor, waitForFullMesh } from '../node/local-cluster.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { DEFAULT_CHUNK_SIZE, chunkSizeFor } from '../core/chunks.ts'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { encodeArgs } from '../core/codec.ts'
import { ChunkRequestCodec, EnvelopeCodec } from '../core/protocol/messages.ts'
import { FrameDecoder, frame } from '../core/protocol/framing.ts'
import { FIXTURES } from './helpers.ts'
import { pattern } from './fixtures/functions.ts'

const SECRET = 'correct horse battery staple'
const MiB = 2 ** 20
/** the objects asked for here are 4 MiB; chunk 0 of one is this long */
const CHUNK = chunkSizeFor(4 * MiB, DEFAULT_CHUNK_SIZE)

/**
 * Asks `member` for chunk 0 of `id` on a chunk stream of `asker`'s own: the bytes
 * that came back (a whole chunk is answer enough), and how the stream ended
 * ('answered', or the error that ended it; 'silent' when nothing ended it within 10 s).
 */
async function askChunk (asker: Mesh, member: string, id: Uint8Array): Promise<{ bytes: number, ended: string }> {
  let bytes = 0
  let silent = false
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    const stream = await asker.libp2p.dialProtocol(peerIdFromString(member), CHUNK_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    // A serving peer keeps its chunk stream open for more asks: only a timeout ends a short answer.
    timer = setTimeout(() => { silent = true; stream.abort(new Error('no whole chunk within 10 s')) }, 10_000)
    stream.send(frame(ChunkRequestCodec.encode({ id, indices: [0], bitfield: false })))
    for await (const data of stream) {
      bytes += data.byteLength
      if (bytes >= CHUNK) {
        stream.abort(new Error('done'))
        return { bytes, ended: 'answered' }
      }
    }
    return { bytes, ended: 'closed' }
  } catch (err) {
    return { bytes, ended: silent ? 'silent' : (err as Error).name }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Sends `member` a call of add(1, 1) on a control stream of `asker`'s own, past
 * anything the asker's mesh would check first: 'answered' when a reply came back,
 * else how the stream ended.
 */
async function askCall (asker: Mesh, member: string): Promise<string> {
  try {
    const stream = await asker.libp2p.dialProtocol(peerIdFromString(member), CONTROL_PROTOCOL, { signal: AbortSignal.timeout(5_000) })
    const resultId = crypto.getRandomValues(new Uint8Array(16))
    stream.send(frame(EnvelopeCodec.encode({ id: 7, reply: false, call: { resultId, fn: 'add', args: encodeArgs([1, 1]).bytes, timeoutMs: 5_000, argBytes: 0, maySpillBack: false } })))
    const decoder = new FrameDecoder(MiB)
    for await (const data of stream) {
      for (const f of decoder.push(data)) {
        const env = EnvelopeCodec.decode(f.subarray())
        if (env.reply && env.id === 7) {
          stream.abort(new Error('done'))
          return env.callReply !== undefined ? 'answered' : `error reply ${env.error?.name}`
        }
      }
    }
    return 'closed'
  } catch (err) {
    return (err as Error).name
  }
}

test('a private mesh: members run calls and pull chunks; peers without the secret, or with a wrong one, get nothing and are hung up on', async () => {
  const peers = await spawnPeers(2, { module: FIXTURES, env: { REFMESH_MESH_SECRET: SECRET } })
  const member = await createMesh({ bootstrap: [peers[0].addrs[0]], secret: SECRET })
  const rogues: Mesh[] = []
  try {
    await waitForFullMesh(member, peers, 30_000)
    // With the secret: calls, and a chunked object pulled from a peer.
    const made = member.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: peers[0].peer }).remote(4 * MiB, 3)
    assert.deepEqual(await member.get(made, { timeoutMs: 30_000 }), pattern(4 * MiB, 3))
    const sum = member.fn<(a: number, b: number) => number>('add').remote(2, 3)
    assert.equal(await member.get(sum, { timeoutMs: 30_000 }), 5)

    // A fresh object that lives only on peer 1, for the rogues to ask for.
    const kept = member.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: peers[1].peer }).remote(4 * MiB, 4)
    await member.wait([kept], { timeoutMs: 30_000 })
    // The positive control: a member asking the same way gets the chunk.
    const asked = await askChunk(member, peers[1].peer, kept.id)
    assert.equal(asked.ended, 'answered', `a member's direct chunk request is answered: ${JSON.stringify(asked)}`)
    assert.ok(asked.bytes >= CHUNK)
    assert.equal(await askCall(member, peers[0].peer), 'answered', 'a member\'s call on a stream of its own is answered')

    for (const secret of [undefined, 'a wrong guess']) {
      // Joining through a member fails: the member never says hello to it.
      await assert.rejects(createMesh({ bootstrap: [peers[0].addrs[0]], secret, authTimeoutMs: 3_000, bootstrapTimeoutMs: 4_000 }), (err: Error) => err instanceof PeerDiedError && err.name === 'JoinError' && /secret/.test(err.message))
      // Connected by hand, it can still try everything.
      const rogue = await createMesh({ secret, authTimeoutMs: 3_000 })
      rogues.push(rogue)
      for (const p of peers) await rogue.libp2p.dial(multiaddr(p.addrs[0]), { signal: AbortSignal.timeout(5_000) }).catch(() => {})
      // Through its mesh: it never learned who offers `add` (no member said hello).
      const call = rogue.fn<(a: number, b: number) => number>('add').options({ peer: peers[0].peer, timeoutMs: 5_000 }).remote(1, 1)
      await assert.rejects(rogue.get(call, { timeoutMs: 10_000 }), (err: Error) => err.name === 'FunctionNotFoundError')
      // On the wire, as the member was asked above: no reply, the stream is closed on it.
      const rogueCall = await askCall(rogue, peers[0].peer)
      assert.ok(rogueCall !== 'answered' && !rogueCall.startsWith('error reply'), `a rogue's call on a stream of its own gets no reply (${rogueCall})`)
      const rogueAsked = await askChunk(rogue, peers[1].peer, kept.id)
      assert.equal(rogueAsked.bytes, 0, `nor a direct chunk request (${JSON.stringify(rogueAsked)})`)
      assert.notEqual(rogueAsked.ended, 'answered')
      await waitFor('the members to hang up on it', () => rogue.libp2p.getConnections().length === 0 ? true : undefined, 15_000)
      for (const p of peers) {
        const s = await member.peerStats(p.peer)
        assert.ok(!s.peers.includes(rogue.peerId), 'no member counts it as a peer (its gossip and hello never got in)')
        assert.ok(s.auth.private)
      }
      assert.ok(!member.peers().some(p => p.peer === rogue.peerId))
      assert.ok(!rogue.peers().some(p => p.liveness === 'alive' && p.state !== undefined && peers.some(q => q.peer === p.peer) && p.functions.includes('add')), 'it learned no member\'s functions')
    }
    const refused = (await Promise.all(peers.map(async p => (await member.peerStats(p.peer)).auth.refused))).reduce((a, b) => a + b, 0)
    assert.ok(refused >= 2, `members refused the rogues (${refused})`)
    for (const r of [made, sum, kept]) r.release()
  } finally {
    for (const r of rogues) await r.stop()
    await member.stop()
    await stopAll(peers)
  }
})
