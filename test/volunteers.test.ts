/**
 * Volunteers on other machines, in one topology (root only: network namespaces,
 * nftables NAT routers; test/nat-topology.ts, test/nat-mesh.ts, test/multihost.ts).
 * Every multi-process test costs the suite's budget, so one mesh carries every assertion:
 *
 * - P, on the "internet": the bootstrap `refmesh peer` (relay, STUN responder),
 *   serving the mesh page over https with a certificate from a CA this test makes,
 *   wss for tabs; next to it a caller D, and a second peer serving the page over
 *   plain http.
 * - H1, H2: home networks behind endpoint-independent NAT routers, `refmesh peer --nat`
 *   with the MapReduce functions. H4: behind a NAT that maps ports at random.
 * - H3: a home behind a NAT router with Chromium, trusting the test CA.
 *
 * The tab opens https://P:8443/ (a real secure context), joins, reaches H1 and H2
 * over WebRTC punched through both NATs, and runs the MapReduce demo with maps on
 * H1, H2 and itself. H1 and H2 punch a direct connection and move a 32 MiB object
 * over it; H4's large results reach H2 without crossing the relay. The http page says in words
 * why it cannot join.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright'
import { spawnPeer, waitFor } from '../node/local-cluster.ts'
import type { PeerProcess } from '../node/local-cluster.ts'
import { ensurePageBuilt } from '../node/page-build.ts'
import type { MeshJson } from '../node/page-server.ts'
import { natAvailable } from './nat-topology.ts'
import { P_PORT, PAGE_PORT, WSS_PORT, startNatMesh, waitForDirect } from './nat-mesh.ts'
import type { NatMesh } from './nat-mesh.ts'
import { createTestCertificate, launchChromiumOn } from './multihost.ts'
import type { TestCertificate } from './multihost.ts'
import { checksum, pattern } from './fixtures/functions.ts'

interface Consumed { length: number, checksum: number, ms: number, transfer: { bytesDirect: number, bytesRelayed: number, detours: number, detourBytes: number } }
interface NatStats { attempts: number, succeeded: number, failed: number, msToDirect: number[] }

const MiB = 1024 * 1024
// The peers' transfer logs, printed (their tails) when this test fails: twice in CI a pull from
// h1 to h2 went around through P though both ends had a direct link, and the cause is in there.
process.env.NAT_DEBUG ??= 'refmesh:transfer'

const WITH_MAPREDUCE = fileURLToPath(new URL('./fixtures/nat-mapreduce-functions.ts', import.meta.url))

test('volunteers across NATs: a tab over https, hole-punched peers, large objects never over a relay', { timeout: 360_000 }, async t => {
  assert.ok(await natAvailable(), 'this test needs root, ip netns and nft (nftables)')
  const began = performance.now()
  const phases: string[] = []
  const phase = (name: string): void => { phases.push(`${name} ${((performance.now() - began) / 1000).toFixed(1)} s`) }
  let mesh: NatMesh | undefined
  let cert: TestCertificate | undefined
  let plain: PeerProcess | undefined
  let chromium: Awaited<ReturnType<typeof launchChromiumOn>> | undefined
  let starting: Promise<unknown> | undefined
  let certMade: Promise<TestCertificate> | undefined
  const tabLog: string[] = []
  try {
    const built = ensurePageBuilt()
    mesh = await startNatMesh({
      homes: [
        { name: 'h1', nat: 'endpoint-independent' },
        { name: 'h2', nat: 'endpoint-independent' },
        { name: 'h3', nat: 'endpoint-independent' },
        { name: 'h4', nat: 'random' }
      ],
      tabHomes: ['h3'],
      modules: { h1: WITH_MAPREDUCE, h2: WITH_MAPREDUCE },
      certificate: async () => await (certMade as Promise<TestCertificate>),
      // The certificate (for P's address), Chromium and the plain-http page peer start while the mesh's peers do.
      onTopology: topology => {
        const pHost = topology.publicHost('P')
        certMade = createTestCertificate([pHost.addr]).then(c => { cert = c; return c })
        starting = Promise.all([
          certMade.then(async c => await launchChromiumOn(topology.home('h3'), { trustSpki: [c.spki] })).then(c => { chromium = c; return c }),
          spawnPeer({ netns: pHost.ns, listen: `/ip4/${pHost.addr}/tcp/5001`, args: ['--listen', `/ip4/${pHost.addr}/tcp/5002/ws`, '--announce', pHost.addr, '--page-port', '8080', '--page-host', pHost.addr] })
            .then(p => { plain = p; return p })
        ])
        // Awaited later (or in the clean-up); a failure must not be an unhandled rejection meanwhile.
        starting.catch(() => {})
      }
    })
    await built
    phase('mesh up')
    const m = mesh
    const id = (home: string): string => m.homes.get(home)?.peer as string
    const pHost = m.topology.publicHost('P')
    const pAddr = pHost.addr
    assert.equal(m.p.page, `https://${pAddr}:${PAGE_PORT}`)
    const [browser, plainPeer] = await (starting as Promise<[NonNullable<typeof chromium>, PeerProcess]>)
    phase('browser up')
    const newPage = async (): Promise<Page> => {
      const page = await browser.browser.newPage()
      page.on('console', msg => { tabLog.push(`[${msg.type()}] ${msg.text()}`) })
      page.on('pageerror', err => { tabLog.push(`[pageerror] ${err.stack ?? err.message}`) })
      return page
    }

    // Over plain http from another host the page is no secure context: it says what is
    // missing and how to fix it, and Join throws a typed error, not a TypeError.
    {
      const page = await newPage()
      await page.goto(`${plainPeer.page!}/`)
      assert.equal(await page.evaluate(() => isSecureContext), false)
      assert.ok(await page.isVisible('#insecure'), 'the message is shown without pressing anything')
      const message = await page.textContent('#insecure')
      for (const words of ['crypto.subtle', 'OPFS', 'Web Locks', 'cross-origin isolation', '--tls-cert', 'Caddy', `ssh -L 8080:${pAddr}:8080`, 'http://localhost:8080/']) {
        assert.ok(message?.includes(words), `the message names ${words}:\n${message}`)
      }
      assert.equal(await page.isDisabled('#join'), true, 'Join is off: it cannot work here')
      const joinError = await page.evaluate(async () => await window.refmesh.join().then(() => 'joined', (err: Error) => `${err.name}: ${err.message}`))
      assert.match(joinError, /^InsecureContextError: This tab cannot join the mesh\. The page came over plain http from/)
      await page.close()
    }
    await plainPeer.stop()

    // Over https (the test CA trusted) the same page on P is a real secure context; the tab
    // in H3 joins over wss, and reaches H1 and H2 directly: WebRTC signalled through P's
    // relay, ICE punching through both NAT routers with P's STUN server from /mesh.json.
    const page = await newPage()
    await page.goto(`${m.p.page!}/`)
    const context = await page.evaluate(() => ({ secure: isSecureContext, isolated: crossOriginIsolated, subtle: crypto.subtle !== undefined, locks: navigator.locks !== undefined }))
    assert.deepEqual(context, { secure: true, isolated: true, subtle: true, locks: true })
    assert.equal(await page.isVisible('#insecure'), false)
    const info = await page.evaluate(async () => await window.refmesh.info()) as MeshJson
    assert.match(info.bootstrap[0], new RegExp(`^/ip4/${pAddr.replace(/\./g, '\\.')}/tcp/${WSS_PORT}/tls/ws/p2p/`), `wss first, at P's address: ${info.bootstrap.join(' ')}`)
    assert.deepEqual(info.iceServers?.flatMap(s => [s.urls].flat()), [m.stun], `the STUN server of --stun reaches the tab: ${JSON.stringify(info.iceServers)}`)
    await page.click('#join')
    await page.waitForFunction(() => window.refmesh.mesh !== undefined, undefined, { timeout: 30_000 })
    const tab = await page.evaluate(() => window.refmesh.mesh!.peerId)
    for (const home of ['h1', 'h2']) {
      await page.waitForFunction((peer) => window.refmesh.mesh?.peers().some(p => p.peer === peer && p.liveness === 'alive' && p.functions.includes('mapreduce.map')) === true, id(home), { timeout: 60_000 })
      await page.waitForFunction((peer) => window.refmesh.links(peer).some(l => l.transport === 'webrtc' && !l.limited && l.direct), id(home), { timeout: 60_000 })
    }
    const toP = await page.evaluate((peer) => window.refmesh.links(peer), m.p.peer)
    assert.ok(toP.some(l => l.transport === 'websockets' && l.remoteAddr.includes('/tls/ws')), `the tab reached P over wss: ${JSON.stringify(toP)}`)
    const fromH1 = (await m.links('h1')).filter(l => l.peer === tab && l.status === 'open' && !l.limited)
    assert.ok(fromH1.some(l => /\/webrtc\//.test(l.addr) && l.direct), `h1 has a direct WebRTC connection to the tab: ${JSON.stringify(fromH1)}`)
    phase('tab direct to h1, h2')

    await page.fill('#mr-maps', '6')
    await page.selectOption('#mr-shard', { label: '256 KiB' })
    await page.check('#mr-spread')
    await page.click('#mr-run')
    await page.waitForFunction(() => ['done', 'failed'].includes(window.refmesh.mapReduce?.state ?? ''), undefined, { timeout: 120_000 })
    const run = await page.evaluate(() => window.refmesh.mapReduce!)
    assert.equal(run.state, 'done', run.error)
    assert.equal(run.result!.matches, true, 'the mesh\'s count equals the count made in the tab')
    assert.equal(await page.getAttribute('#mr-check', 'data-matches'), 'true')
    const placed = run.result!.mapsPlaced
    for (const [who, peer] of [['h1', id('h1')], ['h2', id('h2')], ['the tab', tab]]) {
      assert.ok((placed[peer] ?? 0) > 0, `maps ran on ${who}: ${JSON.stringify(placed)}`)
    }
    t.diagnostic(`MapReduce from a tab behind a NAT: ${Math.round(run.result!.elapsedMs)} ms, maps ${JSON.stringify(placed)}`)
    await page.click('#leave')
    await page.close()
    phase('mapreduce')

    // Every peer knows P at its public address (announced: see test/nat-mesh.ts); the peers
    // behind NATs hold reservations on P and advertise relayed addresses.
    const known = async (): Promise<Array<{ peer: string, addrs: string[] }>> => await m.driver.call('knownAddrs', [], { peer: id('h1') })
    await waitFor('P to advertise its public address', async () => (await known()).find(p => p.peer === m.p.peer)?.addrs.some(a => a.startsWith(`/ip4/${pAddr}/tcp/${P_PORT}`)) === true ? true : undefined, 60_000, 500)
    const h2Addrs = (await known()).find(p => p.peer === id('h2'))?.addrs ?? []
    assert.ok(h2Addrs.some(a => a.includes(`/p2p/${m.p.peer}/p2p-circuit/webrtc`)), `h2 advertises a relayed WebRTC address on P: ${h2Addrs.join(' ')}`)
    assert.ok(!h2Addrs.some(a => a.includes(m.topology.home('h2').publicAddr)), 'h2 advertises no address of its router: nobody can dial one')

    // H1 and H2 (endpoint-independent NATs) end up on a direct WebRTC connection, punched
    // by ICE through both NATs, within 30 s of meeting.
    const link = await waitForDirect(m, 'h1', 'h2', 60_000)
    assert.equal(link.limited, false)
    assert.match(link.addr, /\/webrtc\//)
    // Both ends: a WebRTC connection opens on the dialer's side before the answerer's
    // (ICE and the data channel complete there later), and H2 is the one that pulls.
    const back = await waitForDirect(m, 'h2', 'h1', 30_000)
    assert.equal(back.limited, false)
    const punched = [...await m.driver.call<NatStats>('natStats', [], { peer: id('h1') }).then(s => s.msToDirect), ...await m.driver.call<NatStats>('natStats', [], { peer: id('h2') }).then(s => s.msToDirect)]
    assert.ok(punched.length > 0 && punched.every(ms => ms <= 30_000), `direct within 30 s of meeting: ${punched.join(', ')} ms`)

    // A 32 MiB object made on H1 and pulled by H2 moves over the direct connection: the
    // public host (the relay) carries almost none of the bytes H2 receives.
    const h2Ns = m.topology.home('h2').ns
    await m.driver.call('make', [32 * MiB, 7], { peer: id('h1'), keep: 'dataset' })
    const pBefore = await m.topology.interfaceBytes(pHost.ns)
    const h2Before = await m.topology.interfaceBytes(h2Ns)
    const got = await m.driver.call<Consumed>('consume', [{ $ref: 'dataset' }], { peer: id('h2'), timeoutMs: 120_000 })
    const pAfter = await m.topology.interfaceBytes(pHost.ns)
    const h2After = await m.topology.interfaceBytes(h2Ns)
    assert.equal(got.length, 32 * MiB)
    assert.equal(got.checksum, checksum(pattern(32 * MiB, 7)))
    assert.equal(got.transfer.bytesRelayed, 0)
    assert.ok(got.transfer.bytesDirect >= 32 * MiB)
    const received = h2After.rx - h2Before.rx
    const throughP = (pAfter.rx - pBefore.rx) + (pAfter.tx - pBefore.tx)
    const directShare = 1 - throughP / received
    assert.ok(received >= 32 * MiB, `h2 received ${received} bytes`)
    assert.ok(directShare >= 0.95, `direct share ${directShare.toFixed(3)}: P moved ${throughP} bytes of the ${received} h2 received; h2's transfer ${JSON.stringify(got.transfer)}; h2-h1 links ${JSON.stringify((await m.links('h2')).filter(l => l.peer === id('h1')))}`)
    await m.driver.release('dataset')
    phase('h1-h2 direct, 32 MiB')

    // H4 sits behind a NAT that maps ports at random. It still runs calls (the public
    // caller reaches it directly), and its large result reaches H2 and never over the
    // relay: through a peer both reach directly, or over a direct link when WebRTC's ICE
    // finds one (it sometimes does here through the random NAT, so the test does not
    // assume that the punch fails; which path was taken is printed).
    await m.driver.call('make', [8 * MiB, 9], { peer: id('h4'), keep: 'result4' })
    const before = await m.driver.call<Consumed['transfer']>('transferStats', [], { peer: id('h2') })
    const fromH4 = await m.driver.call<Consumed>('consume', [{ $ref: 'result4' }], { peer: id('h2'), timeoutMs: 120_000 })
    assert.equal(fromH4.length, 8 * MiB)
    assert.equal(fromH4.checksum, checksum(pattern(8 * MiB, 9)))
    assert.equal(fromH4.transfer.bytesRelayed, 0, 'no chunk crossed the relay')
    const h2ToH4 = (await m.links('h2')).filter(l => l.peer === id('h4') && l.status === 'open')
    t.diagnostic(`h4 -> h2: ${fromH4.transfer.detours - before.detours} detour(s), ${fromH4.transfer.detourBytes - before.detourBytes} detour bytes; h2-h4 links ${JSON.stringify(h2ToH4)}`)
    await m.driver.release('result4')
    phase('h4 detour')
    t.diagnostic(`phases: ${phases.join(', ')}`)
  } catch (err) {
    const stderr = [mesh?.p, ...mesh?.homes.values() ?? []].map(p => p?.stderr().slice(-6000) ?? '').join('\n---\n')
    throw new Error(`${(err as Error).message}\nphases: ${phases.join(', ')}\n--- peers ---\n${stderr}\n--- tab ---\n${tabLog.slice(-60).join('\n')}`, { cause: err })
  } finally {
    await Promise.allSettled([starting, certMade])
    await chromium?.close()
    await plain?.stop().catch(() => {})
    await mesh?.stop()
    await cert?.remove()
  }
})
