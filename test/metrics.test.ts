/** A peer's state for Prometheus and for the mesh page, on loopback. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createMesh } from '../node/index.ts'
import { startMetricsServer } from '../node/metrics.ts'
import { spawnPeer } from '../node/local-cluster.ts'
import type { MeshStats } from '../node/index.ts'

test('/metrics and /state.json report the mesh\'s own numbers; loopback by default', async () => {
  const mesh = await createMesh()
  const server = await startMetricsServer({ mesh, port: 0 })
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const big = mesh.put(new Uint8Array(100_000))
    assert.equal((await mesh.get(big)).length, 100_000)
    const text = await (await fetch(`${server.url}/metrics`)).text()
    assert.match(text, /^refmesh_store_objects 1$/m)
    assert.match(text, /^refmesh_store_bytes 100000$/m)
    assert.match(text, /^refmesh_refs_owned 1$/m)
    assert.match(text, /^refmesh_traffic_bytes_total\{kind="chunk",direction="in"\} 0$/m)
    assert.match(text, /^process_cpu_user_seconds_total /m)
    const state = await (await fetch(`${server.url}/state.json`)).json() as MeshStats
    assert.equal(state.peer, mesh.peerId)
    assert.equal(state.store.bytes, 100_000)
    assert.equal((await fetch(`${server.url}/nope`)).status, 404)
    assert.equal((await fetch(`${server.url}/metrics`, { method: 'POST' })).status, 405)
    big.release()
    assert.match(await (await fetch(`${server.url}/metrics`)).text(), /^refmesh_store_objects 0$/m)
  } finally {
    await server.close()
    await mesh.stop()
  }
})

test('refmesh peer --metrics-port serves them', async () => {
  const peer = await spawnPeer({ args: ['--metrics-port', '0'] })
  try {
    assert.ok(peer.metrics !== undefined)
    const state = await (await fetch(`${peer.metrics}/state.json`)).json() as MeshStats
    assert.equal(state.peer, peer.peer)
  } finally {
    await peer.stop()
  }
})
