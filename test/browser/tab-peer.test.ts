/**
 * A tab's own store and executors, as createBrowserMesh wires them: the store
 * spills to OPFS (browser/opfs-spill.ts) and the functions of worker modules
 * run in Web Workers (browser/worker-backend.ts), called by a Node peer; the
 * tab tells the mesh it is a browser peer.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../../node/index.ts'
import type { Mesh } from '../../node/index.ts'
import { waitFor } from '../../node/local-cluster.ts'
import { startBrowserCluster, withCluster } from './harness.ts'

const MiB = 2 ** 20

/** A worker module as the tab would load one from its server; a blob: URL is of the page's origin. */
const WORKER_MODULE = `
export function whereAmI (x) {
  return { inWorker: typeof document === 'undefined' && typeof WorkerGlobalScope === 'function', name: self.name, length: x.byteLength, first: x[0] }
}
`

test('a tab spills its store to OPFS and runs worker-module calls in Web Workers', { timeout: 180_000 }, async t => {
  const c = await startBrowserCluster({ tabs: 0, nodes: 1 })
  let driver: Mesh | undefined
  await withCluster(c, async () => {
    const [node] = c.peers
    const page = await c.context.newPage()
    page.on('console', msg => { if (msg.type() === 'error') t.diagnostic(`[tab] ${msg.text()}`) })
    await page.goto(c.server.url)
    const tab = await page.evaluate(async ({ code, capacity }) => {
      const url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }))
      return await window.refmesh.join({ workerModules: [url], workers: 2, store: { capacity } })
    }, { code: WORKER_MODULE, capacity: 16 * MiB })

    // The store: more than fits in memory goes to OPFS, under the tab's peer id, and comes back whole.
    const spilled = await page.evaluate(async (MiB) => {
      const r = window.refmesh
      const mesh = r.mesh!
      const refs = [1, 2, 3, 4].map(seed => mesh.put(r.pattern(6 * MiB, seed)))
      await mesh.wait(refs, { timeoutMs: 30_000 })
      const stats = mesh.stats().store
      const root = await navigator.storage.getDirectory()
      const dir = await (await root.getDirectoryHandle('refmesh-spill')).getDirectoryHandle(mesh.peerId)
      const files: string[] = []
      for await (const name of (dir as unknown as { keys: () => AsyncIterable<string> }).keys()) files.push(name)
      const back = await Promise.all(refs.map(async (ref, i) => r.checksum(await mesh.get(ref)) === r.checksum(r.pattern(6 * MiB, i + 1))))
      for (const ref of refs) ref.release()
      return { spilledBytes: stats.spilledBytes, files: files.length, back }
    }, MiB)
    t.diagnostic(`spilled ${spilled.spilledBytes} bytes into ${spilled.files} OPFS file(s)`)
    assert.ok(spilled.spilledBytes >= 6 * MiB, 'at least one object went to OPFS')
    assert.ok(spilled.files >= 1, 'as files in refmesh-spill/<peer id>')
    assert.deepEqual(spilled.back, [true, true, true, true], 'every object reads back whole')

    // The executors: a Node peer calls the worker module's function on the tab.
    driver = await createMesh({ bootstrap: [node.addrs[0]], spillDir: false })
    const d = driver
    await page.evaluate(async (peer) => { await window.refmesh.waitForPeers([peer], { timeoutMs: 30_000 }) }, d.peerId)
    const seen = await waitFor('the driver to see the tab offering whereAmI', () => {
      const p = d.view().find(v => v.peer === tab)
      return p?.state?.functions.includes('whereAmI') === true ? p.state : undefined
    }, 30_000)
    assert.equal(seen.runtime, 'browser', 'the tab gossips that it is a browser peer')
    assert.equal(seen.slots, 2, 'its slots are its workers')
    assert.deepEqual(seen.pooledFunctions, ['whereAmI'])
    assert.equal(d.view().find(v => v.self)?.state?.runtime, 'node')
    const bytes = new Uint8Array(3 * MiB).fill(7)
    using where = d.fn<(x: Uint8Array) => { inWorker: boolean, name: string, length: number, first: number }>('whereAmI').options({ peer: tab, timeoutMs: 60_000 }).remote(bytes)
    assert.deepEqual(await d.get(where, { timeoutMs: 60_000 }), { inWorker: true, name: 'refmesh-worker', length: 3 * MiB, first: 7 })
    assert.equal(await page.evaluate(() => window.refmesh.mesh!.stats().calls.executed), 1)

    // Leaving stops the workers and empties the spill.
    await page.evaluate(async () => { await window.refmesh.leave() })
    const left = await page.evaluate(async (peer) => {
      const root = await navigator.storage.getDirectory()
      const spill = await root.getDirectoryHandle('refmesh-spill').catch(() => undefined)
      return spill === undefined ? 'no spill root' : await spill.getDirectoryHandle(peer).then(() => 'still there', () => 'gone')
    }, tab)
    assert.ok(['gone', 'no spill root'].includes(left), `the tab's spill directory after leave: ${left}`)
  }).finally(async () => { await driver?.stop() })
})
