/**
 * A tab on another machine (root only: network namespaces). A public host P
 * runs `refmesh peer` on every interface, announcing its address, with a
 * certificate from a CA this test makes: the page over https, WebSockets as
 * wss. Chromium on a second host, trusting that certificate, opens
 * https://P:8443/: the page is a real secure context, the tab joins over wss
 * and runs the MapReduce word count with P, and gets the local count. A second
 * peer on P serves the page over plain http: there the page says, in words,
 * what the browser withholds and how to fix it, and Join throws a typed error,
 * not a TypeError.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { spawnPeer } from '../../node/local-cluster.ts'
import type { PeerProcess } from '../../node/local-cluster.ts'
import { ensurePageBuilt } from '../../node/page-build.ts'
import type { MeshJson } from '../../node/page-server.ts'
import type { Page } from 'playwright'
import { netnsAvailable } from '../netns.ts'
import { createInternet, createTestCertificate, launchChromiumOn } from '../multihost.ts'

const MAPREDUCE = fileURLToPath(new URL('../../examples/mapreduce.ts', import.meta.url))

test('a tab on another host joins a public peer over https and wss, and an http page there says why it cannot', { timeout: 240_000 }, async t => {
  assert.ok(await netnsAvailable(), 'this test needs root (network namespaces and tc)')
  const internet = await createInternet(['public', 'home'])
  const { public: P, home } = internet.hosts
  const cleanup: Array<() => Promise<unknown>> = [internet.stop]
  const peers: PeerProcess[] = []
  try {
    const cert = await createTestCertificate([P.addr])
    cleanup.push(cert.remove)
    await ensurePageBuilt()
    // Fixed ports, as a public peer behind port forwarding has; nothing else lives in this namespace.
    const [secure, plain] = await Promise.all([
      spawnPeer({
        netns: P.ns,
        module: MAPREDUCE,
        listen: '/ip4/0.0.0.0/tcp/4001',
        args: ['--listen', '/ip4/0.0.0.0/tcp/4002/ws', '--listen', '/ip4/0.0.0.0/udp/4003/webrtc-direct',
          '--announce', P.addr, '--tls-cert', cert.certFile, '--tls-key', cert.keyFile,
          '--page-port', '8443', '--page-host', '0.0.0.0', '--stun', `stun:${P.addr}:3478`]
      }),
      spawnPeer({ netns: P.ns, listen: '/ip4/0.0.0.0/tcp/5001', args: ['--listen', '/ip4/0.0.0.0/tcp/5002/ws', '--announce', P.addr, '--page-port', '8080', '--page-host', '0.0.0.0'] })
    ])
    peers.push(secure, plain)
    assert.equal(secure.page, `https://${P.addr}:8443`, 'the page URL names the announced host, over https')
    assert.equal(plain.page, `http://${P.addr}:8080`)
    assert.ok(secure.addrs.every(a => a.startsWith(`/ip4/${P.addr}/`)), `every address is announced at P's, none at loopback: ${secure.addrs.join(' ')}`)
    assert.ok(secure.addrs.some(a => a.includes('/tcp/4002/tls/ws/')), `the WebSockets address serves wss: ${secure.addrs.join(' ')}`)

    const chromium = await launchChromiumOn(home, { trustSpki: [cert.spki] })
    cleanup.push(chromium.close)
    const tabLog: string[] = []
    const newPage = async (): Promise<Page> => {
      const page = await chromium.browser.newPage()
      page.on('console', msg => { tabLog.push(`[${msg.type()}] ${msg.text()}`) })
      page.on('pageerror', err => { tabLog.push(`[pageerror] ${err.stack ?? err.message}`) })
      return page
    }

    await t.test('https: a real secure context; the tab joins over wss and runs MapReduce with P', async () => {
      const page = await newPage()
      await page.goto(`${secure.page!}/`)
      const context = await page.evaluate(() => ({ secure: isSecureContext, isolated: crossOriginIsolated, subtle: crypto.subtle !== undefined, locks: navigator.locks !== undefined }))
      assert.deepEqual(context, { secure: true, isolated: true, subtle: true, locks: true })
      assert.equal(await page.isVisible('#insecure'), false)
      const info = await page.evaluate(async () => await window.refmesh.info()) as MeshJson
      assert.match(info.bootstrap[0], new RegExp(`^/ip4/${P.addr.replace(/\./g, '\\.')}/tcp/4002/tls/ws/p2p/`), `wss first, at P's address: ${info.bootstrap.join(' ')}`)
      assert.deepEqual(info.iceServers, [{ urls: `stun:${P.addr}:3478` }], 'the STUN server of --stun reaches the tab')

      await page.click('#join')
      await page.waitForFunction((peer) => window.refmesh.mesh?.peers().some(p => p.peer === peer && p.liveness === 'alive' && p.functions.includes('mapreduce.map')) === true, secure.peer, { timeout: 60_000 })
      const links = await page.evaluate((peer) => window.refmesh.links(peer), secure.peer)
      assert.ok(links.some(l => l.transport === 'websockets' && l.remoteAddr.includes('/tls/ws')), `the tab reached P over wss: ${JSON.stringify(links)}`)

      await page.fill('#mr-maps', '6')
      await page.selectOption('#mr-shard', { label: '256 KiB' })
      await page.check('#mr-spread')
      await page.click('#mr-run')
      await page.waitForFunction(() => ['done', 'failed'].includes(window.refmesh.mapReduce?.state ?? ''), undefined, { timeout: 120_000 })
      const run = await page.evaluate(() => window.refmesh.mapReduce!)
      assert.equal(run.state, 'done', run.error)
      assert.equal(run.result!.matches, true, 'the mesh\'s count equals the count made in the tab')
      assert.equal(await page.getAttribute('#mr-check', 'data-matches'), 'true')
      const tab = await page.evaluate(() => window.refmesh.mesh!.peerId)
      assert.ok((run.result!.mapsPlaced[secure.peer] ?? 0) > 0 && (run.result!.mapsPlaced[tab] ?? 0) > 0, `maps ran on P and on the tab: ${JSON.stringify(run.result!.mapsPlaced)}`)
      t.diagnostic(`over https/wss from another host: ${Math.round(run.result!.elapsedMs)} ms, maps ${JSON.stringify(run.result!.mapsPlaced)}`)
      await page.click('#leave')
    })

    await t.test('http from another host: the page says what is missing and how to fix it', async () => {
      const page = await newPage()
      await page.goto(`${plain.page!}/`)
      assert.equal(await page.evaluate(() => isSecureContext), false)
      const message = await page.textContent('#insecure')
      assert.ok(await page.isVisible('#insecure'), 'the message is shown without pressing anything')
      for (const words of ['crypto.subtle', 'OPFS', 'Web Locks', 'cross-origin isolation', '--tls-cert', 'Caddy', `ssh -L 8080:${P.addr}:8080`, 'http://localhost:8080/']) {
        assert.ok(message?.includes(words), `the message names ${words}:\n${message}`)
      }
      assert.equal(await page.isDisabled('#join'), true, 'Join is off: it cannot work here')
      const joinError = await page.evaluate(async () => await window.refmesh.join().then(() => 'joined', (err: Error) => `${err.name}: ${err.message}`))
      assert.match(joinError, /^InsecureContextError: This tab cannot join the mesh\. The page came over plain http from/)
    })
    if (tabLog.some(l => l.startsWith('[pageerror]'))) t.diagnostic(tabLog.join('\n'))
  } catch (err) {
    const stderr = peers.map(p => p.stderr().slice(-3000)).join('\n---\n')
    throw new Error(`${(err as Error).message}\n--- peers ---\n${stderr}`, { cause: err })
  } finally {
    await Promise.allSettled(peers.map(async p => await p.stop()))
    for (const step of cleanup.reverse()) await step().catch(() => {})
  }
})
