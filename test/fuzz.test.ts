/** Fuzzing in npm test: a smaller count than `npm run fuzz` (test/fuzz.ts). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fuzzDecoders, wireGarbage } from './fuzz.ts'
import { fuzzPeer } from './fuzz-peer.ts'

test('fuzzing: 6,000 generated, mutated and random frames through every wire decoder: each decodes or fails typed', () => {
  const counts = fuzzDecoders(6_000)
  assert.ok(counts.frames >= 6_000)
  assert.ok(counts.typedErrors > 0 && counts.accepted > 0, `both kinds seen: ${JSON.stringify(counts)}`)
})

test('fuzzing over the wire: garbage on 60 control and chunk streams leaves the peer up and serving honest calls and pulls', async () => {
  const { streams, frames } = await fuzzPeer(wireGarbage(480))
  assert.equal(streams, 60)
  assert.ok(frames >= 60, `${frames} frames sent before the peer closed the streams`)
})
