/**
 * Garbage over real streams: a peer process is sent fuzzed frames on its control
 * and chunk protocols, stream after stream; then it must still be alive and serve
 * an honest call and an honest pull.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { CONTROL_PROTOCOL } from '../core/channel.ts'
import { CHUNK_PROTOCOL } from '../core/transfer.ts'
import { startMesh } from './helpers.ts'
import { checksum, pattern } from './fixtures/functions.ts'

/** Sends `garbage` (frames, `framesPerStream` to a stream) at a peer process. */
export async function fuzzPeer (garbage: Uint8Array[], framesPerStream = 8): Promise<{ streams: number, frames: number }> {
  const streams = Math.floor(garbage.length / framesPerStream)
  const t = await startMesh(1)
  try {
    const [target] = t.peers
    const id = peerIdFromString(target.peer)
    let frames = 0
    for (let s = 0; s < streams; s++) {
      const protocol = s % 2 === 0 ? CONTROL_PROTOCOL : CHUNK_PROTOCOL
      const stream = await t.caller.libp2p.dialProtocol(id, protocol, { signal: AbortSignal.timeout(10_000) })
      for (let f = 0; f < framesPerStream; f++) {
        try {
          stream.send(garbage[s * framesPerStream + f])
        } catch {
          // The peer refused an earlier frame and closed the stream: as it should.
          break
        }
        frames++
      }
      // Done with it, whatever the peer made of it (a graceful close would wait on a peer that stopped reading).
      stream.abort(new Error('fuzz stream done'))
    }
    if (target.child.exitCode !== null || target.child.signalCode !== null) throw new Error(`the peer exited (${target.child.exitCode ?? target.child.signalCode}):\n${target.stderr()}`)
    // Honest traffic still works: a call, and a pull of a chunked object from the fuzzed peer.
    const sum = t.caller.fn<(a: number, b: number) => number>('add').options({ peer: target.peer, timeoutMs: 20_000 }).remote(2, 3)
    if (await t.caller.get(sum) !== 5) throw new Error('the honest call came back wrong')
    sum.release()
    const made = t.caller.fn<(n: number, s: number) => Uint8Array>('make').options({ peer: target.peer, timeoutMs: 20_000 }).remote(4 * 2 ** 20, 9)
    const bytes = await t.caller.get(made, { timeoutMs: 20_000 })
    if (checksum(bytes) !== checksum(pattern(4 * 2 ** 20, 9))) throw new Error('the honest pull came back wrong')
    made.release()
    return { streams, frames }
  } finally {
    await t.close()
  }
}
