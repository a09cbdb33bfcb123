/**
 * A peer's state over HTTP, for Prometheus (`/metrics`) and for the mesh page
 * (`/state.json`). Binds to loopback unless told otherwise.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { MeshStats } from '../core/mesh.ts'

export interface MetricsServerInit {
  mesh: { stats(): MeshStats }
  /** 0: any free port */
  port: number
  host?: string
}

export interface MetricsServer {
  url: string
  close(): Promise<void>
}

/** name, help, and how to read it from the stats; labelled series return several values. */
type Series = [name: string, help: string, read: (s: MeshStats) => number | Array<[Record<string, string>, number]>, labelNames?: string[]]

const series: Series[] = [
  ['refmesh_store_objects', 'objects held in this peer\'s store', s => s.store.objects],
  ['refmesh_store_bytes', 'bytes held in this peer\'s store', s => s.store.bytes],
  ['refmesh_store_capacity_bytes', 'capacity of this peer\'s store', s => s.store.capacity],
  ['refmesh_refs_owned', 'objects this peer owns', s => s.refs.owned],
  ['refmesh_refs_borrowed', 'objects owned elsewhere that this peer holds Refs to', s => s.refs.borrowed],
  ['refmesh_calls_executed_total', 'calls this peer ran', s => s.calls.executed],
  ['refmesh_calls_running', 'calls running now', s => s.calls.running],
  ['refmesh_calls_queued', 'calls admitted and waiting', s => s.calls.queued],
  ['refmesh_calls_slots', 'calls this peer runs at once', s => s.calls.slots],
  ['refmesh_calls_submitted_total', 'calls this peer submitted', s => s.calls.submitted],
  ['refmesh_calls_spilled_back_total', 'calls this peer handed back', s => s.calls.spilledBack],
  ['refmesh_traffic_bytes_total', 'bytes sent and received, by protocol', s => [
    [{ kind: 'control', direction: 'in' }, s.traffic.controlIn],
    [{ kind: 'control', direction: 'out' }, s.traffic.controlOut],
    [{ kind: 'chunk', direction: 'in' }, s.traffic.chunkIn],
    [{ kind: 'chunk', direction: 'out' }, s.traffic.chunkOut]
  ], ['kind', 'direction']],
  ['refmesh_transfer_chunks_served_total', 'chunks served to other peers', s => s.transfer.chunksServed],
  ['refmesh_transfer_chunks_fetched_total', 'chunks fetched and verified', s => s.transfer.chunksFetched],
  ['refmesh_transfer_bad_chunks_total', 'chunks that failed their hash', s => s.transfer.badChunks],
  ['refmesh_args_local_bytes_total', 'argument bytes found in this peer\'s store', s => s.args.localBytes],
  ['refmesh_args_fetched_bytes_total', 'argument bytes fetched from other peers', s => s.args.fetchedBytes],
  ['refmesh_peers_known', 'peers this peer knows, by liveness', s => (['alive', 'suspect'] as const).map(l => [{ liveness: l }, s.membership.filter(m => m.liveness === l).length]), ['liveness']]
]

export async function startMetricsServer (init: MetricsServerInit): Promise<MetricsServer> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  let current: MeshStats | undefined
  for (const [name, help, read, labelNames = []] of series) {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect () {
        if (current === undefined) return
        const v = read(current)
        if (typeof v === 'number') this.set(v)
        else for (const [labels, n] of v) this.set(labels, n)
      }
    })
  }

  const server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.method !== 'GET') {
          res.writeHead(405, { allow: 'GET' }).end('method not allowed\n')
          return
        }
        if (req.url === '/metrics') {
          current = init.mesh.stats()
          const body = await registry.metrics()
          res.writeHead(200, { 'content-type': registry.contentType }).end(body)
        } else if (req.url === '/state.json') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(init.mesh.stats()))
        } else {
          res.writeHead(404).end('not found\n')
        }
      } catch (err) {
        if (!res.headersSent) res.writeHead(500)
        res.end(`error: ${(err as Error).message}\n`)
      }
    })()
  })
  const host = init.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port, host, () => { server.off('error', reject); resolve() })
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: async () => { await new Promise<void>(resolve => { server.close(() => resolve()); server.closeAllConnections() }) }
  }
}
