/**
 * The owner's choice of parents (core/tree.ts): without measurements the tree is
 * the fixed fan-out one; with measured upload rates a fast holder feeds more
 * receivers and a slow one fewer, and a receiver gains a much faster parent.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { UploadRates, chooseParents } from '../core/tree.ts'

const init = { fanout: 2, parents: 2 }
const MB = 1e6

/** Receivers arrive one by one at the owner, as in a broadcast; returns each holder's children. */
function grow (holders: string[], receivers: number, rates: UploadRates): Map<string, string[]> {
  const kids = new Map<string, string[]>()
  for (let k = 0; k < receivers; k++) {
    const chosen = chooseParents(holders, h => kids.get(h)?.length ?? 0, undefined, rates, init)
    for (const h of chosen) kids.set(h, [...kids.get(h) ?? [], `r${k}`])
  }
  return kids
}

test('unmeasured holders: each feeds the default fan-out, earliest first', () => {
  const kids = grow(['a', 'b', 'c', 'd'], 4, new UploadRates())
  assert.deepEqual([...kids].map(([h, k]) => [h, k.length]), [['a', 2], ['b', 2], ['c', 2], ['d', 2]])
})

test('a holder measured 4x faster than the median feeds more receivers; a slow one fewer', () => {
  const rates = new UploadRates()
  // Two receivers report what they got from each source over the last heartbeat.
  rates.observe([[{ from: 'fast', bytesPerSecond: 4 * MB }, { from: 'mid', bytesPerSecond: 1 * MB }], [{ from: 'mid2', bytesPerSecond: 1 * MB }, { from: 'slow', bytesPerSecond: 0.25 * MB }]])
  const kids = grow(['slow', 'mid', 'mid2', 'fast'], 5, rates)
  const fed = (h: string): number => kids.get(h)?.length ?? 0
  assert.equal(fed('fast'), 4, 'the fast holder feeds twice the default fan-out')
  assert.equal(fed('slow'), 1, 'the slow one feeds one receiver')
  assert.ok(kids.get('fast')?.includes('r0'), 'the first receiver goes to the fast holder')
})

test('a complete holder (the owner\'s copy) keeps the default fan-out however fast it measured', () => {
  const rates = new UploadRates()
  rates.observe([[{ from: 'owner', bytesPerSecond: 8 * MB }, { from: 'r1', bytesPerSecond: 1 * MB }, { from: 'r2', bytesPerSecond: 1 * MB }]])
  const kids = new Map<string, number>()
  // Three receivers fill the three holders' default room exactly.
  for (let k = 0; k < 3; k++) {
    for (const h of chooseParents(['owner', 'r1', 'r2'], h => kids.get(h) ?? 0, undefined, rates, init, h => h !== 'owner')) kids.set(h, (kids.get(h) ?? 0) + 1)
  }
  assert.equal(kids.get('owner'), 2)
  // Nor is it added to a receiver's parents as a faster one.
  assert.deepEqual(chooseParents(['owner', 'r1', 'r2'], h => h === 'owner' ? 0 : 2, ['r1', 'r2'], rates, init, h => h !== 'owner'), ['r1', 'r2'])
})

test('a receiver keeps its parents and gains one that would serve it much faster', () => {
  const rates = new UploadRates()
  rates.observe([[{ from: 'a', bytesPerSecond: 1 * MB }, { from: 'b', bytesPerSecond: 1 * MB }, { from: 'fast', bytesPerSecond: 5 * MB }]])
  const load = (h: string): number => h === 'fast' ? 0 : 2
  assert.deepEqual(chooseParents(['a', 'b', 'fast'], load, ['a', 'b'], rates, init), ['a', 'b', 'fast'])
  // Not when the other holder would serve it no faster than its parents do now (c feeds one receiver already).
  const even = new UploadRates()
  even.observe([[{ from: 'a', bytesPerSecond: 1 * MB }, { from: 'b', bytesPerSecond: 1 * MB }, { from: 'c', bytesPerSecond: 1 * MB }]])
  assert.deepEqual(chooseParents(['a', 'b', 'c'], h => h === 'c' ? 1 : 2, ['a', 'b'], even, init), ['a', 'b'])
})

test('upload rates: the sum over the peers a holder feeds, its peak kept and fading', () => {
  const rates = new UploadRates()
  rates.observe([[{ from: 'h', bytesPerSecond: 2 * MB }], [{ from: 'h', bytesPerSecond: 3 * MB }]], 0)
  assert.equal(rates.rate('h', 0), 5 * MB)
  // Idle later: the peak stays, fading with a 30 s half-life.
  rates.observe([[], undefined], 1000)
  assert.ok(Math.abs((rates.rate('h', 30_000) as number) - 2.5 * MB) < 1)
  assert.equal(rates.rate('unknown'), undefined)
})
