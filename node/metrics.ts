/**
 * A peer's state over HTTP, for Prometheus (`GET /metrics`) and for the mesh
 * page (`GET /state.json`). Binds to loopback unless told otherwise.
 *
 * Every series is read from `mesh.stats()` at scrape time. To expose a new
 * number, add one line to `SERIES`: a name ending in `_total` is a counter,
 * any other name a gauge.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { MeshStats } from '../core/mesh.ts'

export interface MetricsServerInit {
  mesh: { stats(): MeshStats, peerId: string }
  /** 0: any free port */
  port: number
  /** default 127.0.0.1: loopback only */
  host?: string
}

export interface MetricsServer {
  /** e.g. http://127.0.0.1:9464 */
  url: string
  close(): Promise<void>
}

type Labels = Record<string, string>
/** One value, or one per label set; undefined: not in these stats (leave the series as it was). */
type Reading = number | Array<[Labels, number]> | undefined

interface Series {
  name: string
  help: string
  labelNames?: string[]
  read: (s: MeshStats) => Reading
}

const def = (name: string, help: string, read: Series['read'], labelNames?: string[]): Series => ({ name, help, read, labelNames })

const DIRECTIONS = [['control', 'controlIn', 'in'], ['control', 'controlOut', 'out'], ['chunk', 'chunkIn', 'in'], ['chunk', 'chunkOut', 'out']] as const
const LIVENESS = ['alive', 'suspect', 'dead'] as const

/** Every series this server exposes, besides prom-client's process and Node.js metrics. */
export const SERIES: readonly Series[] = [
  def('refmesh_store_objects', 'objects held in this peer\'s store', s => s.store.objects),
  def('refmesh_store_bytes', 'bytes this peer\'s store holds in memory (reservations included)', s => s.store.bytes),
  def('refmesh_store_capacity_bytes', 'capacity of this peer\'s store', s => s.store.capacity),
  def('refmesh_store_peak_bytes', 'the most bytes this peer\'s store has held in memory', s => s.store.peakBytes),
  def('refmesh_store_spilled_objects', 'objects this peer holds on disk only', s => s.store.spilledObjects),
  def('refmesh_store_spilled_bytes', 'bytes this peer holds on disk', s => s.store.spilledBytes),
  def('refmesh_store_spills_total', 'objects written to disk', s => s.store.spills),
  def('refmesh_store_restores_total', 'spilled objects read back into memory', s => s.store.restores),
  def('refmesh_store_drops_total', 'fetched copies dropped under memory pressure', s => s.store.drops),
  def('refmesh_refs_owned', 'objects this peer owns', s => s.refs.owned),
  def('refmesh_refs_borrowed', 'objects owned elsewhere that this peer holds Refs to', s => s.refs.borrowed),

  def('refmesh_traffic_bytes_total', 'bytes sent and received, by protocol', s =>
    DIRECTIONS.map(([kind, field, direction]) => [{ kind, direction }, s.traffic[field]]), ['kind', 'direction']),
  def('refmesh_peer_traffic_bytes_total', 'bytes sent to and received from each peer, by protocol', s =>
    Object.entries(s.trafficByPeer).flatMap(([peer, t]) =>
      DIRECTIONS.map(([kind, field, direction]): [Labels, number] => [{ peer, kind, direction }, t[field]])), ['peer', 'kind', 'direction']),

  def('refmesh_transfer_chunks_served_total', 'chunks served to other peers', s => s.transfer.chunksServed),
  def('refmesh_transfer_chunks_fetched_total', 'chunks fetched and verified', s => s.transfer.chunksFetched),
  def('refmesh_transfer_bad_chunks_total', 'chunks that failed their hash', s => s.transfer.badChunks),
  def('refmesh_transfer_objects_pulled_total', 'objects pulled from other peers', s => s.transfer.objectsPulled),
  def('refmesh_transfer_duplicate_chunks_total', 'chunks that arrived twice (asked of two holders near the end of a pull)', s => s.transfer.duplicateChunks),
  def('refmesh_transfer_chunks_spread_total', 'chunk asks this peer, super-seeding, answered with the receiver the chunk went to (SPREAD)', s => s.transfer.chunksSpread),

  def('refmesh_calls_executed_total', 'calls this peer ran', s => s.calls.executed),
  def('refmesh_calls_running', 'calls running now', s => s.calls.running),
  def('refmesh_calls_queued', 'calls admitted and waiting for a slot', s => s.calls.queued),
  def('refmesh_calls_slots', 'calls this peer runs at once', s => s.calls.slots),
  def('refmesh_calls_submitted_total', 'calls this peer submitted', s => s.calls.submitted),
  def('refmesh_calls_spilled_back_total', 'calls this peer handed back to their caller', s => s.calls.spilledBack),
  def('refmesh_calls_spillbacks_received_total', 'calls handed back to this peer', s => s.calls.spillbacksReceived),
  def('refmesh_calls_placed_total', 'calls this peer placed, by executor', s =>
    Object.entries(s.placed).map(([executor, n]) => [{ executor }, n]), ['executor']),

  def('refmesh_args_local_bytes_total', 'argument bytes found in this peer\'s store', s => s.args.localBytes),
  def('refmesh_args_fetched_bytes_total', 'argument bytes fetched from other peers', s => s.args.fetchedBytes),

  def('refmesh_gossip_published_total', 'state messages this peer published', s => s.gossip.published),
  def('refmesh_gossip_received_total', 'state messages this peer received', s => s.gossip.received),

  def('refmesh_functions', 'functions this peer offers', s => s.functions.length),
  def('refmesh_peers_known', 'other peers this peer knows, by liveness', s => {
    const seen = new Set<string>([...LIVENESS, ...s.membership.map(m => m.liveness)])
    return [...seen].map(liveness => [{ liveness }, s.membership.filter(m => m.liveness === liveness).length])
  }, ['liveness']),
  def('refmesh_peers_connected', 'other peers this peer has a connection to', s => s.membership.filter(m => m.connected).length),
  def('refmesh_peer_deaths_total', 'peers declared dead, by how (refused: connections closed and a redial refused; silent: past the heartbeat bound)', s =>
    Object.entries(s.deaths).map(([cause, n]): [Labels, number] => [{ cause }, n]), ['cause'])
]

type Metric = Gauge | Counter

/** Replaces the metric's values with `reading`; a failed or missing reading leaves them as they were. */
function apply (metric: Metric, reading: Reading): void {
  if (reading === undefined) return
  const values: Array<[Labels, number]> = typeof reading === 'number' ? [[{}, reading]] : reading
  const ok = values.filter(([, v]) => Number.isFinite(v) && (metric instanceof Gauge || v >= 0))
  metric.reset()
  for (const [labels, v] of ok) {
    if (metric instanceof Gauge) metric.set(labels, v)
    else metric.inc(labels, v)
  }
}

export async function startMetricsServer (init: MetricsServerInit): Promise<MetricsServer> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  // One stats() per scrape, read by every series' collect().
  let current: MeshStats | undefined
  const read = (series: Series): Reading => {
    if (current === undefined) return undefined
    try { return series.read(current) } catch { return undefined }
  }
  for (const series of SERIES) {
    const config = { name: series.name, help: series.help, labelNames: series.labelNames ?? [], registers: [registry] }
    if (series.name.endsWith('_total')) {
      new Counter({ ...config, collect () { apply(this, read(series)) } })
    } else {
      new Gauge({ ...config, collect () { apply(this, read(series)) } })
    }
  }
  new Gauge({ name: 'refmesh_peer_info', help: 'this peer\'s id', labelNames: ['peer'], registers: [registry] }).set({ peer: init.mesh.peerId }, 1)

  // Scrapes take turns, so that each reports the stats it read.
  let turn: Promise<unknown> = Promise.resolve()
  const scrape = (): Promise<string> => {
    const next = turn.then(async () => {
      current = init.mesh.stats()
      try { return await registry.metrics() } finally { current = undefined }
    })
    turn = next.catch(() => {})
    return next
  }

  const server = createServer((req, res) => {
    void (async () => {
      try {
        if (req.method !== 'GET') {
          res.writeHead(405, { allow: 'GET', 'content-type': 'text/plain' }).end('method not allowed\n')
          return
        }
        const path = new URL(req.url ?? '/', 'http://localhost').pathname
        if (path === '/metrics') {
          const body = await scrape()
          res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' }).end(body)
        } else if (path === '/state.json') {
          const body = JSON.stringify(init.mesh.stats())
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(body)
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
        }
      } catch (err) {
        try {
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
          res.end(`error: ${(err as Error)?.message ?? String(err)}\n`)
        } catch { res.destroy() }
      }
    })()
  })

  const host = init.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port, host, () => { server.off('error', reject); resolve() })
  })
  // Past listen(), an error (say, out of file descriptors on accept) is reported, never thrown.
  server.on('error', err => { process.emitWarning(`metrics server: ${err.message}`) })

  const { port } = server.address() as AddressInfo
  let closed: Promise<void> | undefined
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: async () => {
      closed ??= new Promise<void>(resolve => {
        server.close(() => resolve())
        server.closeAllConnections()
        registry.clear()
      })
      await closed
    }
  }
}
