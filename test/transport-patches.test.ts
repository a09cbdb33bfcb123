/**
 * The maintained transport patches: yamux window updates (node/yamux-window.ts),
 * corked TCP writes (node/tcp-writev.ts) and throw-free length-prefixed reads
 * (node/lp-decode.ts): installed, saving frames, syscalls and thrown errors on
 * small messages, and bulk transfers still intact.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../node/index.ts'
import { yamuxWindowPatch } from '../node/yamux-window.ts'
import { tcpWritevPatch } from '../node/tcp-writev.ts'
import { lpDecodePatch } from '../node/lp-decode.ts'

const QUIC = '/ip4/127.0.0.1/udp/0/quic-v1'

test('small replies skip window updates and leave in one write each; a 16 MiB transfer still completes intact', async () => {
  assert.equal(yamuxWindowPatch.installed, true)
  assert.equal(tcpWritevPatch.installed, true)
  assert.equal(lpDecodePatch.installed, true)
  const a = await createMesh()
  const b = await createMesh({ bootstrap: a.libp2p.getMultiaddrs().map(String) })
  try {
    b.register('echo', (x: unknown) => x)
    b.register('make', (n: number) => new Uint8Array(n).map((_v, i) => i % 251))
    const before = yamuxWindowPatch.skipped
    const corkedBefore = tcpWritevPatch.corked
    const skippedBefore = lpDecodePatch.skipped
    for (let i = 0; i < 100; i++) {
      using r = a.fn<(x: number) => number>('echo').remote(i)
      assert.equal(await a.get(r, { timeoutMs: 10_000 }), i)
    }
    assert.ok(yamuxWindowPatch.skipped - before >= 100, `only ${yamuxWindowPatch.skipped - before} window updates were skipped`)
    // A request and its reply each leave as one corked write of several buffers.
    assert.ok(tcpWritevPatch.corked - corkedBefore >= 200, `only ${tcpWritevPatch.corked - corkedBefore} writes were corked`)
    // Each of those arrives as whole Noise frames: decoding it ends on an empty buffer, not a thrown RangeError.
    assert.ok(lpDecodePatch.skipped - skippedBefore >= 200, `only ${lpDecodePatch.skipped - skippedBefore} reads ended without a throw`)
    using big = a.fn<(n: number) => Uint8Array>('make').remote(16 * 2 ** 20)
    const bytes = await a.get(big, { timeoutMs: 60_000 })
    assert.equal(bytes.length, 16 * 2 ** 20)
    for (let i = 0; i < bytes.length; i += 65_537) assert.equal(bytes[i], i % 251)
  } finally {
    await b.stop()
    await a.stop()
  }
})

test('QUIC between Node peers (opt-in with a /quic-v1 listen address): calls and a 16 MiB transfer, read in more than 4 KiB at a time', async () => {
  const a = await createMesh({ listen: [QUIC] })
  const b = await createMesh({ listen: [QUIC], bootstrap: a.libp2p.getMultiaddrs().map(String) })
  try {
    const { quicReadPatch } = await import('../node/quic-reads.ts')
    assert.equal(quicReadPatch.installed, true)
    assert.ok(a.libp2p.getConnections().every(c => c.remoteAddr.toString().includes('/quic-v1')), 'the peers are connected over QUIC only')
    b.register('echo', (x: unknown) => x)
    b.register('make', (n: number) => new Uint8Array(n).map((_v, i) => i % 251))
    using r = a.fn<(x: number) => number>('echo').remote(7)
    assert.equal(await a.get(r, { timeoutMs: 10_000 }), 7)
    const [reads, bytes] = [quicReadPatch.reads, quicReadPatch.bytes]
    using big = a.fn<(n: number) => Uint8Array>('make').remote(16 * 2 ** 20)
    const got = await a.get(big, { timeoutMs: 60_000 })
    assert.equal(got.length, 16 * 2 ** 20)
    for (let i = 0; i < got.length; i += 65_537) assert.equal(got[i], i % 251)
    const perRead = (quicReadPatch.bytes - bytes) / (quicReadPatch.reads - reads)
    assert.ok(perRead > 4096, `QUIC reads averaged ${Math.round(perRead)} bytes`)
  } finally {
    await b.stop()
    await a.stop()
  }
})
