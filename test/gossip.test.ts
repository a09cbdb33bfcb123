/**
 * State gossip's cadence (core/gossip.ts) with a stand-in pubsub: a changed state is
 * published, an unchanged one is resent in the hellos (sayAlive) after 1, 2, 4 and 8
 * beats and published again only every `maxQuietBeats`; a resent state reaches the
 * receiver's view like a gossiped one; in deep quiet the hellos go every other beat.
 * And the failure detector (core/membership.ts) does not blame others for its own stall.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Gossip } from '../core/gossip.ts'
import type { PubSub } from '../core/gossip.ts'
import { Membership } from '../core/membership.ts'
import type { PeerState } from '../core/membership.ts'
import { PeerStateCodec } from '../core/protocol/messages.ts'

const BEAT_MS = 1000

function membership (): Membership {
  return new Membership({ heartbeatMs: BEAT_MS, suspectAfterBeats: 3, deadAfterBeats: 5, deadWhileConnectedBeats: 15, maxPeers: 100 })
}

function stateOf (peer: string, queued = 0): Omit<PeerState, 'seq'> {
  return { peer, functions: ['f'], addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${peer}`], slots: 2, queued, running: 0, storeUsed: 0, storeCapacity: 100, spilledBytes: 0, admitBytes: 80, bandwidth: 0, pooledFunctions: [], runtime: 'node', links: [], flows: [], names: [] }
}

/** a pubsub that records what is published */
function pubsub (): PubSub & { published: PeerState[] } {
  const published: PeerState[] = []
  return {
    published,
    subscribe () {},
    unsubscribe () {},
    async publish (_topic: string, data: Uint8Array) { published.push(PeerStateCodec.decode(data)) },
    addEventListener () {},
    removeEventListener () {}
  }
}

test('an unchanged state is resent in the hellos after 1, 2, 4, 8 beats and published again only every maxQuietBeats; a change is published at once', () => {
  const ps = pubsub()
  let state = stateOf('A')
  const hellos: Array<PeerState | undefined> = []
  const g = new Gossip({ pubsub: ps, membership: membership(), heartbeatMs: 3_600_000, state: () => state, maxQuietBeats: 16, sayAlive: (_s, resend) => { hellos.push(resend); return true }, reachesView: () => true })
  g.start()
  try {
    const beat = (): void => { (g as unknown as { beat: () => void }).beat() }
    assert.equal(ps.published.length, 1, 'published at start')
    const resentAt: number[] = []
    const publishedAt: number[] = []
    for (let i = 1; i <= 47; i++) {
      const [published, said] = [ps.published.length, hellos.length]
      beat()
      if (hellos.length > said && hellos.at(-1) !== undefined) resentAt.push(i)
      if (ps.published.length > published) publishedAt.push(i)
    }
    // Beats after the start's publish: resends at 1, 3, 7, 15; publishes at 31 and 47.
    assert.deepEqual(resentAt, [1, 3, 7, 15])
    assert.deepEqual(publishedAt, [31, 47])
    // A resend carries the state as published, with its seq.
    const resent = hellos.filter(h => h !== undefined)
    assert.ok(resent.every(h => h.seq === 1 && h.peer === 'A' && h.queued === 0))
    assert.equal(g.resent, 4)
    // A change is published at the next beat, and the cadence starts over.
    state = stateOf('A', 3)
    beat()
    assert.equal(ps.published.length, 4)
    assert.equal(ps.published.at(-1)?.queued, 3)
    beat()
    assert.equal(hellos.at(-1)?.seq, ps.published.at(-1)?.seq, 'resent one beat after the change')
  } finally {
    g.stop()
  }
})

test('with some of the view out of the hellos\' reach, the unchanged state is published instead of resent', () => {
  const ps = pubsub()
  const g = new Gossip({ pubsub: ps, membership: membership(), heartbeatMs: 3_600_000, state: () => stateOf('A'), maxQuietBeats: 16, sayAlive: () => false, reachesView: () => false })
  g.start()
  try {
    for (let i = 0; i < 4; i++) (g as unknown as { beat: () => void }).beat()
    assert.equal(ps.published.length, 5)
    assert.equal(g.resent, 0)
  } finally {
    g.stop()
  }
})

test('a state resent in a hello enters the view as a gossiped one would; one naming another peer than the sender is dropped', () => {
  const m = membership()
  const g = new Gossip({ pubsub: pubsub(), membership: m, heartbeatMs: BEAT_MS, state: () => stateOf('B'), maxQuietBeats: 16, sayAlive: () => true, reachesView: () => true })
  g.onResent('A', { ...stateOf('A', 5), seq: 7 })
  assert.equal(m.get('A')?.state?.queued, 5)
  assert.equal(g.received, 1)
  g.onResent('A', { ...stateOf('C', 1), seq: 9 })
  assert.equal(m.has('C'), false)
  assert.equal(g.received, 1)
})

test('deep quiet: after 8 unchanged beats a hello (or a state) goes every other beat, never two beats without; a change brings back every beat', () => {
  const ps = pubsub()
  let state = stateOf('A')
  let reaches = true
  const told: number[] = []
  let beatNo = 0
  const g = new Gossip({
    pubsub: ps,
    membership: membership(),
    heartbeatMs: 3_600_000,
    state: () => state,
    maxQuietBeats: 16,
    deepQuiet: { afterBeats: 8, helloBeats: 2 },
    sayAlive: () => { if (reaches) told.push(beatNo); return reaches },
    reachesView: () => reaches
  })
  g.start()
  try {
    const beat = (): void => { beatNo++; const n = ps.published.length; (g as unknown as { beat: () => void }).beat(); if (ps.published.length > n) told.push(beatNo) }
    for (let i = 0; i < 40; i++) beat()
    // Every beat before the 8th unchanged one, then every other.
    assert.deepEqual(told.filter(b => b <= 8), [1, 2, 3, 4, 5, 6, 7])
    const deep = told.filter(b => b >= 8)
    assert.ok(deep.length <= 17, `told ${deep.length} times in 33 deep-quiet beats`)
    for (let i = 1; i < told.length; i++) assert.ok(told[i] - told[i - 1] <= 2, `nothing between beats ${told[i - 1]} and ${told[i]}`)
    // A change: published, then a hello every beat again.
    state = stateOf('A', 1)
    const from = beatNo
    for (let i = 0; i < 6; i++) beat()
    assert.deepEqual(told.filter(b => b > from), [from + 1, from + 2, from + 3, from + 4, from + 5, from + 6])
    // Deep quiet again, and then part of the view only gossip reaches: published at the next beat.
    for (let i = 0; i < 12; i++) beat()
    reaches = false
    const published = ps.published.length
    beat()
    assert.equal(ps.published.length, published + 1)
  } finally {
    g.stop()
  }
})

test('the failure detector does not count its own stall as the others\' silence, and still finds a silent peer', () => {
  const m = membership()
  const t0 = 1_000_000
  m.tick(t0)
  m.heard('B', { functions: [] }, t0)
  m.tick(t0 + BEAT_MS)
  // This peer's loop stalled 6 s: B looks silent past the dead mark, but the tick is late.
  m.tick(t0 + 7 * BEAT_MS)
  assert.equal(m.get('B')?.liveness, 'alive')
  // B's hello, read once the loop runs again.
  m.heard('B', {}, t0 + 7 * BEAT_MS + 5)
  m.tick(t0 + 8 * BEAT_MS)
  assert.equal(m.get('B')?.liveness, 'alive')
  // Stalled again for 7 beats: 6 of them are credited, so B has been silent 2 beats of this peer's running time.
  m.tick(t0 + 15 * BEAT_MS)
  assert.equal(m.get('B')?.liveness, 'alive')
  // Truly silent: dead once silent past the bound (5 beats, unconnected) while this peer runs.
  for (let t = 16; t <= 18; t++) m.tick(t0 + t * BEAT_MS)
  assert.equal(m.has('B'), true, 'silent 4.995 beats of running time: not yet')
  m.tick(t0 + 19 * BEAT_MS)
  assert.equal(m.has('B'), false, 'dead after 5 beats of running time')
  assert.equal(m.pauses, 2)
})

test('deep quiet leaves the failure detector a beat of slack: hellos every fewer beats than the suspect mark', async () => {
  const { DEFAULTS } = await import('../core/constants.ts')
  assert.ok(DEFAULTS.deepQuietHelloBeats < DEFAULTS.suspectAfterBeats, `hellos every ${DEFAULTS.deepQuietHelloBeats} beats, suspect after ${DEFAULTS.suspectAfterBeats}`)
  assert.ok(DEFAULTS.deepQuietBeats >= 2, 'deep quiet only after the state has been still a while')
})
