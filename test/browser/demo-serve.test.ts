/**
 * `npm start` (`refmesh demo --serve`): after its run the demo keeps the mesh
 * up and its first peer serves the mesh page; a tab joins that mesh, reaches
 * every peer, and runs the word count with the three Node peers. Ctrl-C stops
 * every peer and the demo exits 0.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright'
import { CHROMIUM } from './harness.ts'

const BIN = fileURLToPath(new URL('../../node/bin/refmesh.js', import.meta.url))

test('refmesh demo --serve keeps the mesh up and serves the page; a tab joins it and runs MapReduce', { timeout: 180_000 }, async t => {
  const child = spawn(process.execPath, [BIN, 'demo', '--serve', '--maps', '3', '--shard-bytes', '128KiB'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
  const lines = createInterface({ input: child.stdout })
  lines.on('line', line => { stdout += line + '\n' })
  const browser = await chromium.launch({ executablePath: CHROMIUM })
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`the demo did not say it stays up within 120 s:\n${stdout}\n${stderr}`)) }, 120_000)
      lines.on('line', line => {
        const m = line.match(/^the mesh stays up: open (\S+) /)
        if (m !== null) { clearTimeout(timer); resolve(m[1]) }
      })
      void exited.then(code => { clearTimeout(timer); reject(new Error(`the demo exited (${code}) before serving:\n${stdout}\n${stderr}`)) })
    })
    assert.match(stdout, /^mesh page: http:\/\/127\.0\.0\.1:\d+\/ /m, 'the URL is printed as soon as the first peer is up')
    assert.match(stdout, /result matches a local single-process count/)

    const info = await (await fetch(new URL('/mesh.json', url))).json() as { bootstrap: string[] }
    assert.deepEqual(info.bootstrap.map(a => a.match(/\/(ws|webrtc-direct)\//)?.[1]), ['ws', 'webrtc-direct'])

    const page = await browser.newPage()
    await page.goto(url)
    await page.click('#join')
    await page.waitForFunction(() => window.refmesh.mesh?.peers().filter(p => p.liveness === 'alive' && p.functions.includes('mapreduce.map')).length === 3, undefined, { timeout: 60_000 })
    const tab = await page.evaluate(() => window.refmesh.mesh!.peerId)
    const nodes = await page.evaluate(() => window.refmesh.mesh!.peers().filter(p => p.liveness === 'alive' && p.functions.includes('mapreduce.map')).map(p => p.peer))
    await page.evaluate(async (peers) => { await window.refmesh.waitForPeers(peers, { timeoutMs: 30_000 }) }, nodes)

    await page.fill('#mr-maps', '8')
    await page.selectOption('#mr-shard', { label: '256 KiB' })
    await page.check('#mr-spread')
    await page.click('#mr-run')
    await page.waitForFunction(() => ['done', 'failed'].includes(window.refmesh.mapReduce?.state ?? ''), undefined, { timeout: 120_000 })
    const run = await page.evaluate(() => window.refmesh.mapReduce!)
    assert.equal(run.state, 'done', run.error)
    assert.equal(run.result!.matches, true)
    assert.equal(run.result!.mapsPlaced[tab], 2, `the tab ran its turn of the maps: ${JSON.stringify(run.result!.mapsPlaced)} (tab ${tab})`)
    t.diagnostic(`the tab's run: ${Math.round(run.result!.elapsedMs)} ms, maps placed ${JSON.stringify(run.result!.mapsPlaced)}`)
    await page.click('#leave')
  } finally {
    await browser.close()
    child.kill('SIGINT')
    const code = await Promise.race([exited, new Promise<string>(resolve => setTimeout(() => { resolve('still running') }, 20_000))])
    if (code === 'still running') child.kill('SIGKILL')
    assert.equal(code, 0, `Ctrl-C ends the demo cleanly:\n${stderr}`)
  }
  assert.match(stdout, /every peer is stopped/)
})
