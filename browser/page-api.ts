/**
 * `window.refmesh` on the mesh page: join and leave, the tab's mesh, and the
 * few helpers tests and benchmarks drive the tab with (through Playwright's
 * page.evaluate, which can pass only plain data, hence the named Refs).
 */
import { createBrowserMesh } from './mesh.ts'
import type { BrowserMesh, BrowserMeshOptions, LinkInfo } from './mesh.ts'
import { checksum, pattern, registerBenchFunctions } from './bench-functions.ts'
import { webrtcInitStats } from './webrtc-init.ts'
import { Ref, shared } from '../core/ref.ts'
import { multiaddr } from '@multiformats/multiaddr'

/** What the page's server tells a tab to join through (node/page-server.ts). */
export interface MeshInfo {
  bootstrap: string[]
}

export interface PageApi {
  /** the tab's mesh while joined */
  readonly mesh: BrowserMesh | undefined
  /** Joins the mesh the page was served from; returns this tab's peer id. */
  join: (options?: BrowserMeshOptions) => Promise<string>
  leave: () => Promise<void>
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

export function createPageApi (): PageApi {
  let mesh: BrowserMesh | undefined
  const refs = new Map<string, Ref>()
  const joined = (): BrowserMesh => {
    if (mesh === undefined) throw new Error('this tab has not joined the mesh')
    return mesh
  }
  return {
    get mesh () { return mesh },
    async join (options = {}) {
      if (mesh !== undefined) return mesh.peerId
      const res = await fetch('/mesh.json', { cache: 'no-store' })
      if (!res.ok) throw new Error(`GET /mesh.json: ${res.status} ${res.statusText}`)
      const info = await res.json() as MeshInfo
      // The page is served by a peer of a local mesh: its addresses are loopback or private.
      const joinedMesh = await createBrowserMesh({ bootstrap: info.bootstrap, allowPrivateAddresses: true, ...options })
      try {
        await registerBenchFunctions(joinedMesh)
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
      for (const ref of refs.values()) ref.release()
      refs.clear()
      await leaving?.stop()
    },
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
