/**
 * The page and the tab's identity: the page is served crossOriginIsolated with
 * the Node peer's browser addresses to join through; a tab keeps its peer id
 * across reloads (IndexedDB), and two tabs of one browser are two peers.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnPeer } from '../../node/local-cluster.ts'
import { BROWSER_LISTEN_ARGS, startBrowserCluster } from './harness.ts'

test('the page: isolation headers, bootstrap addresses, a persistent identity per tab', { timeout: 180_000 }, async () => {
  const c = await startBrowserCluster({ tabs: 0, nodes: 1 })
  try {
    const res = await fetch(c.server.url + '/')
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cross-origin-opener-policy'), 'same-origin')
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp')
    const info = await (await fetch(c.server.url + '/mesh.json')).json() as { bootstrap: string[] }
    assert.deepEqual(info.bootstrap.map(a => a.match(/\/(ws|webrtc-direct)\//)?.[1]), ['ws', 'webrtc-direct'], 'WebSockets first, no TCP')
    assert.ok(info.bootstrap.every(a => a.endsWith(`/p2p/${c.peers[0].peer}`)))
    assert.equal((await fetch(c.server.url + '/%2e%2e/%2e%2e/package.json')).status, 404, 'nothing outside dist/page')

    const first = await c.openTab()
    assert.equal(await first.page.evaluate(() => crossOriginIsolated), true)
    const second = await c.openTab()
    assert.notEqual(second.peer, first.peer, 'two tabs of one browser are two peers')

    await first.page.reload()
    const again = await first.page.evaluate(async () => await window.refmesh.join())
    assert.equal(again, first.peer, 'a reloaded tab is the same peer')

    // A closed tab's slot, and its key, go to the next tab opened.
    await first.page.close()
    const third = await c.openTab()
    assert.equal(third.peer, first.peer)

    // A browser profile of its own has keys of its own.
    const other = await c.browser.newContext()
    const page = await other.newPage()
    await page.goto(c.server.url)
    const stranger = await page.evaluate(async () => await window.refmesh.join())
    assert.ok(![first.peer, second.peer].includes(stranger))
  } finally {
    await c.close()
  }
})

test('refmesh peer --page-port serves the page with that peer\'s browser addresses', { timeout: 60_000 }, async () => {
  const peer = await spawnPeer({ args: [...BROWSER_LISTEN_ARGS, '--page-port', '0'] })
  try {
    const url = (peer as typeof peer & { page?: string }).page
    assert.ok(url?.startsWith('http://127.0.0.1:'), `the peer prints the page's URL: ${url}`)
    const res = await fetch(`${url}/`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp')
    const info = await (await fetch(`${url}/mesh.json`)).json() as { bootstrap: string[] }
    assert.deepEqual(info.bootstrap, peer.addrs.filter(a => a.includes('/ws/') || a.includes('/webrtc-direct/')))
  } finally {
    await peer.stop()
  }
})
