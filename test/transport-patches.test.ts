/**
 * The maintained transport patches: yamux window updates (node/yamux-window.ts)
 * and corked TCP writes (node/tcp-writev.ts): installed, saving frames and
 * syscalls on small messages, and bulk transfers still intact.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../node/index.ts'
import { yamuxWindowPatch } from '../node/yamux-window.ts'
import { tcpWritevPatch } from '../node/tcp-writev.ts'

test('small replies skip window updates and leave in one write each; a 16 MiB transfer still completes intact', async () => {
  assert.equal(yamuxWindowPatch.installed, true)
  assert.equal(tcpWritevPatch.installed, true)
  const a = await createMesh()
  const b = await createMesh({ bootstrap: a.libp2p.getMultiaddrs().map(String) })
  try {
    b.register('echo', (x: unknown) => x)
    b.register('make', (n: number) => new Uint8Array(n).map((_v, i) => i % 251))
    const before = yamuxWindowPatch.skipped
    const corkedBefore = tcpWritevPatch.corked
    for (let i = 0; i < 100; i++) {
      using r = a.fn<(x: number) => number>('echo').remote(i)
      assert.equal(await a.get(r, { timeoutMs: 10_000 }), i)
    }
    assert.ok(yamuxWindowPatch.skipped - before >= 100, `only ${yamuxWindowPatch.skipped - before} window updates were skipped`)
    // A request and its reply each leave as one corked write of several buffers.
    assert.ok(tcpWritevPatch.corked - corkedBefore >= 200, `only ${tcpWritevPatch.corked - corkedBefore} writes were corked`)
    using big = a.fn<(n: number) => Uint8Array>('make').remote(16 * 2 ** 20)
    const bytes = await a.get(big, { timeoutMs: 60_000 })
    assert.equal(bytes.length, 16 * 2 ** 20)
    for (let i = 0; i < bytes.length; i += 65_537) assert.equal(bytes[i], i % 251)
  } finally {
    await b.stop()
    await a.stop()
  }
})
