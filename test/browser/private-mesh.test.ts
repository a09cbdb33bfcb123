/**
 * Private meshes in browsers: tabs that know the secret join through WebSockets,
 * reach each other over WebRTC (every connection proves the secret, whatever
 * its transport), run calls and pull objects. The page asks for the secret; a
 * tab with none or a wrong one cannot join, and the Node peer refuses it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startBrowserCluster, withCluster } from './harness.ts'

const SECRET = 'volunteers only'
const MiB = 2 ** 20

test('a private mesh in browsers: tabs with the secret join and work together; the page refuses to join without it, and a wrong one is refused', { timeout: 180_000 }, async t => {
  const c = await startBrowserCluster({ nodes: 1, tabs: 2, secret: SECRET, tabOptions: { secret: SECRET } })
  await withCluster(c, async () => {
    const [a, b] = c.tabs
    const [node] = c.peers
    // The harness waited for each tab to reach every peer directly: tab to tab is WebRTC, proved too.
    const links = await a.page.evaluate((peer) => window.refmesh.links(peer).map(l => l.transport), b.peer)
    assert.ok(links.includes('webrtc'), `tab to tab over WebRTC (${links.join(', ')})`)

    // Members work together: a call on the Node peer, and each tab pulls an object the other made.
    await b.page.evaluate(async (MiB) => {
      const r = window.refmesh
      const ref = r.mesh!.put(r.pattern(4 * MiB, 7))
      await r.mesh!.wait([ref], { timeoutMs: 20_000 })
      r.mesh!.publish('private-blob', ref)
      ref.release()
    }, MiB)
    const worked = await a.page.evaluate(async ({ node, MiB }) => {
      const r = window.refmesh
      const mesh = r.mesh!
      const sum = mesh.fn<(x: number, y: number) => number>('add').options({ peer: node, timeoutMs: 20_000 }).remote(20, 22)
      const blob = await mesh.lookup('private-blob', { timeoutMs: 20_000 })
      const bytes = await mesh.get(blob, { timeoutMs: 30_000 }) as Uint8Array
      const result = { sum: await mesh.get(sum), same: r.checksum(bytes) === r.checksum(r.pattern(4 * MiB, 7)), size: bytes.byteLength }
      sum.release()
      blob.release()
      const stats = await mesh.peerStats(node)
      return { ...result, private: stats.auth.private, peers: stats.peers.length }
    }, { node: node.peer, MiB })
    assert.deepEqual(worked, { sum: 42, same: true, size: 4 * MiB, private: true, peers: 2 })
    // And the other way: an object tab A made, pulled by tab B.
    await a.page.evaluate(async (MiB) => {
      const r = window.refmesh
      const ref = r.mesh!.put(r.pattern(4 * MiB, 8))
      await r.mesh!.wait([ref], { timeoutMs: 20_000 })
      r.mesh!.publish('private-blob-a', ref)
      ref.release()
    }, MiB)
    const back = await b.page.evaluate(async (MiB) => {
      const r = window.refmesh
      const blob = await r.mesh!.lookup('private-blob-a', { timeoutMs: 20_000 })
      const bytes = await r.mesh!.get(blob, { timeoutMs: 30_000 }) as Uint8Array
      blob.release()
      return { same: r.checksum(bytes) === r.checksum(r.pattern(4 * MiB, 8)), size: bytes.byteLength }
    }, MiB)
    assert.deepEqual(back, { same: true, size: 4 * MiB }, 'tab B pulled the object tab A made')

    // A visitor: the page asks for the secret and will not join without it.
    const page = await c.context.newPage()
    await page.goto(c.server.url)
    const secretField = page.locator('#secret')
    await secretField.waitFor({ state: 'visible', timeout: 10_000 })
    await page.waitForFunction(() => /private/.test(document.querySelector('#status')?.textContent ?? ''), undefined, { timeout: 10_000 })
    await page.click('#join')
    await page.waitForFunction(() => /Could not join: this mesh is private/.test(document.querySelector('#status')?.textContent ?? ''), undefined, { timeout: 10_000 })

    // A wrong secret: the challenge fails both ways and the join ends with why.
    await secretField.fill('a guess')
    await page.click('#join')
    await page.waitForFunction(() => /Could not join: the mesh's peers did not accept this secret/.test(document.querySelector('#status')?.textContent ?? ''), undefined, { timeout: 30_000 })
      .catch(async (err: Error) => { throw new Error(`${err.message}; status: ${await page.textContent('#status')}`) })
    t.diagnostic(`wrong secret: ${await page.textContent('#status')}`)
    assert.equal(await page.evaluate(() => window.refmesh.mesh), undefined, 'the visitor did not join')
    const afterRogue = await a.page.evaluate(async (node) => await window.refmesh.mesh!.peerStats(node), node.peer)
    assert.ok(afterRogue.auth.refused >= 1, `the Node peer refused the visitor (${afterRogue.auth.refused})`)
    assert.deepEqual([...afterRogue.peers].sort(), [a.peer, b.peer].sort(), 'and counts only the members as its peers')

    // The right secret, typed in the same page: it joins and runs a call.
    await secretField.fill(SECRET)
    await page.press('#secret', 'Enter')
    await page.waitForFunction(() => window.refmesh.mesh !== undefined, undefined, { timeout: 45_000 })
    const sum = await page.evaluate(async (node) => {
      const mesh = window.refmesh.mesh!
      const ref = mesh.fn<(x: number, y: number) => number>('add').options({ peer: node, timeoutMs: 20_000 }).remote(1, 2)
      return await mesh.get(ref)
    }, node.peer)
    assert.equal(sum, 3)
  })
})
