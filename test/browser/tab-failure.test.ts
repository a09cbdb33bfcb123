/**
 * Issue 6, test 3: a tab closed in the middle of a run. The calls it was
 * running finish on other peers (the callers' meshes place them again once the
 * failure detector declares the tab dead), for a caller in another tab and a
 * caller in a Node process alike; and a dataset the tab put with a Node peer
 * as its owner is still readable, byte-identical, after the tab is gone.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createMesh } from '../../node/index.ts'
import type { Mesh, Ref } from '../../node/index.ts'
import { waitFor } from '../../node/local-cluster.ts'
import { startBrowserCluster, withCluster } from './harness.ts'

const MiB = 2 ** 20
/** long enough that the tab is closed while every call runs */
const SLEEP_MS = 8_000
const CALLS = 3

declare global {
  interface Window {
    /** the sleeps tab A waits for */
    sleeps?: Promise<number[]>
  }
}

type Dataset = (owner: string, n: number) => { made: Ref<Uint8Array>, sha256: string }

test('a tab closed mid-run: its calls finish elsewhere, and what it put with a Node owner outlives it', { timeout: 180_000 }, async t => {
  const c = await startBrowserCluster({ tabs: 2, nodes: 2 })
  let driver: Mesh | undefined
  await withCluster(c, async () => {
    const [a, b] = c.tabs
    const [owner, other] = c.peers
    driver = await createMesh({ bootstrap: [owner.addrs[0]], spillDir: false })
    const d = driver
    for (const tab of c.tabs) await tab.page.evaluate(async (peer) => { await window.refmesh.waitForPeers([peer], { timeoutMs: 30_000 }) }, d.peerId)

    // Tab B offers what the Node peers offer (`sleep`, test/fixtures/functions.ts), and makes datasets.
    await b.page.evaluate(() => {
      const r = window.refmesh
      const mesh = r.mesh!
      mesh.register('sleep', async (ms: number) => { await new Promise(resolve => setTimeout(resolve, ms)); return ms })
      mesh.register('tab.dataset', async (owner: string, n: number) => {
        const bytes = new Uint8Array(n)
        for (let i = 0; i < n; i += 65_536) crypto.getRandomValues(bytes.subarray(i, Math.min(n, i + 65_536)))
        return { made: mesh.put(bytes, { owner }), sha256: await r.sha256hex(bytes) }
      })
    })
    await waitFor('the driver to see tab B offering its functions', () =>
      d.peers().find(p => p.peer === b.peer)?.functions.includes('tab.dataset') === true ? true : undefined, 30_000)
    await a.page.waitForFunction((peer) => window.refmesh.mesh!.peers().find(p => p.peer === peer)?.functions.includes('sleep') === true, b.peer, { timeout: 30_000 })

    // The dataset: made in tab B, handed to a Node peer, its Ref held by the driver.
    const size = 24 * MiB + 777
    using out = d.fn<Dataset>('tab.dataset').options({ peer: b.peer, timeoutMs: 60_000 }).remote(owner.peer, size)
    const { made, sha256 } = await d.get(out, { timeoutMs: 60_000 })
    assert.equal(made.owner, owner.peer, 'the Ref names the Node peer as its owner')
    const held = await d.peerStats(owner.peer)
    assert.ok(held.trafficByPeer[b.peer]?.chunkIn >= size, 'the owner copied the dataset from the tab')

    // Calls running on tab B: some from tab A, some from the Node driver.
    await a.page.evaluate(({ peer, ms, calls }) => {
      const mesh = window.refmesh.mesh!
      const sleep = mesh.fn<(ms: number) => number>('sleep').options({ prefer: peer, timeoutMs: 90_000 })
      const refs = Array.from({ length: calls }, () => sleep.remote(ms))
      window.sleeps = Promise.all(refs.map(async ref => { try { return await mesh.get(ref, { timeoutMs: 90_000 }) } finally { ref.release() } }))
      window.sleeps.catch(() => {})
    }, { peer: b.peer, ms: SLEEP_MS, calls: CALLS })
    const sleep = d.fn<(ms: number) => number>('sleep').options({ prefer: b.peer, timeoutMs: 90_000 })
    const fromDriver = Array.from({ length: CALLS }, () => sleep.remote(SLEEP_MS))
    const before = Object.fromEntries(await Promise.all(c.peers.map(async p => [p.peer, (await d.peerStats(p.peer)).calls.executed] as const)))
    await b.page.waitForFunction((n) => window.refmesh.mesh!.stats().calls.running >= n, 2 * CALLS, { timeout: 30_000 })
    assert.equal(d.stats().placed[b.peer], CALLS + 1, 'the driver placed its sleeps (and the dataset) on tab B')

    const closed = performance.now()
    await b.page.close()
    const [inA, inDriver] = await Promise.all([
      a.page.evaluate(async () => await window.sleeps!),
      Promise.all(fromDriver.map(async ref => { try { return await d.get(ref, { timeoutMs: 90_000 }) } finally { ref.release() } }))
    ])
    const ms = performance.now() - closed
    t.diagnostic(`every call finished ${Math.round(ms)} ms after the tab closed (each sleeps ${SLEEP_MS} ms)`)
    assert.deepEqual(inA, Array(CALLS).fill(SLEEP_MS), 'tab A got every result')
    assert.deepEqual(inDriver, Array(CALLS).fill(SLEEP_MS), 'the Node driver got every result')
    assert.ok(ms >= SLEEP_MS, 'they ran again from the start, elsewhere')
    const after = Object.fromEntries(await Promise.all(c.peers.map(async p => [p.peer, (await d.peerStats(p.peer)).calls.executed] as const)))
    const ranOnNodes = c.peers.reduce((n, p) => n + after[p.peer] - before[p.peer], 0)
    assert.equal(ranOnNodes, 2 * CALLS, 'the Node peers ran them')
    assert.equal(d.peers().find(p => p.peer === b.peer)?.liveness ?? 'dead', 'dead', 'the driver holds tab B dead')

    // The dataset outlived its maker: read from the Node driver, and by the other Node peer.
    const bytes = await d.get(made, { timeoutMs: 60_000 })
    assert.equal(bytes.byteLength, size)
    assert.equal(createHash('sha256').update(bytes).digest('hex'), sha256, 'byte-identical to what tab B put')
    using sum = d.fn<(x: Uint8Array) => { length: number }>('checksum').options({ peer: other.peer, timeoutMs: 60_000 }).remote(made)
    assert.equal((await d.get(sum, { timeoutMs: 60_000 })).length, size, 'another Node peer reads it too')
    made.release()
  }).finally(async () => { await driver?.stop() })
})
