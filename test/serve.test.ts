/**
 * Serving other machines, the parts that need no second host: the flags, the
 * addresses a peer announces and a tab dials first, the page server over https
 * and what its /mesh.json tells a tab on another machine, and the words a
 * page that is no secure context shows. test/volunteers.test.ts runs
 * the whole of it across network namespaces.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:https'
import { readFile } from 'node:fs/promises'
import { createMesh, secureWebSockets, withHost } from '../node/index.ts'
import { startPageServer } from '../node/page-server.ts'
import type { MeshJson } from '../node/page-server.ts'
import { loadTls, parseServeFlags, publicHostOf, ServeFlagError } from '../node/serve-flags.ts'
import type { ServeOptions } from '../node/serve-flags.ts'
import { browserDialable } from '../browser/dialer.ts'
import { checkSecureContext, insecureContextMessage } from '../browser/secure-context.ts'
import { createTestCertificate } from './multihost.ts'

test('serve flags: announce multiaddrs or one host, TLS as a pair, TURN with its credentials', () => {
  assert.deepEqual(parseServeFlags({ announce: ['/dns4/mesh.example.org/tcp/4001'], stun: ['stun:stun.example.org:3478'] }), {
    pageHost: undefined, announce: ['/dns4/mesh.example.org/tcp/4001'], announceHost: undefined, tls: undefined, iceServers: [{ urls: 'stun:stun.example.org:3478' }]
  })
  const host = parseServeFlags({ announce: ['mesh.example.org'], turn: ['turn:t.example.org:3478'], 'turn-username': 'u', 'turn-credential': 'p' })
  assert.equal(host.announceHost, 'mesh.example.org')
  assert.deepEqual(host.announce, [])
  assert.deepEqual(host.iceServers, [{ urls: ['turn:t.example.org:3478'], username: 'u', credential: 'p' }])
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ 'tls-cert': 'c.pem' }, /--tls-cert and --tls-key go together/],
    [{ announce: ['mesh.example.org', '/ip4/1.2.3.4/tcp/1'] }, /either multiaddrs .* or one host/],
    [{ announce: ['not a host!'] }, /is neither a multiaddr .* nor a host name/],
    [{ stun: ['stun.example.org'] }, /must be a stun: URL/],
    [{ turn: ['turn:t.example.org'] }, /needs --turn-username and --turn-credential/]
  ]
  for (const [flags, message] of bad) assert.throws(() => parseServeFlags(flags), (err: Error) => err instanceof ServeFlagError && message.test(err.message))
})

test('addresses: /ws becomes wss with a certificate; an announced host replaces every address\'s own', () => {
  assert.equal(secureWebSockets('/ip4/0.0.0.0/tcp/4002/ws'), '/ip4/0.0.0.0/tcp/4002/tls/ws')
  assert.equal(secureWebSockets('/ip4/0.0.0.0/tcp/4002/tls/ws'), '/ip4/0.0.0.0/tcp/4002/tls/ws')
  assert.equal(secureWebSockets('/ip4/0.0.0.0/tcp/4002/wss'), '/ip4/0.0.0.0/tcp/4002/wss')
  assert.equal(secureWebSockets('/ip4/0.0.0.0/tcp/4001'), '/ip4/0.0.0.0/tcp/4001')
  assert.equal(withHost('/ip4/127.0.0.1/tcp/4002/tls/ws', 'mesh.example.org'), '/dns/mesh.example.org/tcp/4002/tls/ws')
  assert.equal(withHost('/ip4/10.0.0.5/udp/4003/webrtc-direct', '203.0.113.5'), '/ip4/203.0.113.5/udp/4003/webrtc-direct')
})

test('a tab dials wss first; from an https page plain ws goes after WebRTC-direct (mixed content), from http it stays first', () => {
  const p = '/p2p/12D3KooWQCxaUtkUnkyrKyY1r4izDAytfPNQ6xhVnGajW7ZzQBM8'
  const ws = `/ip4/10.0.0.5/tcp/4002/ws${p}`
  const wss = `/ip4/10.0.0.5/tcp/4004/tls/ws${p}`
  const direct = `/ip4/10.0.0.5/udp/4003/webrtc-direct/certhash/uEiDrcYZYXuQNY17Txt3SS-V62wd8Pweq4doXfcY294RJCw${p}`
  const tcp = `/ip4/10.0.0.5/tcp/4001${p}`
  assert.deepEqual(browserDialable([tcp, ws, direct, wss], { secureOrigin: true }).map(String), [wss, direct, ws])
  assert.deepEqual(browserDialable([tcp, direct, ws], { secureOrigin: false }).map(String), [ws, direct])
})

test('the words of a page that is no secure context, and none where the page can be a peer', () => {
  const location = { protocol: 'http:', host: '10.77.0.1:8080', hostname: '10.77.0.1', port: '8080' }
  const insecure = checkSecureContext({ isSecureContext: false, crossOriginIsolated: false, crypto: {}, navigator: {} } as unknown as typeof globalThis)
  assert.deepEqual(insecure.missing.map(m => m.feature), ['crypto.subtle', 'the origin private file system (OPFS)', 'Web Locks', 'cross-origin isolation'])
  const message = insecureContextMessage(insecure, location) ?? ''
  for (const words of ['plain http from 10.77.0.1:8080', '--tls-cert cert.pem --tls-key key.pem', 'names 10.77.0.1', 'Caddy, nginx', 'ssh -L 8080:10.77.0.1:8080', 'http://localhost:8080/']) {
    assert.ok(message.includes(words), `"${words}" in:\n${message}`)
  }
  const full = { isSecureContext: true, crossOriginIsolated: true, crypto: { subtle: {} }, navigator: { storage: { getDirectory () {} }, locks: { request () {} } } } as unknown as typeof globalThis
  assert.equal(insecureContextMessage(checkSecureContext(full), location), undefined)
  // Without COOP/COEP (a proxy that drops the headers) a tab still joins, without shared memory.
  assert.equal(insecureContextMessage(checkSecureContext({ ...full, crossOriginIsolated: false } as unknown as typeof globalThis), location), undefined)
})

test('a peer with a certificate and an announced host: wss at that host; its https page hands a remote tab no loopback address', { timeout: 60_000 }, async () => {
  const cert = await createTestCertificate(['127.0.0.1', 'localhost'])
  const tls = await loadTls({ certFile: cert.certFile, keyFile: cert.keyFile })
  const mesh = await createMesh({ listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'], announceHost: '203.0.113.5', tls })
  const ca = await readFile(cert.caFile)
  try {
    const addrs = mesh.libp2p.getMultiaddrs().map(String)
    assert.equal(addrs.length, 2, addrs.join(' '))
    assert.ok(addrs.every(a => a.startsWith('/ip4/203.0.113.5/tcp/')), addrs.join(' '))
    assert.ok(addrs.some(a => /\/tcp\/\d+\/tls\/ws\/p2p\//.test(a)), addrs.join(' '))

    // The page server is told of loopback addresses too (a peer listening on 0.0.0.0 has them).
    const loopback = `/ip4/127.0.0.1/tcp/4004/tls/ws/p2p/${mesh.peerId}`
    const server = await startPageServer({ addrs: () => [loopback, ...addrs], tls, publicHost: 'localhost', iceServers: [{ urls: 'stun:stun.example.org:3478' }] })
    try {
      assert.match(server.url, /^https:\/\/localhost:\d+$/)
      const get = async (host: string): Promise<MeshJson> => await new Promise((resolve, reject) => {
        request(`${server.url}/mesh.json`, { ca, servername: 'localhost', headers: { host } }, res => {
          let body = ''
          res.on('data', (d: Buffer) => { body += d.toString() }).on('end', () => { resolve(JSON.parse(body) as MeshJson) })
        }).on('error', reject).end()
      })
      const remote = await get('mesh.example.org:8443')
      assert.deepEqual(remote.bootstrap, addrs.filter(a => a.includes('/tls/ws')), 'a tab on another machine gets no loopback address')
      assert.deepEqual(remote.iceServers, [{ urls: 'stun:stun.example.org:3478' }])
      assert.ok((await get('localhost:8443')).bootstrap.includes(loopback), 'a tab on this machine gets them')
    } finally {
      await server.close()
    }
  } finally {
    await mesh.stop()
    await cert.remove()
  }
})

test('the page URL names the announced host only when the page listens beyond loopback', () => {
  const flags = (v: Record<string, unknown>): ServeOptions => parseServeFlags(v)
  assert.equal(publicHostOf(flags({ announce: ['/dns4/mesh.example.org/tcp/4443/tls/ws'] })), undefined, 'a page on loopback (a proxy in front) keeps its own URL')
  assert.equal(publicHostOf(flags({ 'page-host': '0.0.0.0', announce: ['mesh.example.org'] })), 'mesh.example.org')
  assert.equal(publicHostOf(flags({ 'page-host': '0.0.0.0', announce: ['/dns4/mesh.example.org/tcp/4001'] })), 'mesh.example.org')
  assert.equal(publicHostOf(flags({ 'page-host': '192.168.1.5' })), '192.168.1.5')
})
