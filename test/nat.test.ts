/**
 * Node peers on home networks behind NAT routers (network namespaces, nftables
 * masquerade; test/nat-topology.ts), meeting through a public bootstrap peer P that
 * runs a relay and answers STUN. Root only: it creates and removes the namespaces.
 * One topology for every assertion (each multi-process test costs the suite's budget).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor } from '../node/local-cluster.ts'
import { natAvailable } from './nat-topology.ts'
import { P_PORT, startNatMesh, waitForDirect } from './nat-mesh.ts'
import type { NatMesh } from './nat-mesh.ts'
import { checksum, pattern } from './fixtures/functions.ts'

interface Consumed { length: number, checksum: number, ms: number, transfer: { bytesDirect: number, bytesRelayed: number, detours: number, detourBytes: number } }
interface NatStats { attempts: number, succeeded: number, failed: number, msToDirect: number[] }

const MiB = 1024 * 1024

test('peers behind NATs: hole punched, large objects direct or around the relay', { timeout: 300_000 }, async () => {
  assert.ok(await natAvailable(), 'this test needs root, ip netns and nft (nftables)')
  let mesh: NatMesh | undefined
  try {
    mesh = await startNatMesh([
      { name: 'h1', nat: 'endpoint-independent' },
      { name: 'h2', nat: 'endpoint-independent' },
      { name: 'h4', nat: 'random' }
    ])
    const m = mesh
    const id = (home: string): string => m.homes.get(home)?.peer as string
    const pAddr = m.topology.publicHost('P').addr

    // AutoNAT: P learns its address is reachable (a peer dialled it back) and advertises
    // it; the peers behind NATs hold reservations on P and advertise relayed addresses.
    const known = async (): Promise<Array<{ peer: string, addrs: string[] }>> => await m.driver.call('knownAddrs', [], { peer: id('h1') })
    await waitFor('P to advertise its verified public address', async () => (await known()).find(p => p.peer === m.p.peer)?.addrs.some(a => a.startsWith(`/ip4/${pAddr}/tcp/${P_PORT}`)) === true ? true : undefined, 60_000, 500)
    const h2Addrs = (await known()).find(p => p.peer === id('h2'))?.addrs ?? []
    assert.ok(h2Addrs.some(a => a.includes(`/p2p/${m.p.peer}/p2p-circuit/webrtc`)), `h2 advertises a relayed WebRTC address on P: ${h2Addrs.join(' ')}`)
    assert.ok(!h2Addrs.some(a => a.includes(m.topology.home('h2').publicAddr)), 'h2 advertises no address of its router: nobody can dial one')

    // H1 and H2 (endpoint-independent NATs) end up on a direct WebRTC connection, punched
    // by ICE through both NATs, within 30 s of meeting.
    const link = await waitForDirect(m, 'h1', 'h2', 60_000)
    assert.equal(link.limited, false)
    assert.match(link.addr, /\/webrtc\//)
    const punched = [...await m.driver.call<NatStats>('natStats', [], { peer: id('h1') }).then(s => s.msToDirect), ...await m.driver.call<NatStats>('natStats', [], { peer: id('h2') }).then(s => s.msToDirect)]
    assert.ok(punched.length > 0 && punched.every(ms => ms <= 30_000), `direct within 30 s of meeting: ${punched.join(', ')} ms`)

    // A 32 MiB object made on H1 and pulled by H2 moves over the direct connection: the
    // public host (the relay) carries almost none of the bytes H2 receives.
    const pNs = m.topology.publicHost('P').ns
    const h2Ns = m.topology.home('h2').ns
    await m.driver.call('make', [32 * MiB, 7], { peer: id('h1'), keep: 'dataset' })
    const pBefore = await m.topology.interfaceBytes(pNs)
    const h2Before = await m.topology.interfaceBytes(h2Ns)
    const got = await m.driver.call<Consumed>('consume', [{ $ref: 'dataset' }], { peer: id('h2'), timeoutMs: 120_000 })
    const pAfter = await m.topology.interfaceBytes(pNs)
    const h2After = await m.topology.interfaceBytes(h2Ns)
    assert.equal(got.length, 32 * MiB)
    assert.equal(got.checksum, checksum(pattern(32 * MiB, 7)))
    assert.equal(got.transfer.bytesRelayed, 0)
    assert.ok(got.transfer.bytesDirect >= 32 * MiB)
    const received = h2After.rx - h2Before.rx
    const throughP = (pAfter.rx - pBefore.rx) + (pAfter.tx - pBefore.tx)
    const directShare = 1 - throughP / received
    assert.ok(received >= 32 * MiB, `h2 received ${received} bytes`)
    assert.ok(directShare >= 0.95, `direct share ${directShare.toFixed(3)}: P moved ${throughP} bytes of the ${received} h2 received`)
    await m.driver.release('dataset')

    // H4 sits behind a NAT that maps ports at random: no hole punch reaches it from
    // another NAT, so H2 has no direct connection to it. It still runs calls (the
    // public caller reaches it directly), and its large result reaches H2 through a
    // peer both reach directly, never over the relay.
    await m.driver.call('make', [8 * MiB, 9], { peer: id('h4'), keep: 'result4' })
    const before = await m.driver.call<Consumed['transfer']>('transferStats', [], { peer: id('h2') })
    const viaDetour = await m.driver.call<Consumed>('consume', [{ $ref: 'result4' }], { peer: id('h2'), timeoutMs: 120_000 })
    assert.equal(viaDetour.length, 8 * MiB)
    assert.equal(viaDetour.checksum, checksum(pattern(8 * MiB, 9)))
    assert.ok(viaDetour.transfer.detours - before.detours >= 1, 'the object was taken around the relay')
    assert.ok(viaDetour.transfer.detourBytes - before.detourBytes >= 8 * MiB)
    assert.equal(viaDetour.transfer.bytesRelayed, 0)
    const h2ToH4 = (await m.links('h2')).filter(l => l.peer === id('h4') && l.status === 'open')
    assert.ok(h2ToH4.every(l => l.limited), `h2 has no direct connection to h4: ${JSON.stringify(h2ToH4)}`)
    const failed = async (home: string): Promise<number> => (await m.driver.call<NatStats>('natStats', [], { peer: id(home) })).failed
    await waitFor('a punch towards h4 to be tried and given up', async () => (await failed('h4')) + (await failed('h2')) >= 1 ? true : undefined, 60_000, 1_000)
    await m.driver.release('result4')
  } finally {
    await mesh?.stop()
  }
})
