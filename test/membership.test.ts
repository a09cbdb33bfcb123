/**
 * The failure detector's clock (core/membership.ts), driven by hand: silence
 * past the bound is a death, but a pause of the observer itself is not the
 * others' silence.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Membership } from '../core/membership.ts'

const BEAT = 1_000
const init = { heartbeatMs: BEAT, suspectAfterBeats: 3, deadAfterBeats: 5, deadWhileConnectedBeats: 15, maxPeers: 16 }

function meshOfTwo (): { membership: Membership, deaths: string[] } {
  const membership = new Membership(init)
  const deaths: string[] = []
  membership.onDeath(peer => { deaths.push(peer) })
  membership.heard('a', { functions: ['f'] }, 0)
  membership.connected('a')
  membership.heard('b', { functions: ['f'] }, 0)
  membership.connected('b')
  return { membership, deaths }
}

test('a connected peer silent past the bound is dead when this peer ticked all along', () => {
  const { membership, deaths } = meshOfTwo()
  for (let t = BEAT; t <= 20 * BEAT; t += BEAT) {
    membership.heard('b', {}, t)
    membership.tick(t)
  }
  assert.deepEqual(deaths, ['a'])
  assert.equal(membership.deaths.silent, 1)
  assert.equal(membership.pauses, 0)
})

test('a stall of this peer is not the silence of the others: a late tick declares nobody dead', () => {
  const { membership, deaths } = meshOfTwo()
  membership.tick(BEAT)
  // This peer's loop was blocked for 20 s: nobody was heard, nor could have been.
  membership.tick(21 * BEAT)
  assert.deepEqual(deaths, [])
  assert.equal(membership.pauses, 1)
  assert.equal(membership.isAlive('a'), true)
  // Heard from b after the stall, not from a: a's silence counts from the end of the pause.
  for (let t = 22 * BEAT; t <= 40 * BEAT; t += BEAT) {
    membership.heard('b', {}, t)
    membership.tick(t)
    if (t < 35 * BEAT) assert.deepEqual(deaths, [], `no verdict at ${t} ms`)
  }
  assert.deepEqual(deaths, ['a'])
})

test('a function that peers offered before is remembered after they die; a name nobody offered is not', () => {
  const { membership } = meshOfTwo()
  membership.declareDead('a', 'refused')
  membership.declareDead('b', 'refused')
  assert.deepEqual(membership.offering('f'), [])
  assert.equal(membership.wasOffered('f'), true)
  assert.equal(membership.wasOffered('g'), false)
})

test('any frame from a peer proves it lives; a frame from a peer declared dead does not bring it back', () => {
  const { membership, deaths } = meshOfTwo()
  for (let t = BEAT; t <= 20 * BEAT; t += BEAT) {
    membership.touch('a', t)
    membership.tick(t)
  }
  assert.deepEqual(deaths, ['b'])
  assert.equal(membership.isAlive('a'), true)
  membership.touch('b', 21 * BEAT)
  assert.equal(membership.has('b'), false)
})
