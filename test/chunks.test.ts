/** Chunk sizes (core/chunks.ts) and the uplink they follow (core/uplink.ts). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_CHUNK_SIZE, chunkSizeFor } from '../core/chunks.ts'
import { UplinkMeter } from '../core/uplink.ts'

const KiB = 1024
const MiB = 1024 * KiB
const MBIT = 1e6 / 8

test('chunk sizes: at least 64 chunks down to 256 KiB; behind a measured slow uplink a chunk crosses it in about 80 ms, down to 128 KiB', () => {
  assert.equal(chunkSizeFor(256 * MiB, DEFAULT_CHUNK_SIZE), MiB)
  assert.equal(chunkSizeFor(32 * MiB, DEFAULT_CHUNK_SIZE), 512 * KiB)
  assert.equal(chunkSizeFor(16 * MiB, DEFAULT_CHUNK_SIZE), 256 * KiB)
  assert.equal(chunkSizeFor(4 * MiB, DEFAULT_CHUNK_SIZE), 256 * KiB)
  // A fast uplink changes nothing; 100 Mbit/s keeps 512 KiB (42 ms); 20 Mbit/s halves to 128 KiB.
  assert.equal(chunkSizeFor(32 * MiB, DEFAULT_CHUNK_SIZE, 1000 * MBIT), 512 * KiB)
  assert.equal(chunkSizeFor(32 * MiB, DEFAULT_CHUNK_SIZE, 100 * MBIT), 512 * KiB)
  assert.equal(chunkSizeFor(256 * MiB, DEFAULT_CHUNK_SIZE, 100 * MBIT), 512 * KiB)
  assert.equal(chunkSizeFor(16 * MiB, DEFAULT_CHUNK_SIZE, 20 * MBIT), 128 * KiB)
  assert.equal(chunkSizeFor(256 * MiB, DEFAULT_CHUNK_SIZE, 1 * MBIT), 128 * KiB)
})

test('the uplink meter: bytes over busy periods, the peak kept and fading; pauses and small periods do not count', () => {
  const meter = new UplinkMeter()
  assert.equal(meter.rate(0), undefined)
  // 256 KiB every 100 ms for 1 s: 2.5 MiB over 0.9 s.
  for (let t = 0; t <= 900; t += 100) meter.add(256 * KiB, t)
  const rate = meter.rate(900)
  assert.ok(rate !== undefined && Math.abs(rate - 2.5 * MiB / 0.9) < 1, `${rate}`)
  // A slower period later does not lower it; the peak fades with time (half-life 60 s).
  for (let t = 5000; t <= 6000; t += 200) meter.add(256 * KiB, t)
  assert.ok(Math.abs((meter.rate(6000) as number) - rate * 0.5 ** (5100 / 60_000)) < 1)
  // A faster one raises it.
  for (let t = 10_000; t <= 10_600; t += 50) meter.add(256 * KiB, t)
  assert.ok((meter.rate(10_600) as number) > 1.5 * rate)
  // One chunk, chunks far apart, or a burst shorter than 500 ms measure nothing.
  const idle = new UplinkMeter()
  for (let t = 0; t < 10_000; t += 1000) idle.add(512 * KiB, t)
  for (let t = 20_000; t <= 20_300; t += 20) idle.add(256 * KiB, t)
  assert.equal(idle.rate(20_300), undefined)
})
