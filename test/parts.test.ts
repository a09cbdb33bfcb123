/** The parts of a peer that hold logic of their own, each without a mesh around it. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Broadcast } from '../core/broadcast.ts'
import { DEFAULTS } from '../core/constants.ts'
import type { PeerContext } from '../core/context.ts'
import { Handoffs } from '../core/handoffs.ts'
import { Lineage } from '../core/lineage.ts'
import { OwnershipTable } from '../core/ownership.ts'
import { newObjectId } from '../core/ref.ts'
import type { CallOptions } from '../core/types.ts'

test('handoffs: pins go when the receiver acknowledges, or dies; nobody else can release them', () => {
  const unpinned: string[] = []
  const handoffs = new Handoffs({ unpin: key => { unpinned.push(key) } })
  handoffs.hold('result-1', 'caller', ['a', 'b'])
  handoffs.hold('result-2', 'caller', ['c'])
  handoffs.hold('lookup-1', 'other', ['d'])
  handoffs.release('stranger', 'result-1')
  assert.deepEqual(unpinned, [])
  handoffs.release('caller', 'result-1')
  assert.deepEqual(unpinned, ['a', 'b'])
  handoffs.release('caller', 'result-1')
  assert.deepEqual(unpinned, ['a', 'b'], 'a second ack unpins nothing')
  handoffs.peerGone('caller')
  assert.deepEqual(unpinned, ['a', 'b', 'c'])
  assert.equal(handoffs.size, 1)
})

test('lineage: a lost result is reopened and run again, preferring the peer it was required on; a dropped one is not', async () => {
  const table = new OwnershipTable({ self: 'me', sendBorrow: async () => {}, onFree: () => {} })
  const arg = table.createOwned(newObjectId(), { state: 'pending' })
  const result = table.createOwned(newObjectId(), { state: 'pending', lineage: { fn: 'f' } })
  table.pin(arg.key)
  table.settle(result.key, { state: 'ready', inline: false, encoding: 0, size: 10, locations: ['dead-peer'], contained: [arg.key] })
  const reruns: Array<{ fn: string, args: Uint8Array, options: CallOptions, key: string }> = []
  const lost: string[] = []
  let finish!: () => void
  const lineage = new Lineage({
    table,
    rerun: async (fn, args, options, res) => {
      reruns.push({ fn, args, options, key: res.key })
      await new Promise<void>(resolve => { finish = resolve })
    },
    copiesLost: key => { lost.push(key) },
    // a call with one result has no siblings to ask about
    isLost: () => { throw new Error('asked whether a sibling is lost') }
  })
  lineage.record(result.key, { fn: 'f', options: { peer: 'dead-peer', timeoutMs: 5 }, args: new Uint8Array([1]) })
  lineage.updateArgs(result.key, new Uint8Array([2]))
  lineage.reconstruct(result.key)
  assert.equal(lineage.reconstructions, 1)
  assert.deepEqual(lost, [result.key])
  assert.equal(reruns.length, 1)
  assert.deepEqual(reruns[0].args, new Uint8Array([2]), 'the arguments as last encoded')
  assert.equal(reruns[0].options.peer, undefined)
  assert.equal(reruns[0].options.prefer, 'dead-peer')
  assert.equal(reruns[0].options.timeoutMs, 5)
  assert.equal(table.get(result.key)?.owned?.state, 'pending', 'the result is pending again')
  assert.equal(table.get(arg.key)?.pins, 1, 'what the old result held stays pinned while it runs again')
  finish()
  await new Promise(resolve => setImmediate(resolve))
  assert.equal(table.get(arg.key)?.pins, 0)
  lineage.drop(result.key)
  assert.equal(lineage.has(result.key), false)
  lineage.reconstruct(result.key)
  assert.equal(reruns.length, 1, 'no lineage, no run')
})

function tree (swarm: boolean): Broadcast {
  // no gossiped flows: every holder's upload rate is unmeasured (core/tree.ts)
  const ctx = { peerId: 'owner', membership: { all: () => [] } } as unknown as PeerContext
  return new Broadcast({ ctx, swarm, objects: { whenReady: async () => {}, fetchValue: async () => ({ release: () => {} }) } })
}

test('broadcast tree: each holder feeds at most ownerFanout receivers as a parent; later ones pull from receivers, and from the seed too; done frees room', () => {
  assert.equal(DEFAULTS.ownerFanout, 2)
  assert.equal(DEFAULTS.parentsPerReceiver, 2)
  const t = tree(true)
  const holders = ['owner']
  const parentsOf = (receiver: string): string[] => {
    const parents = t.feedOrRedirect('k', receiver, [...holders])
    holders.push(receiver)
    return parents
  }
  assert.deepEqual(parentsOf('r1'), ['owner'])
  // Unmeasured rates count alike: the holder with fewer children first (core/tree.ts).
  assert.deepEqual(parentsOf('r2'), ['r1', 'owner'])
  assert.equal(t.isReceiving('k', 'r1'), true)
  // The owner feeds two now; r3's parents are receivers with room, and the owner (the seed,
  // which super-seeds) is named after them: each receiver gets some chunks from it to relay.
  assert.deepEqual(parentsOf('r3'), ['r2', 'r1', 'owner'])
  assert.deepEqual(t.feedOrRedirect('k', 'r3', [...holders]), ['r2', 'r1', 'owner'], 'a receiver keeps its parents')
  t.doneReceiving('k', 'r1')
  t.doneReceiving('k', 'r2')
  assert.equal(t.isReceiving('k', 'r1'), false)
  assert.deepEqual(parentsOf('r4'), ['owner', 'r3'], 'done receivers free their parents\' room: the owner, and r3 (no children yet)')
  t.forget('k')
  assert.equal(t.isReceiving('k', 'r3'), false)
})

test('broadcast tree without swarming: a star from the holders that had it first', () => {
  const t = tree(false)
  assert.deepEqual(t.feedOrRedirect('k', 'r1', ['owner']), ['owner'])
  assert.deepEqual(t.feedOrRedirect('k', 'r2', ['owner', 'r1']), ['owner'])
  t.peerGone('r1')
  assert.equal(t.isReceiving('k', 'r1'), false)
})
