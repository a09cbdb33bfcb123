/**
 * Tabs as peers (issue 6): an object moves tab to tab over a direct WebRTC
 * connection, and calls run between tabs and Node peers in both directions.
 * Chromium tabs driven by Playwright; the Node peers are real processes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../../node/index.ts'
import type { Mesh } from '../../node/index.ts'
import { waitFor } from '../../node/local-cluster.ts'
import { checksum, pattern } from '../../browser/bench-functions.ts'
import { startBrowserCluster } from './harness.ts'
import type { BrowserCluster, Tab } from './harness.ts'
import { CHUNK_PROTOCOL } from '../../core/transfer.ts'
import { DEFAULT_CHUNK_SIZE, chunkSizeFor } from '../../core/chunks.ts'

const MiB = 2 ** 20

/** `tab`'s connections to `other`, each with what its chunk streams carried since it opened. */
async function chunkLinks (tab: Tab, other: Tab): Promise<Array<{ id: string, remoteAddr: string, direction: string, multiplexer: string | undefined, direct: boolean, limited: boolean, streams: number, sent: number, received: number }>> {
  return await tab.page.evaluate(({ peer, protocol }) => {
    const r = window.refmesh
    const links = r.links(peer)
    return r.mesh!.libp2p.getConnections().filter(c => c.remotePeer.toString() === peer).map(c => {
      const l = links.find(l => l.id === c.id)
      return {
        id: c.id,
        remoteAddr: c.remoteAddr.toString(),
        direction: c.direction,
        multiplexer: c.multiplexer,
        direct: c.direct,
        limited: c.limits != null,
        streams: l?.streams[protocol] ?? 0,
        sent: l?.bytes[protocol]?.sent ?? 0,
        received: l?.bytes[protocol]?.received ?? 0
      }
    })
  }, { peer: other.peer, protocol: CHUNK_PROTOCOL })
}

/** Fails with the tabs' console output, which is where a tab's trouble shows. */
async function withCluster (c: BrowserCluster, body: () => Promise<void>): Promise<void> {
  try {
    await body()
  } catch (err) {
    const peers = c.peers.map(p => `${p.peer}:\n${p.stderr().slice(-5_000)}`).join('\n')
    console.error(`peers: ${c.peers.map(p => p.peer).join(', ')}; tabs: ${c.tabs.map(t => t.peer).join(', ')}\n--- tabs ---\n${c.logs().slice(-10_000)}\n--- peer processes ---\n${peers}`)
    throw err
  } finally {
    await c.close()
  }
}

test('an object put in tab A moves to tab B over a direct WebRTC connection, byte-identical, every chunk verified', { timeout: 180_000 }, async (t) => {
  const started = performance.now()
  const c = await startBrowserCluster({ tabs: 2, nodes: 1 })
  t.diagnostic(`two tabs and a Node peer, every tab directly connected to every peer, in ${Math.round(performance.now() - started)} ms`)
  await withCluster(c, async () => {
    const [a, b] = c.tabs
    // Random bytes (so a misplaced chunk cannot match), not a whole number of chunks.
    const size = 24 * MiB + 12_345
    const chunks = Math.ceil(size / chunkSizeFor(size, DEFAULT_CHUNK_SIZE))
    await b.page.evaluate(() => {
      const r = window.refmesh
      r.mesh!.register('tab.digest', async (x: Uint8Array) => ({ length: x.byteLength, sha256: await r.sha256hex(x) }))
    })
    await a.page.waitForFunction((peer) => window.refmesh.mesh!.peers().find(p => p.peer === peer)?.functions.includes('tab.digest') === true, b.peer, { timeout: 30_000 })
    const before = await b.page.evaluate(() => window.refmesh.mesh!.stats().transfer)
    const [aBefore, bBefore] = await Promise.all([chunkLinks(a, b), chunkLinks(b, a)])

    const result = await a.page.evaluate(async ({ peer, size }) => {
      const r = window.refmesh
      const mesh = r.mesh!
      const bytes = new Uint8Array(size)
      for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65_536)))
      const expected = await r.sha256hex(bytes)
      const started = performance.now()
      const x = mesh.put(bytes)
      // B receives x's value: it pulls the chunks from A, the owner and only holder.
      const d = mesh.fn<(x: Uint8Array) => { length: number, sha256: string }>('tab.digest').options({ peer, timeoutMs: 120_000 }).remote(x)
      try {
        const got = await mesh.get(d, { timeoutMs: 120_000 })
        return { expected, got, ms: performance.now() - started }
      } finally {
        d.release()
        x.release()
      }
    }, { peer: b.peer, size })
    t.diagnostic(`put, ${size} bytes tab to tab and digest in ${Math.round(result.ms)} ms`)
    assert.equal(result.got.length, size)
    assert.equal(result.got.sha256, result.expected, 'tab B read exactly the bytes tab A put')

    const after = await b.page.evaluate(() => window.refmesh.mesh!.stats().transfer)
    // What each tab's LinkLog counted, per connection to the other tab, on the chunk
    // streams of this transfer (cumulative counts, so a chunk stream that has closed
    // since still counts), printed before anything is asserted.
    const [aAfter, bAfter] = await Promise.all([chunkLinks(a, b), chunkLinks(b, a)])
    const used = (links: typeof aAfter, earlier: typeof aAfter): typeof aAfter => links.map(l => {
      const was = earlier.find(e => e.id === l.id)
      return { ...l, streams: l.streams - (was?.streams ?? 0), sent: l.sent - (was?.sent ?? 0), received: l.received - (was?.received ?? 0) }
    })
    const [aUsed, bUsed] = [used(aAfter, aBefore), used(bAfter, bBefore)]
    for (const [name, links] of [['A', aUsed], ['B', bUsed]] as const) {
      t.diagnostic(`tab ${name}'s links to the other tab: ${links.map(l => `${l.direction} ${l.remoteAddr.replace(/\/p2p\/\w+/g, '/p2p/…')} (${l.multiplexer}): ${l.streams} chunk streams, ${l.sent} B sent, ${l.received} B received`).join('; ')}`)
    }
    t.diagnostic(`tab B's transfer stats over the put: ${JSON.stringify(Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof typeof before]])))}`)

    assert.equal(after.objectsPulled - before.objectsPulled, 1)
    assert.equal(after.chunksFetched - before.chunksFetched, chunks, 'every chunk was fetched, and each passed its SHA-256 check')
    assert.equal(after.badChunks - before.badChunks, 0, 'no chunk failed its SHA-256 check')

    // The chunks came over WebRTC between the tabs, and not a byte through the
    // relay. A relayed connection has limits (128 KiB), and neither libp2p nor a
    // pull opens a refmesh stream on one.
    for (const [tab, links, dir] of [[a, aUsed, 'sent'], [b, bUsed, 'received']] as const) {
      const viaWebRTC = links.filter(l => /\/webrtc\/p2p\/[^/]+$/.test(l.remoteAddr) && l.multiplexer === '/webrtc' && l.direct && !l.limited)
      const moved = viaWebRTC.reduce((n, l) => n + l[dir], 0)
      assert.ok(moved >= size, `tab ${tab.peer} ${dir} the object's ${size} bytes on chunk streams over direct WebRTC connections (data channels, no relay limits) to the other tab: ${JSON.stringify(links)}`)
      for (const l of links.filter(l => !viaWebRTC.includes(l))) {
        assert.deepEqual({ streams: l.streams, sent: l.sent, received: l.received }, { streams: 0, sent: 0, received: 0 }, `no chunk stream on ${l.remoteAddr} (direct ${String(l.direct)}, limited ${String(l.limited)})`)
      }
    }
    // The dialing tab's remote address names the relay it signalled through
    // (…/p2p-circuit/webrtc/p2p/<tab>); the answering tab's is plain /webrtc.
    const answering = (await Promise.all([a, b].map(async t => await t.page.evaluate((peer) => window.refmesh.links(peer).filter(l => l.transport === 'webrtc').map(l => l.remoteAddr), t === a ? b.peer : a.peer)))).flat()
    assert.ok(answering.some(addr => addr.startsWith('/webrtc/p2p/') && !addr.includes('/p2p-circuit')), `one side sees /webrtc with no /p2p-circuit: ${answering.join(', ')}`)

    // Both tabs drop every copy once the Refs are released.
    for (const tab of [a, b]) {
      await tab.page.waitForFunction(() => { const s = window.refmesh.mesh!.stats(); return s.store.objects === 0 && s.refs.owned === 0 && s.refs.borrowed === 0 }, undefined, { timeout: 30_000 })
    }
  })
})

test('a Node peer runs calls on a tab, and a tab runs calls on a Node peer', { timeout: 180_000 }, async () => {
  const c = await startBrowserCluster({ tabs: 1, nodes: 1 })
  let driver: Mesh | undefined
  await withCluster(c, async () => {
    const [tab] = c.tabs
    const [node] = c.peers
    await tab.page.evaluate(() => {
      const mesh = window.refmesh.mesh!
      mesh.register('tab.greet', (name: string) => `hello ${name}, from a tab`)
      mesh.register('tab.checksum', (x: Uint8Array) => ({ length: x.byteLength, checksum: window.refmesh.checksum(x) }))
      mesh.register('tab.make', (n: number, seed: number) => window.refmesh.pattern(n, seed))
    })
    // A Node peer in this process, with the defaults (TCP, WebSockets, WebRTC-direct); the tab dials it.
    driver = await createMesh({ bootstrap: [node.addrs[0]], spillDir: false })
    const d = driver
    await tab.page.evaluate(async (peer) => { await window.refmesh.waitForPeers([peer], { timeoutMs: 30_000 }) }, d.peerId)
    await waitFor('the driver to see the tab offering its functions', () =>
      d.peers().find(p => p.peer === tab.peer)?.functions.includes('tab.make') === true ? true : undefined, 30_000)
    const link = await tab.page.evaluate((peer) => window.refmesh.links(peer).find(l => !l.limited), d.peerId)
    assert.ok(link !== undefined && ['websockets', 'webrtc-direct'].includes(link.transport), `tab to Node over ${link?.transport}`)

    // Node -> tab: a small call, a call whose 3 MiB argument the tab pulls from
    // Node, and one whose 5 MiB result Node pulls from the tab.
    const opts = { peer: tab.peer, timeoutMs: 60_000 }
    using greeting = d.fn<(name: string) => string>('tab.greet').options(opts).remote('node')
    assert.equal(await d.get(greeting, { timeoutMs: 60_000 }), 'hello node, from a tab')
    const arg = pattern(3 * MiB, 5)
    using sum = d.fn<(x: Uint8Array) => { length: number, checksum: number }>('tab.checksum').options(opts).remote(arg)
    assert.deepEqual(await d.get(sum, { timeoutMs: 60_000 }), { length: arg.byteLength, checksum: checksum(arg) })
    using made = d.fn<(n: number, seed: number) => Uint8Array>('tab.make').options(opts).remote(5 * MiB, 9)
    const bytes = await d.get(made, { timeoutMs: 60_000 })
    assert.equal(bytes.byteLength, 5 * MiB)
    assert.equal(checksum(bytes), checksum(pattern(5 * MiB, 9)))
    assert.ok(d.stats().transfer.chunksFetched >= 5, 'the result came as chunks')

    // tab -> Node: the fixtures of a Node peer process, with a small and a 4 MiB argument.
    const fromTab = await tab.page.evaluate(async (peer) => {
      const r = window.refmesh
      const mesh = r.mesh!
      const x = r.pattern(4 * 2 ** 20, 11)
      const s = mesh.fn<(x: Uint8Array) => { length: number, checksum: number }>('checksum').options({ peer, timeoutMs: 60_000 }).remote(x)
      const n = mesh.fn<(a: number, b: number) => number>('add').options({ peer, timeoutMs: 60_000 }).remote(40, 2)
      try {
        return { sum: await mesh.get(s), n: await mesh.get(n), expected: r.checksum(x), executed: mesh.stats().calls.executed }
      } finally {
        s.release()
        n.release()
      }
    }, node.peer)
    assert.equal(fromTab.n, 42)
    assert.deepEqual(fromTab.sum, { length: 4 * MiB, checksum: fromTab.expected })
    assert.equal(fromTab.executed, 3, 'the tab ran the three calls Node sent it')
  }).finally(async () => { await driver?.stop() })
})
