/**
 * `npm start` / `refmesh demo`: a local mesh of three Node peer processes runs the
 * MapReduce word count, with a progress bar, then shows the top words and how
 * many bytes moved between peers.
 */
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { createMesh } from '../node/index.ts'
import type { Mesh, MeshStats } from '../node/index.ts'
import { parseBytes } from '../core/constants.ts'
import { spawnPeers, stopAll, waitForFullMesh } from '../node/local-cluster.ts'
import type { PeerProcess } from '../node/local-cluster.ts'
import { runMapReduce, wordCountLocal } from './mapreduce.ts'

const MODULE = fileURLToPath(new URL('./mapreduce.ts', import.meta.url))
const PEERS = 3

function progressBar (stage: string, done: number, total: number): void {
  const width = 30
  const filled = Math.round(width * done / Math.max(total, 1))
  const line = `${stage.padEnd(6)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`
  if (process.stdout.isTTY) process.stdout.write(`\r${line}${done === total ? '\n' : ''}`)
  else if (done === total || done === 0) process.stdout.write(`${line}\n`)
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(2)} MiB`
const kib = (n: number): string => `${(n / 1024).toFixed(1)} KiB`

export async function runDemo (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      maps: { type: 'string', default: '12' },
      reduces: { type: 'string', default: '4' },
      'shard-bytes': { type: 'string', default: '2MiB' },
      seed: { type: 'string', default: '2026' }
    },
    strict: true
  })
  const count = (name: string, v: string): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new Error(`--${name} must be a whole number from 1 to 10000, not "${v}"`)
    return n
  }
  const options = {
    maps: count('maps', values.maps),
    reduces: count('reduces', values.reduces),
    shardBytes: parseBytes(values['shard-bytes']),
    seed: count('seed', values.seed)
  }

  process.stdout.write(`starting ${PEERS} peer processes...\n`)
  let peers: PeerProcess[] = []
  let driver: Mesh | undefined
  const interrupted = (): void => { void stopAll(peers).finally(() => process.exit(130)) }
  process.once('SIGINT', interrupted)
  try {
    peers = await spawnPeers(PEERS, { module: MODULE })
    driver = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(driver, peers)
    for (const p of peers) process.stdout.write(`  peer ${p.peer}  ${p.addrs[0]}\n`)

    process.stdout.write(`word count: ${options.maps} maps over ${mib(options.shardBytes)} shards, ${options.reduces} reduces\n`)
    const result = await runMapReduce(driver, { ...options, onProgress: progressBar })
    const expected = wordCountLocal(options)

    process.stdout.write(`\ntop words (${result.totalWords.toLocaleString('en-US')} words, ${result.distinctWords} distinct, ${(result.elapsedMs / 1000).toFixed(2)} s):\n`)
    for (const [word, n] of result.top) process.stdout.write(`  ${word.padEnd(12)} ${n.toLocaleString('en-US')}\n`)

    const stats: MeshStats[] = [driver.stats(), ...await Promise.all(peers.map(async p => await driver!.peerStats(p.peer, { timeoutMs: 10_000 })))]
    process.stdout.write('\nbytes moved (received by each peer):\n')
    process.stdout.write(`  ${'peer'.padEnd(16)} ${'role'.padEnd(8)} ${'chunks in'.padStart(12)} ${'chunks out'.padStart(12)} ${'control in+out'.padStart(15)} ${'calls run'.padStart(10)}\n`)
    stats.forEach((s, i) => {
      const t = s.traffic
      process.stdout.write(`  ${('…' + s.peer.slice(-14)).padEnd(16)} ${(i === 0 ? 'driver' : 'peer').padEnd(8)} ${mib(t.chunkIn).padStart(12)} ${mib(t.chunkOut).padStart(12)} ${kib(t.controlIn + t.controlOut).padStart(15)} ${String(s.calls.executed).padStart(10)}\n`)
    })
    process.stdout.write('  (the driver sends its shards once; map outputs go from mappers to reducers directly)\n')

    const same = JSON.stringify(result.top) === JSON.stringify(expected.top) && result.totalWords === expected.totalWords && result.distinctWords === expected.distinctWords
    if (!same) throw new Error(`the mesh's answer differs from the local count: ${JSON.stringify(result.top)} vs ${JSON.stringify(expected.top)}`)
    process.stdout.write('\nresult matches a local single-process count.\n')
  } finally {
    process.removeListener('SIGINT', interrupted)
    await driver?.stop()
    await stopAll(peers)
  }
}
