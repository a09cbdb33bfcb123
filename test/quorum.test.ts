/**
 * Untrusted results: a call run on k distinct peers is accepted when q agree
 * (as BOINC does); a lying peer is outvoted and counted; disagreement is a
 * QuorumError listing every peer's vote.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { spawnPeer, stopAll, waitForFullMesh } from '../node/local-cluster.ts'
import { startMesh, waitFor } from './helpers.ts'

const LIAR = fileURLToPath(new URL('./fixtures/lying-peer.ts', import.meta.url))

test('a lying peer is outvoted under replicas: 3, quorum: 2, and reported; with quorum 3 the call fails with QuorumError naming the votes', async () => {
  const t = await startMesh(2)
  const liar = await spawnPeer({ module: LIAR, bootstrap: [t.peers[0].addrs[0]] })
  try {
    await waitForFullMesh(t.caller, [...t.peers, liar], 30_000)
    const add = t.caller.fn<(a: number, b: number) => number>('add')
    for (let i = 0; i < 5; i++) {
      const r = add.options({ replicas: 3, quorum: 2, timeoutMs: 30_000 }).remote(i, 10)
      assert.equal(await t.caller.get(r), i + 10)
      r.release()
    }
    // Replicas that answer after the quorum are still heard: the liar is counted every time.
    await waitFor('every vote to be counted', () => t.caller.stats().calls.outvoted[liar.peer] === 5 ? true : undefined, 15_000)
    assert.deepEqual(Object.keys(t.caller.stats().calls.outvoted), [liar.peer], 'only the liar was outvoted')
    assert.deepEqual(t.caller.suspects()[liar.peer], { badChunks: 0, falseClaims: 0, outvoted: 5, refused: 0 }, 'and it is on the list of suspects')

    const strict = add.options({ replicas: 3, quorum: 3, timeoutMs: 30_000 }).remote(1, 1)
    await assert.rejects(t.caller.get(strict), (err: Error & { votes?: Array<{ peer: string }> }) => {
      assert.equal(err.name, 'QuorumError')
      assert.match(err.message, new RegExp(liar.peer.slice(-6)))
      return true
    })
    strict.release()
    await assert.rejects(async () => { add.options({ replicas: 2, quorum: 3 }).remote(1, 1) }, RangeError)
    const tooMany = add.options({ replicas: 4, timeoutMs: 10_000 }).remote(1, 1)
    await assert.rejects(t.caller.get(tooMany), (err: Error) => err.name === 'QuorumError')
    tooMany.release()
  } finally {
    await stopAll([liar])
    await t.close()
  }
})
