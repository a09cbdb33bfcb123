/**
 * Chaos: MapReduce on six peer processes while a random non-caller peer is
 * killed with SIGKILL every `everyMs` (a bounded number of kills, each replaced
 * by a new peer that joins the mesh). The result must equal the fault-free
 * count, and every surviving store must hold nothing at the end.
 *
 * The short version runs in `npm test` (test/chaos.test.ts); `npm run chaos`
 * runs a longer one (more kills, a bigger corpus) and prints what happened.
 */
import { fileURLToPath } from 'node:url'
import { createMesh } from '../node/index.ts'
import type { Mesh, MeshStats } from '../node/index.ts'
import { spawnPeer, spawnPeers, stopAll, waitFor, waitForFullMesh } from '../node/local-cluster.ts'
import type { PeerProcess } from '../node/local-cluster.ts'
import { runMapReduce, wordCountLocal } from '../examples/mapreduce.ts'
import type { MapReduceOptions, MapReduceResult, WordCount } from '../examples/mapreduce.ts'

const MODULE = fileURLToPath(new URL('../examples/mapreduce.ts', import.meta.url))
/** peers start in ~2 s on an idle machine; a machine shared with other work can take far longer */
const SPAWN_TIMEOUT_MS = 120_000
/** results over 1 KiB (every partition) are stored on the peer that made them: see ChaosOptions.inlineBytes */
export const DEFAULT_INLINE_BYTES = 1024

export interface ChaosOptions {
  peers: number
  kills: number
  everyMs: number
  job: Pick<MapReduceOptions, 'maps' | 'reduces' | 'shardBytes' | 'seed' | 'retries'>
  /**
   * Results larger than this many bytes stay on the peer that computed them (`refmesh peer
   * --inline-threshold`). Default 1024: a partition of these corpora is a few KiB, under the
   * mesh's 64 KiB default, so it would travel inline to the driver and a kill would lose none;
   * at 1 KiB partitions are stored on their mappers, a kill loses some, and lineage has to
   * make them again (what this run is for).
   */
  inlineBytes?: number
  /** more `refmesh peer` options for every peer */
  peerArgs?: string[]
  /**
   * Kill on the clock, whatever the replacements' start-up takes: replacements start in
   * the background, and a kill waits only while no more than this many peers are alive.
   * Without it each kill waits for the previous victim's replacement to join (on a loaded
   * machine that takes tens of seconds, so kills come that much further apart).
   */
  keepAlive?: number
  /**
   * The first kill comes once this many maps are done instead of after `everyMs`: a job
   * that got faster than the clock would otherwise finish before any kill (the short run
   * took 1.9 s against a first kill at 2 s), and a kill in the map phase is the one that
   * makes lineage work.
   */
  firstKillAfterMaps?: number
  /** progress lines */
  log?: (line: string) => void
}

export interface ChaosResult {
  result: MapReduceResult
  expected: WordCount
  kills: Array<{ atMs: number, peer: string }>
  /** stores of the peers alive at the end (and the caller), once they emptied */
  stores: Array<{ peer: string, objects: number, bytes: number }>
  /** calls lineage ran again because every copy of a result was lost (the driver owns every result) */
  reconstructions: number
}

export async function runChaos (options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? (() => {})
  const peers: PeerProcess[] = []
  const dead: PeerProcess[] = []
  let caller: Mesh | undefined
  let stopChaos = false
  let chaos: Promise<void> = Promise.resolve()
  /** replacements starting in the background (keepAlive) */
  const joining: Array<Promise<void>> = []
  const peerArgs = ['--inline-threshold', String(options.inlineBytes ?? DEFAULT_INLINE_BYTES), ...options.peerArgs ?? []]
  try {
    peers.push(...await spawnPeers(options.peers, { module: MODULE, timeoutMs: SPAWN_TIMEOUT_MS, args: peerArgs }))
    caller = await createMesh({ bootstrap: [peers[0].addrs[0]] })
    await waitForFullMesh(caller, peers, SPAWN_TIMEOUT_MS)
    const mesh = caller
    const started = performance.now()
    const kills: ChaosResult['kills'] = []
    let wake: () => void = () => {}
    let mapsReached: () => void = () => {}
    const firstKill = options.firstKillAfterMaps === undefined ? undefined : new Promise<void>(resolve => { mapsReached = resolve })
    let joined: () => void = () => {}
    const bootstrap = mesh.libp2p.getMultiaddrs().map(String).filter(a => a.includes('/tcp/') && !a.includes('/ws'))
    const replace = async (): Promise<void> => {
      // In the background the first peer may be dead by the time this one starts: join through the driver.
      // Else through a peer and the driver: on a loaded machine a join through one of them alone
      // sometimes fails (the handshake ends early), and a replacement that fails is started again.
      let fresh: PeerProcess | undefined
      for (let attempt = 1; fresh === undefined; attempt++) {
        try {
          fresh = await spawnPeer({ module: MODULE, bootstrap: options.keepAlive === undefined ? [peers[0].addrs[0], ...bootstrap] : bootstrap, timeoutMs: SPAWN_TIMEOUT_MS, args: peerArgs })
        } catch (err) {
          if (attempt >= 3 || stopChaos) throw err
          log(`a replacement did not start (attempt ${attempt}): ${(err as Error).message.split('\n').slice(0, 2).join(' ')}`)
        }
      }
      peers.push(fresh)
      log(`${Math.round(performance.now() - started)} ms: ${fresh.peer.slice(-6)} joined`)
      joined()
    }
    chaos = (async () => {
      for (let k = 0; k < options.kills && !stopChaos; k++) {
        if (k === 0 && firstKill !== undefined) await new Promise<void>(resolve => { wake = resolve; void firstKill.then(resolve) })
        else await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, options.everyMs) })
        while (options.keepAlive !== undefined && peers.length <= options.keepAlive && !stopChaos) await new Promise<void>(resolve => { wake = resolve; joined = resolve })
        if (stopChaos) return
        const victim = peers[Math.floor(Math.random() * peers.length)]
        peers.splice(peers.indexOf(victim), 1)
        dead.push(victim)
        await victim.kill('SIGKILL')
        kills.push({ atMs: Math.round(performance.now() - started), peer: victim.peer })
        log(`${kills[kills.length - 1].atMs} ms: killed ${victim.peer.slice(-6)}`)
        if (options.keepAlive === undefined) await replace()
        else joining.push(replace().catch((err: Error) => { log(`a replacement did not start: ${err.message}`) }))
      }
    })()
    let result: MapReduceResult
    try {
      result = await runMapReduce(mesh, {
        ...options.job,
        timeoutMs: 120_000,
        onProgress: (stage, done) => { if (stage === 'map' && done >= (options.firstKillAfterMaps ?? Infinity)) mapsReached() }
      })
    } finally {
      stopChaos = true
      wake()
      await chaos
      await Promise.all(joining)
    }
    const reconstructions = mesh.stats().calls.reconstructions
    log(`MapReduce done in ${Math.round(result.elapsedMs)} ms after ${kills.length} kill(s); lineage ran ${reconstructions} call(s) again`)
    const expected = wordCountLocal(options.job)
    // Everything this run made is released by runMapReduce; owners free, borrowers let go.
    const stats = async (): Promise<MeshStats[]> => [mesh.stats(), ...await Promise.all(peers.map(async p => await mesh.peerStats(p.peer, { timeoutMs: 10_000 })))]
    const final = await waitFor('every surviving store to be empty', async () => {
      const all = await stats()
      return all.every(s => s.store.objects === 0 && s.store.bytes === 0) ? all : undefined
    }, 30_000, 200).catch(async (err: Error) => {
      const all = await stats()
      throw new Error(`${err.message}: ${all.map(s => `${s.peer.slice(-6)} ${s.store.objects} objects${s.store.objects > 0 ? ` (${s.store.keys.join(' ')})` : ''}`).join(', ')}`)
    })
    return { result, expected, kills, reconstructions, stores: final.map(s => ({ peer: s.peer, objects: s.store.objects, bytes: s.store.bytes })) }
  } finally {
    stopChaos = true
    await chaos.catch(() => {})
    await Promise.all(joining)
    await caller?.stop()
    await stopAll([...peers, ...dead])
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const kills = Number(process.env.CHAOS_KILLS ?? 8)
  // Partitions (a few KiB) are stored on their mappers (1 KiB threshold), so kills lose some and
  // lineage rebuilds them; CHAOS_INLINE_BYTES=65536 (the mesh's default) sends them inline to the driver.
  const inline = process.env.CHAOS_INLINE_BYTES
  const out = await runChaos({
    peers: 6,
    kills,
    everyMs: 2_000,
    // A peer here lives about 12 s (six peers, one killed every 2 s): a call may see several
    // executors die under it, so maps and reduces run again up to 10 times (CHAOS_RETRIES),
    // as a Ray user raises max_retries on a cluster that churns.
    job: { maps: Number(process.env.CHAOS_MAPS ?? 96), reduces: 8, shardBytes: 1024 * 1024, seed: 11, retries: Number(process.env.CHAOS_RETRIES ?? 10) },
    inlineBytes: inline === undefined ? undefined : Number(inline),
    // Kills come on the clock, every 2 s whatever a replacement's start-up takes, as long as
    // 3 peers are up (CHAOS_KEEP_ALIVE); CHAOS_KEEP_ALIVE=wait waits for each replacement to join
    // before the next kill, so fewer kills land within the job.
    keepAlive: process.env.CHAOS_KEEP_ALIVE === 'wait' ? undefined : Number(process.env.CHAOS_KEEP_ALIVE ?? 3),
    log: line => { console.log(line) }
  })
  const same = out.result.digest === out.expected.digest && out.result.totalWords === out.expected.totalWords
  console.log(`inline threshold ${inline ?? DEFAULT_INLINE_BYTES} B; ${Math.round(out.result.elapsedMs)} ms (maps done at ${Math.round(out.result.mapMs)} ms)`)
  console.log(`kills: ${out.kills.length}; calls run again by lineage: ${out.reconstructions}; words ${out.result.totalWords}; digest ${out.result.digest} (fault-free ${out.expected.digest}): ${same ? 'equal' : 'DIFFERENT'}`)
  console.log(`surviving stores: ${out.stores.map(s => `${s.peer.slice(-6)} ${s.objects}`).join(', ')}`)
  process.exit(same ? 0 : 1)
}
