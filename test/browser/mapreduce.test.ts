/**
 * Issue 6, test 1: two tabs and two Node peer processes run the MapReduce
 * example, started from the mesh page's "Run MapReduce" control in one tab.
 * Both tabs run map calls, and the answer equals the count made in one
 * process (test/examples.test.ts checks the all-Node run against it too).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { MAP, REDUCE, wordCountLocal } from '../../examples/mapreduce.ts'
import { startBrowserCluster, withCluster } from './harness.ts'

const MAPREDUCE = fileURLToPath(new URL('../../examples/mapreduce.ts', import.meta.url))

test('two tabs and two Node peers run MapReduce from the page; both tabs run maps; the answer equals the local count', { timeout: 240_000 }, async t => {
  const started = performance.now()
  const c = await startBrowserCluster({ tabs: 2, nodes: 2, module: MAPREDUCE })
  t.diagnostic(`two Node peers and two tabs, all directly connected, in ${Math.round(performance.now() - started)} ms`)
  await withCluster(c, async () => {
    const [a, b] = c.tabs
    const everyone = [...c.peers.map(p => p.peer), ...c.tabs.map(t => t.peer)]
    // Spread placement needs the driver to know every peer that offers map.
    await a.page.waitForFunction(({ peers, fns }) => {
      const mesh = window.refmesh.mesh!
      const offering = (p: string): boolean => p === mesh.peerId
        ? fns.every(f => mesh.stats().functions.includes(f))
        : mesh.peers().some(q => q.peer === p && q.liveness === 'alive' && fns.every(f => q.functions.includes(f)))
      return peers.every(offering)
    }, { peers: everyone, fns: [MAP, REDUCE] }, { timeout: 30_000 })

    const executed = async (): Promise<Record<string, number>> => await a.page.evaluate(async peers => {
      const mesh = window.refmesh.mesh!
      const all = await Promise.all(peers.map(async p => [p, (await mesh.peerStats(p, { timeoutMs: 10_000 })).calls.executed] as const))
      return Object.fromEntries(all)
    }, everyone)
    const before = await executed()

    // As a person would: the form, "spread the calls over the peers in turn", the button.
    const options = { maps: 16, reduces: 4, shardBytes: 512 * 1024, seed: 11 }
    await a.page.fill('#mr-maps', String(options.maps))
    await a.page.fill('#mr-reduces', String(options.reduces))
    await a.page.selectOption('#mr-shard', { label: '256 KiB' })
    await a.page.evaluate(bytes => {
      const select = document.querySelector<HTMLSelectElement>('#mr-shard')!
      select.add(new Option('512 KiB', String(bytes), true, true))
    }, options.shardBytes)
    await a.page.fill('#mr-seed', String(options.seed))
    await a.page.check('#mr-spread')
    await a.page.click('#mr-run')
    await a.page.waitForFunction(() => ['done', 'failed'].includes(window.refmesh.mapReduce?.state ?? ''), undefined, { timeout: 180_000 })
    const run = await a.page.evaluate(() => window.refmesh.mapReduce!)
    assert.equal(run.state, 'done', run.error)
    const result = run.result!
    t.diagnostic(`the run took ${Math.round(result.elapsedMs)} ms (maps done at ${Math.round(result.mapMs)} ms); the tab's check ${Math.round(result.checkMs)} ms`)

    const expected = wordCountLocal(options)
    assert.deepEqual(result.options, options, 'the run used the options from the form')
    assert.deepEqual(result.top, expected.top)
    assert.equal(result.totalWords, expected.totalWords)
    assert.equal(result.distinctWords, expected.distinctWords)
    assert.equal(result.digest, expected.digest, 'every word\'s count equals the local count')
    assert.equal(result.matches, true, 'the tab\'s own check agrees')

    // What the page shows.
    assert.equal(await a.page.textContent('#mr-map-text'), `${options.maps}/${options.maps}`)
    assert.equal(await a.page.textContent('#mr-reduce-text'), `${options.reduces}/${options.reduces}`)
    assert.equal(await a.page.getAttribute('#mr-check', 'data-matches'), 'true')
    assert.equal(await a.page.locator('#mr-top tr').count(), 10, 'the top ten words')
    assert.match(await a.page.textContent('#mr-top') ?? '', new RegExp(expected.top[0][0]))

    // Who ran what: the driver placed the maps on every peer, and each peer's
    // own count of calls it executed agrees that both tabs ran some.
    const after = await executed()
    const ran = Object.fromEntries(everyone.map(p => [p, after[p] - before[p]]))
    t.diagnostic(`maps placed: ${JSON.stringify(result.mapsPlaced)}; calls executed: ${JSON.stringify(ran)}`)
    for (const tab of [a, b]) {
      assert.ok((result.mapsPlaced[tab.peer] ?? 0) > 0, `tab ${tab.peer} was given map calls`)
      assert.ok(ran[tab.peer] > 0, `tab ${tab.peer} executed calls`)
    }
    // In turn: the same number of maps on each of the four peers.
    assert.deepEqual(Object.fromEntries(everyone.map(p => [p, result.mapsPlaced[p]])), Object.fromEntries(everyone.map(p => [p, options.maps / everyone.length])))
    assert.equal(Object.values(ran).reduce((x, y) => x + y, 0), options.maps + options.reduces, 'every map and reduce ran once')
  })
})
