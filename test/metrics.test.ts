/** A peer's state for Prometheus and for the mesh page, on loopback. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../node/index.ts'
import { startMetricsServer } from '../node/metrics.ts'
import { spawnPeer } from '../node/local-cluster.ts'
import type { MeshStats } from '../node/index.ts'

/** The samples of a text exposition, keyed `name{labels}` as written; and each metric's TYPE. */
function parse (text: string): { samples: Map<string, number>, types: Map<string, string> } {
  const samples = new Map<string, number>()
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type !== null) types.set(type[1], type[2])
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return { samples, types }
}

async function scrape (url: string): Promise<ReturnType<typeof parse>> {
  const res = await fetch(`${url}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parse(await res.text())
}

/** The series that must agree with `stats`, one entry per sample. */
function expected (stats: MeshStats): Record<string, number> {
  const t = stats.traffic
  return {
    refmesh_store_objects: stats.store.objects,
    refmesh_store_bytes: stats.store.bytes,
    refmesh_store_capacity_bytes: stats.store.capacity,
    refmesh_store_peak_bytes: stats.store.peakBytes,
    refmesh_store_spilled_objects: stats.store.spilledObjects,
    refmesh_store_spilled_bytes: stats.store.spilledBytes,
    refmesh_store_spills_total: stats.store.spills,
    refmesh_store_restores_total: stats.store.restores,
    refmesh_store_drops_total: stats.store.drops,
    refmesh_refs_owned: stats.refs.owned,
    refmesh_refs_borrowed: stats.refs.borrowed,
    'refmesh_traffic_bytes_total{kind="control",direction="in"}': t.controlIn,
    'refmesh_traffic_bytes_total{kind="control",direction="out"}': t.controlOut,
    'refmesh_traffic_bytes_total{kind="chunk",direction="in"}': t.chunkIn,
    'refmesh_traffic_bytes_total{kind="chunk",direction="out"}': t.chunkOut,
    refmesh_transfer_chunks_served_total: stats.transfer.chunksServed,
    refmesh_transfer_chunks_fetched_total: stats.transfer.chunksFetched,
    refmesh_transfer_bad_chunks_total: stats.transfer.badChunks,
    refmesh_transfer_duplicate_chunks_total: stats.transfer.duplicateChunks,
    refmesh_transfer_chunks_spread_total: stats.transfer.chunksSpread,
    refmesh_transfer_objects_pulled_total: stats.transfer.objectsPulled,
    refmesh_calls_executed_total: stats.calls.executed,
    refmesh_calls_running: stats.calls.running,
    refmesh_calls_queued: stats.calls.queued,
    refmesh_calls_slots: stats.calls.slots,
    refmesh_calls_submitted_total: stats.calls.submitted,
    refmesh_functions: stats.functions.length,
    'refmesh_peers_known{liveness="alive"}': stats.peers.length,
    [`refmesh_peer_info{peer="${stats.peer}"}`]: 1
  }
}

function assertMatches (samples: Map<string, number>, stats: MeshStats): void {
  for (const [key, value] of Object.entries(expected(stats))) assert.equal(samples.get(key), value, key)
}

test('/metrics and /state.json report the mesh\'s own numbers; loopback by default', async () => {
  const mesh = await createMesh()
  const server = await startMetricsServer({ mesh, port: 0 })
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)

    const before = await scrape(server.url)
    assertMatches(before.samples, mesh.stats())
    assert.equal(before.samples.get('refmesh_store_bytes'), 0)
    // Counters are counters, the rest gauges; the process metrics are there too.
    assert.equal(before.types.get('refmesh_traffic_bytes_total'), 'counter')
    assert.equal(before.types.get('refmesh_transfer_bad_chunks_total'), 'counter')
    assert.equal(before.types.get('refmesh_store_bytes'), 'gauge')
    for (const [name, type] of before.types) if (name.startsWith('refmesh_')) assert.equal(type, name.endsWith('_total') ? 'counter' : 'gauge', name)
    assert.ok(before.samples.has('process_cpu_user_seconds_total'))
    assert.ok(before.samples.has('nodejs_heap_size_used_bytes'))

    mesh.register('double', (x: number) => x * 2)
    const doubled = mesh.fn<(x: number) => number>('double').remote(21)
    assert.equal(await mesh.get(doubled), 42)
    doubled.release()
    const big = mesh.put(new Uint8Array(100_000))
    assert.equal((await mesh.get(big)).length, 100_000)
    const stats = mesh.stats()
    assert.equal(stats.store.bytes, 100_000)
    const after = await scrape(server.url)
    assertMatches(after.samples, stats)
    assert.equal(after.samples.get('refmesh_store_bytes'), 100_000)
    assert.equal(after.samples.get('refmesh_refs_owned'), stats.refs.owned)
    assert.equal(after.samples.get('refmesh_calls_executed_total'), 1)
    assert.equal(after.samples.get('refmesh_functions'), 1)

    // A query string does not matter.
    assert.equal((await fetch(`${server.url}/metrics?x=1`)).status, 200)

    const res = await fetch(`${server.url}/state.json`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
    const state = await res.json() as MeshStats
    assert.equal(state.peer, mesh.peerId)
    assert.deepEqual(state.store, mesh.stats().store)
    assert.deepEqual(state.refs, mesh.stats().refs)
    assert.deepEqual(state.functions, ['double'])

    const missing = await fetch(`${server.url}/nope`)
    assert.equal(missing.status, 404)
    await missing.body?.cancel()
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = await fetch(`${server.url}/metrics`, { method })
      assert.equal(r.status, 405, method)
      assert.equal(r.headers.get('allow'), 'GET')
      await r.body?.cancel()
    }

    big.release()
    const released = await scrape(server.url)
    assertMatches(released.samples, mesh.stats())
    assert.equal(released.samples.get('refmesh_store_bytes'), 0)
  } finally {
    await server.close()
    await mesh.stop()
  }
  await assert.rejects(fetch(`${server.url}/metrics`), 'closed')
  await server.close() // twice is fine
})

test('traffic between two peers shows, per peer and in total', async () => {
  const a = await createMesh()
  const b = await createMesh({ bootstrap: [a.libp2p.getMultiaddrs()[0].toString()] })
  const server = await startMetricsServer({ mesh: b, port: 0 })
  try {
    a.register('zeros', (n: number) => new Uint8Array(n))
    await b.waitForPeer(a.peerId, { signal: AbortSignal.timeout(15_000) })
    const r = b.fn<(n: number) => Uint8Array>('zeros', { timeoutMs: 15_000 }).remote(1_000_000)
    assert.equal((await b.get(r, { timeoutMs: 15_000 })).length, 1_000_000)
    const stats = b.stats()
    assert.ok(stats.traffic.chunkIn >= 1_000_000)
    const { samples } = await scrape(server.url)
    assertMatches(samples, stats)
    const mine = stats.trafficByPeer[a.peerId]
    assert.equal(samples.get(`refmesh_peer_traffic_bytes_total{peer="${a.peerId}",kind="chunk",direction="in"}`), mine.chunkIn)
    assert.equal(samples.get(`refmesh_peer_traffic_bytes_total{peer="${a.peerId}",kind="control",direction="out"}`), mine.controlOut)
    assert.equal(samples.get(`refmesh_calls_placed_total{executor="${a.peerId}"}`), 1)
    assert.equal(samples.get('refmesh_peers_known{liveness="alive"}'), 1)
    r.release()
  } finally {
    await server.close()
    await b.stop()
    await a.stop()
  }
})

test('a failing stats() answers 500 and the server carries on', async () => {
  let fail = true
  const real = await createMesh()
  const mesh = { peerId: real.peerId, stats: (): MeshStats => { if (fail) throw new Error('boom'); return real.stats() } }
  const server = await startMetricsServer({ mesh, port: 0 })
  try {
    for (const path of ['/metrics', '/state.json']) {
      const r = await fetch(`${server.url}${path}`)
      assert.equal(r.status, 500, path)
      assert.match(await r.text(), /boom/)
    }
    fail = false
    assertMatches((await scrape(server.url)).samples, real.stats())
    assert.equal((await fetch(`${server.url}/state.json`)).status, 200)
  } finally {
    await server.close()
    await real.stop()
  }
})

test('a port in use is an error from startMetricsServer, not a crash', async () => {
  const mesh = await createMesh()
  const first = await startMetricsServer({ mesh, port: 0 })
  try {
    const port = Number(new URL(first.url).port)
    await assert.rejects(startMetricsServer({ mesh, port }), /EADDRINUSE/)
  } finally {
    await first.close()
    await mesh.stop()
  }
})

test('refmesh peer --metrics-port serves them', async () => {
  const peer = await spawnPeer({ args: ['--metrics-port', '0'] })
  try {
    assert.ok(peer.metrics !== undefined)
    assert.match(peer.metrics, /^http:\/\/127\.0\.0\.1:\d+$/)
    const state = await (await fetch(`${peer.metrics}/state.json`)).json() as MeshStats
    assert.equal(state.peer, peer.peer)
    const { samples } = await scrape(peer.metrics)
    assert.equal(samples.get(`refmesh_peer_info{peer="${peer.peer}"}`), 1)
  } finally {
    await peer.stop()
  }
})
