/**
 * Browser tests and benchmarks: Node peer processes (TCP, WebSockets,
 * WebRTC-direct, a relay), the page served by node/page-server.ts, and tabs of
 * Debian Chromium driven by Playwright, each joined to the mesh as a peer.
 * Everything started is stopped by `close()`, also after a failed start.
 */
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright'
import type { Browser, BrowserContext, Page } from 'playwright'
import { spawnPeer, stopAll } from '../../node/local-cluster.ts'
import type { PeerProcess } from '../../node/local-cluster.ts'
import { startPageServer } from '../../node/page-server.ts'
import type { PageServer } from '../../node/page-server.ts'
import { ensurePageBuilt } from '../../node/page-build.ts'
import type { BrowserMeshOptions } from '../../browser/mesh.ts'
// window.refmesh is typed by browser/page.ts (the page's API, browser/page-api.ts).

export const CHROMIUM = '/usr/bin/chromium'
export const PEER_MODULE = fileURLToPath(new URL('./peer-module.ts', import.meta.url))
/** Node peers listen where browsers can reach them too (TCP stays first). */
export const BROWSER_LISTEN_ARGS = ['--listen', '/ip4/127.0.0.1/tcp/0/ws', '--listen', '/ip4/127.0.0.1/udp/0/webrtc-direct']

export const HARNESS_DEFAULTS = {
  tabs: 2,
  nodes: 1,
  /** joining, and every tab reaching every peer directly */
  meshTimeoutMs: 45_000,
  closeTimeoutMs: 15_000
} as const

export interface Tab {
  page: Page
  peer: string
}

export interface BrowserClusterOptions {
  tabs?: number
  nodes?: number
  /** functions module for the Node peers (default test/browser/peer-module.ts) */
  module?: string
  /** options for each tab's createBrowserMesh (plain data only) */
  tabOptions?: BrowserMeshOptions
  meshTimeoutMs?: number
  /** a private mesh: the Node peers' secret (tabs join with `tabOptions.secret`) */
  secret?: string
  /** `debug` patterns for the tabs' loggers, e.g. 'refmesh:*' (default: $REFMESH_BROWSER_DEBUG) */
  debug?: string
}

export interface BrowserCluster {
  browser: Browser
  context: BrowserContext
  server: PageServer
  peers: PeerProcess[]
  tabs: Tab[]
  /** Opens one more tab and joins it to the mesh. */
  openTab: () => Promise<Tab>
  /** every tab's console and errors so far, for failure messages */
  logs: () => string
  close: () => Promise<void>
}

async function within<T> (what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not done within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

export async function startBrowserCluster (options: BrowserClusterOptions = {}): Promise<BrowserCluster> {
  const meshTimeoutMs = options.meshTimeoutMs ?? HARNESS_DEFAULTS.meshTimeoutMs
  const debug = options.debug ?? process.env.REFMESH_BROWSER_DEBUG
  const lines: string[] = []
  const peers: PeerProcess[] = []
  const env = options.secret === undefined ? undefined : { REFMESH_MESH_SECRET: options.secret }
  let server: PageServer | undefined
  let browser: Browser | undefined
  const close = async (): Promise<void> => {
    const steps: Array<Promise<unknown>> = []
    if (browser !== undefined) steps.push(within('closing chromium', HARNESS_DEFAULTS.closeTimeoutMs, browser.close()))
    steps.push(within('stopping the Node peers', HARNESS_DEFAULTS.closeTimeoutMs, stopAll(peers)).catch(async err => {
      await Promise.all(peers.map(async p => await p.kill('SIGKILL')))
      throw err
    }))
    if (server !== undefined) steps.push(server.close())
    const failed = (await Promise.allSettled(steps)).filter(r => r.status === 'rejected')
    if (failed.length > 0) throw (failed[0] as PromiseRejectedResult).reason
  }
  try {
    const [, first] = await Promise.all([
      ensurePageBuilt(),
      spawnPeer({ module: options.module ?? PEER_MODULE, args: BROWSER_LISTEN_ARGS, env })
    ])
    peers.push(first)
    const more = await Promise.allSettled(Array.from({ length: (options.nodes ?? HARNESS_DEFAULTS.nodes) - 1 }, async () =>
      await spawnPeer({ module: options.module ?? PEER_MODULE, args: BROWSER_LISTEN_ARGS, bootstrap: [first.addrs[0]], env })))
    for (const r of more) if (r.status === 'fulfilled') peers.push(r.value)
    const failed = more.find(r => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
    server = await startPageServer({ addrs: () => first.addrs, private: options.secret !== undefined })
    browser = await chromium.launch({ executablePath: CHROMIUM })
    const context = await browser.newContext()
    if (debug !== undefined && debug !== '') await context.addInitScript(`localStorage.setItem('debug', ${JSON.stringify(debug)})`)
    const url = server.url
    const tabs: Tab[] = []
    const openTab = async (): Promise<Tab> => {
      const index = tabs.length
      const page = await context.newPage()
      page.on('console', msg => { lines.push(`[tab ${index} ${msg.type()}] ${msg.text()}`) })
      page.on('pageerror', err => { lines.push(`[tab ${index} pageerror] ${err.stack ?? err.message}`) })
      await page.goto(url)
      const peer = await within(`tab ${index} joining`, meshTimeoutMs, page.evaluate(async (o) => await window.refmesh.join(o), options.tabOptions ?? {}))
      const tab = { page, peer }
      tabs.push(tab)
      return tab
    }
    for (let i = 0; i < (options.tabs ?? HARNESS_DEFAULTS.tabs); i++) await openTab()
    // Every tab knows every peer and has a direct connection to each.
    const everyone = [...peers.map(p => p.peer), ...tabs.map(t => t.peer)]
    await within('every tab to reach every peer', meshTimeoutMs, Promise.all(tabs.map(async t => {
      await t.page.evaluate(async ({ peers, timeoutMs }) => { await window.refmesh.waitForPeers(peers, { timeoutMs }) }, { peers: everyone, timeoutMs: meshTimeoutMs })
    })))
    return { browser, context, server, peers, tabs, openTab, logs: () => lines.join('\n'), close }
  } catch (err) {
    await close().catch(() => {})
    const detail = lines.length > 0 ? `\n--- tabs ---\n${lines.slice(-200).join('\n')}` : ''
    const stderr = peers.map(p => p.stderr()).filter(s => s !== '').join('\n')
    throw new Error(`${(err as Error).message}${detail}${stderr !== '' ? `\n--- peers ---\n${stderr.slice(-5000)}` : ''}`, { cause: err })
  }
}

/** Runs `body` on the cluster and closes it; a failure prints the tabs' console and the peers' stderr, where a tab's trouble shows. */
export async function withCluster (c: BrowserCluster, body: () => Promise<void>): Promise<void> {
  try {
    await body()
  } catch (err) {
    const peers = c.peers.map(p => `${p.peer}:\n${p.stderr().slice(-5_000)}`).join('\n')
    console.error(`peers: ${c.peers.map(p => p.peer).join(', ')}; tabs: ${c.tabs.map(t => t.peer).join(', ')}\n--- tabs ---\n${c.logs().slice(-10_000)}\n--- peer processes ---\n${peers}`)
    throw err
  } finally {
    await c.close()
  }
}
