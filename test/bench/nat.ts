/**
 * `npm run bench:nat`: NAT traversal between two home networks behind
 * endpoint-independent NAT routers (network namespaces; test/nat-topology.ts), with
 * a public bootstrap peer P (relay, STUN). Root only.
 *
 *  - direct_share: a 32 MiB object made on H1 and pulled by H2, bytes that did not
 *    pass through P (kernel interface counters) over all bytes H2 received.
 *  - punch_success: fresh meetings (H2's peer restarted with a new identity, so H1 and
 *    H2 meet anew) that ended on a direct connection within 30 s, over meetings.
 *  - figures: ms from meeting (first hearing of the other's relayed address) to the
 *    direct connection, per meeting, with the median and the worst.
 *
 * Options: --meetings N (default 20), --budget-s S (stop starting meetings after S
 * seconds, default 600; the result says how many ran). Ends with `bench-result {json}`.
 */
import { parseArgs } from 'node:util'
import { loadavg } from 'node:os'
import { natAvailable } from '../nat-topology.ts'
import { startNatMesh, waitForDirect } from '../nat-mesh.ts'
import type { NatMesh } from '../nat-mesh.ts'

const { values } = parseArgs({ options: { meetings: { type: 'string', default: '20' }, 'budget-s': { type: 'string', default: '600' } } })
const meetings = Number(values.meetings)
const budgetMs = Number(values['budget-s']) * 1000
if (!(await natAvailable())) {
  console.error('bench:nat needs root, ip netns and nft (nftables)')
  process.exit(2)
}

interface NatStats { attempts: number, succeeded: number, failed: number, msToDirect: number[] }
const MiB = 1024 * 1024
const started = Date.now()
const load = [loadavg()[0]]
let mesh: NatMesh | undefined
let pull: { bytes: number, received: number, throughP: number, ms: number } | undefined
try {
  mesh = await startNatMesh({ homes: [{ name: 'h1', nat: 'endpoint-independent' }, { name: 'h2', nat: 'endpoint-independent' }] })
  const m = mesh
  const id = (home: string): string => m.homes.get(home)?.peer as string
  const stats = async (home: string): Promise<NatStats> => await m.driver.call<NatStats>('natStats', [], { peer: id(home) })

  const results: Array<{ direct: boolean, ms?: number }> = []
  let h1Seen = 0
  for (let i = 0; i < meetings; i++) {
    if (i > 0) {
      if (Date.now() - started > budgetMs) break
      await m.homes.get('h2')?.stop()
      await m.startHome('h2')
    }
    const direct = await waitForDirect(m, 'h1', 'h2', 30_000).then(() => true, () => false)
    let ms: number | undefined
    if (direct) {
      // The smaller id dialled: its newest figure is this meeting's.
      const a = await stats('h1')
      const b = await stats('h2')
      if (a.msToDirect.length > h1Seen) ms = a.msToDirect[a.msToDirect.length - 1]
      else ms = b.msToDirect[b.msToDirect.length - 1]
      h1Seen = a.msToDirect.length
    }
    results.push({ direct, ms })
    console.error(`meeting ${i + 1}: ${direct ? `direct after ${ms ?? '?'} ms` : 'no direct connection within 30 s'}`)

    if (i === 0) {
      const pNs = m.topology.publicHost('P').ns
      const h2Ns = m.topology.home('h2').ns
      await m.driver.call('make', [32 * MiB, 1], { peer: id('h1'), keep: 'dataset' })
      const p0 = await m.topology.interfaceBytes(pNs)
      const h0 = await m.topology.interfaceBytes(h2Ns)
      const t0 = performance.now()
      const got = await m.driver.call<{ length: number }>('consume', [{ $ref: 'dataset' }], { peer: id('h2'), timeoutMs: 120_000 }).catch((err: Error) => {
        console.error(`the 32 MiB pull failed: ${err.message}`)
        return { length: 0 }
      })
      const pullMs = performance.now() - t0
      const p1 = await m.topology.interfaceBytes(pNs)
      const h1 = await m.topology.interfaceBytes(h2Ns)
      await m.driver.release('dataset')
      const received = h1.rx - h0.rx
      const throughP = (p1.rx - p0.rx) + (p1.tx - p0.tx)
      pull = { bytes: got.length, received, throughP, ms: Math.round(pullMs) }
    }
  }
  const times = results.flatMap(r => r.ms === undefined ? [] : [r.ms]).sort((a, b) => a - b)
  const succeeded = results.filter(r => r.direct).length
  const ratios = {
    direct_share: pull === undefined || pull.bytes === 0 ? 0 : Math.max(0, 1 - pull.throughP / pull.received),
    punch_success: results.length === 0 ? 0 : succeeded / results.length
  }
  load.push(loadavg()[0])
  const figures = {
    meetings_run: results.length,
    meetings_asked: meetings,
    direct_connections: succeeded,
    ms_to_direct: times,
    ms_to_direct_median: times.length === 0 ? null : times[Math.floor(times.length / 2)],
    ms_to_direct_max: times.length === 0 ? null : times[times.length - 1],
    pull_32mib_ms: pull?.ms,
    pull_bytes_received_by_h2: pull?.received,
    pull_bytes_through_p: pull?.throughP,
    load_average: load
  }
  console.log('| metric | value |')
  console.log('|---|---|')
  console.log(`| direct share, 32 MiB H1 -> H2 | ${(ratios.direct_share * 100).toFixed(1)}% (P moved ${pull?.throughP ?? '?'} of ${pull?.received ?? '?'} bytes; ${pull?.ms ?? '?'} ms) |`)
  console.log(`| punch success | ${succeeded} / ${results.length} meetings${results.length < meetings ? ` (of ${meetings} asked: time budget)` : ''} |`)
  console.log(`| meeting to direct connection | median ${figures.ms_to_direct_median ?? '-'} ms, max ${figures.ms_to_direct_max ?? '-'} ms |`)
  console.log(`bench-result ${JSON.stringify({ name: 'nat', figures, ratios })}`)
} finally {
  await mesh?.stop()
}
