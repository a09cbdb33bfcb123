/**
 * `window.refmesh` on the mesh page: join and leave, the tab's mesh, the
 * MapReduce run, and the few helpers tests and benchmarks drive the tab with
 * (through Playwright's page.evaluate, which can pass only plain data, hence
 * the named Refs).
 */
import { createBrowserMesh } from './mesh.ts'
import type { BrowserMesh, BrowserMeshOptions, LinkInfo } from './mesh.ts'
import { checksum, pattern, registerBenchFunctions } from './bench-functions.ts'
import { webrtcInitStats } from './webrtc-init.ts'
import { runPageMapReduce } from './page-mapreduce.ts'
import type { PageRunOptions, PageRunResult } from './page-mapreduce.ts'
import registerMapReduce from '../examples/mapreduce.ts'
import { Ref, shared } from '../core/ref.ts'
import { multiaddr } from '@multiformats/multiaddr'

/** What the page's server tells a tab to join through (node/page-server.ts's MeshJson). */
export interface MeshInfo {
  bootstrap: string[]
  /** the mesh is private: joining takes its secret (`join({ secret })`) */
  private: boolean
  /** STUN/TURN servers for WebRTC between tabs, set by the serving peer's --stun and --turn */
  iceServers?: RTCIceServer[]
}

export interface PageApi {
  /** the tab's mesh while joined */
  readonly mesh: BrowserMesh | undefined
  /** What the page's server says about its mesh (`/mesh.json`). */
  info: () => Promise<MeshInfo>
  /** Joins the mesh the page was served from and offers the MapReduce functions; returns this tab's peer id. */
  join: (options?: BrowserMeshOptions) => Promise<string>
  leave: () => Promise<void>
  /** Runs the MapReduce word count from this tab (which takes part), and checks it; one run at a time. */
  runMapReduce: (options?: Omit<PageRunOptions, 'signal'>) => Promise<PageRunResult>
  /** Stops the run under way, if any. */
  stopMapReduce: () => void
  /** the run under way, or the last one */
  readonly mapReduce: MapReduceRun | undefined
  /** Refs kept between page.evaluate calls, by name */
  readonly refs: Map<string, Ref>
  pattern: typeof pattern
  checksum: typeof checksum
  sha256hex: (bytes: Uint8Array) => Promise<string>
  /** the tab's open connections with their transports */
  links: (peer?: string) => LinkInfo[]
  /** Resolves once every one of `peers` is alive in this tab's view and directly connected. */
  waitForPeers: (peers: string[], options?: { timeoutMs?: number }) => Promise<void>
  /** how often the WebRTC init race was met and survived in this page */
  readonly webrtcInit: typeof webrtcInitStats
  Ref: typeof Ref
  shared: typeof shared
  multiaddr: typeof multiaddr
}

export interface MapReduceRun {
  /** checking: the mesh has answered, and a worker of this tab counts the words to compare */
  state: 'running' | 'checking' | 'done' | 'failed'
  /** done and total of each stage so far */
  progress: { map?: [number, number], reduce?: [number, number] }
  result?: PageRunResult
  error?: string
}

export function createPageApi (): PageApi {
  let mesh: BrowserMesh | undefined
  const refs = new Map<string, Ref>()
  let run: MapReduceRun | undefined
  let stopRun: AbortController | undefined
  const joined = (): BrowserMesh => {
    if (mesh === undefined) throw new Error('this tab has not joined the mesh')
    return mesh
  }
  const info = async (): Promise<MeshInfo> => {
    const res = await fetch('/mesh.json', { cache: 'no-store' })
    if (!res.ok) throw new Error(`GET /mesh.json: ${res.status} ${res.statusText}`)
    return await res.json() as MeshInfo
  }
  return {
    get mesh () { return mesh },
    info,
    async join (options = {}) {
      if (mesh !== undefined) return mesh.peerId
      const { bootstrap, private: isPrivate, iceServers } = await info()
      if (isPrivate && (options.secret === undefined || options.secret.length === 0)) throw new Error('this mesh is private: joining takes its secret')
      // The page is served by a peer of a local mesh: its addresses are loopback or private.
      const rtc = iceServers === undefined ? {} : { rtcConfiguration: { iceServers } }
      const joinedMesh = await createBrowserMesh({ bootstrap, allowPrivateAddresses: true, ...rtc, ...options }).catch((err: Error) => {
        throw isPrivate && /mesh secret/.test(err.message) ? new Error(`the mesh's peers did not accept this secret (or this tab theirs): ${err.message}`, { cause: err }) : err
      })
      try {
        await registerBenchFunctions(joinedMesh)
        registerMapReduce(joinedMesh)
      } catch (err) {
        await joinedMesh.stop()
        throw err
      }
      mesh = joinedMesh
      return mesh.peerId
    },
    async leave () {
      const leaving = mesh
      mesh = undefined
      stopRun?.abort(new Error('this tab left the mesh'))
      for (const ref of refs.values()) ref.release()
      refs.clear()
      await leaving?.stop()
    },
    async runMapReduce (options = {}) {
      const m = joined()
      if (run?.state === 'running' || run?.state === 'checking') throw new Error('a MapReduce run is under way in this tab')
      const current: MapReduceRun = { state: 'running', progress: {} }
      const stop = new AbortController()
      run = current
      stopRun = stop
      try {
        current.result = await runPageMapReduce(m, {
          ...options,
          signal: stop.signal,
          onProgress: (stage, done, total) => {
            current.progress[stage] = [done, total]
            if (stage === 'reduce' && done === total) current.state = 'checking'
            options.onProgress?.(stage, done, total)
          }
        })
        current.state = 'done'
        return current.result
      } catch (err) {
        current.state = 'failed'
        current.error = (err as Error).message
        throw err
      } finally {
        if (stopRun === stop) stopRun = undefined
      }
    },
    stopMapReduce () {
      stopRun?.abort(new Error('stopped'))
    },
    get mapReduce () { return run },
    refs,
    pattern,
    checksum,
    async sha256hex (bytes) {
      const view = bytes.buffer instanceof ArrayBuffer ? bytes : bytes.slice()
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', view as Uint8Array<ArrayBuffer>))
      return Array.from(digest, b => b.toString(16).padStart(2, '0')).join('')
    },
    links: (peer) => joined().links(peer),
    async waitForPeers (peers, options = {}) {
      const m = joined()
      const signal = AbortSignal.timeout(options.timeoutMs ?? 30_000)
      await Promise.all(peers.filter(p => p !== m.peerId).map(async p => {
        await m.waitForPeer(p, { signal })
        await m.dialer.connect(p, { signal })
      }))
    },
    webrtcInit: webrtcInitStats,
    Ref,
    shared,
    multiaddr
  }
}
