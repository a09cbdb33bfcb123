/** Shared set-up for tests: a caller mesh in this process, joined to peer processes. */
import { fileURLToPath } from 'node:url'
import { createMesh } from '../node/index.ts'
import type { Mesh, MeshStats } from '../node/index.ts'
import { spawnPeers, stopAll, waitFor, waitForFullMesh } from '../node/local-cluster.ts'
import type { PeerProcess, SpawnPeerOptions } from '../node/local-cluster.ts'

export const FIXTURES = fileURLToPath(new URL('./fixtures/functions.ts', import.meta.url))
export { waitFor }

export interface TestMesh {
  caller: Mesh
  peers: PeerProcess[]
  stats: (peer: string) => Promise<MeshStats>
  close: () => Promise<void>
}

/** `n` peer processes offering the fixture functions, and a caller mesh (this process) that knows them all. */
export async function startMesh (n: number, opts: SpawnPeerOptions = {}): Promise<TestMesh> {
  const peers = await spawnPeers(n, { module: FIXTURES, ...opts })
  let caller: Mesh | undefined
  try {
    caller = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(caller, peers)
  } catch (err) {
    await caller?.stop()
    await stopAll(peers)
    throw err
  }
  const mesh = caller
  return {
    caller: mesh,
    peers,
    stats: async (peer) => await mesh.peerStats(peer, { timeoutMs: 10_000 }),
    close: async () => {
      await mesh.stop()
      await stopAll(peers)
    }
  }
}

/** Waits until every store in the mesh (caller and peers) holds no object and no byte. */
export async function waitForEmptyStores (t: TestMesh, timeoutMs = 15_000): Promise<void> {
  await waitFor('every store to be empty', async () => {
    const all = [t.caller.stats(), ...await Promise.all(t.peers.map(async p => await t.stats(p.peer)))]
    const busy = all.filter(s => s.store.objects !== 0 || s.store.bytes !== 0 || s.refs.owned !== 0 || s.refs.borrowed !== 0)
    return busy.length === 0 ? true : undefined
  }, timeoutMs, 100)
}
