/**
 * Serves the mesh page (dist/page) to browsers, with the headers that make
 * it crossOriginIsolated (SharedArrayBuffer, OPFS in workers), and tells each
 * tab which Node peer addresses to join through and which STUN/TURN servers
 * to use (`/mesh.json`). Over https when given a certificate: a page from any
 * host but this one's loopback is a secure context only then.
 */
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { readFile, stat } from 'node:fs/promises'
import { extname, join, normalize, sep } from 'node:path'
import { logger } from '@libp2p/logger'
import { browserDialable } from '../browser/dialer.ts'

const log = logger('refmesh:page-server')

import { PAGE_DIR } from './package-paths.ts'

export { PAGE_DIR }

export const PAGE_SERVER_DEFAULTS = {
  /** loopback: a page on another machine would need the Node peer reachable there too */
  host: '127.0.0.1',
  port: 0
} as const

const HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  // The page is rebuilt in place; a stale bundle would talk to the wrong code.
  'Cache-Control': 'no-store'
} as const

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.wasm': 'application/wasm',
  '.map': 'application/json'
}

export interface PageServerInit {
  /** the Node peer's multiaddrs; those a browser can dial are handed to tabs */
  addrs: () => string[]
  /** the built page (default dist/page) */
  root?: string
  host?: string
  port?: number
  /** the mesh is private: the page asks for the secret before a tab joins (the server never knows it) */
  private?: boolean
  /** serve https with this certificate (chain) and key, PEM */
  tls?: { cert: string | Buffer, key: string | Buffer }
  /** the host name or IP address the URL names (default the one listened on); for a server on 0.0.0.0 or behind port forwarding */
  publicHost?: string
  /** STUN/TURN servers for WebRTC between tabs, handed to each tab in /mesh.json */
  iceServers?: IceServer[]
}

/** RTCIceServer, without the DOM types */
export interface IceServer {
  urls: string | string[]
  username?: string
  credential?: string
}

/** What `/mesh.json` tells a tab (browser/page-api.ts reads it). */
export interface MeshJson {
  bootstrap: string[]
  private: boolean
  iceServers?: IceServer[]
}

export interface PageServer {
  url: string
  close: () => Promise<void>
}

export async function startPageServer (init: PageServerInit): Promise<PageServer> {
  const root = init.root ?? PAGE_DIR
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res, root, init).catch((err: Error) => {
      log.error('%s %s failed: %e', req.method, req.url, err)
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error\n')
      else res.destroy()
    })
  }
  const server: Server = init.tls === undefined ? createServer(onRequest) : createHttpsServer({ cert: init.tls.cert, key: init.tls.key }, onRequest)
  // A browser that does not trust the certificate hangs up during the handshake: not this server's fault.
  server.on('tlsClientError', (err: Error) => { log('TLS handshake failed: %s', err.message) })
  const listenHost = init.host ?? PAGE_SERVER_DEFAULTS.host
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port ?? PAGE_SERVER_DEFAULTS.port, listenHost, () => { server.off('error', reject); resolve() })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the page server has no TCP address')
  const host = init.publicHost ?? address.address
  const url = `${init.tls === undefined ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`
  return {
    url,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => { server.close(() => { resolve() }) })
    }
  }
}

async function handle (req: IncomingMessage, res: ServerResponse, root: string, init: PageServerInit): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n')
    return
  }
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
  if (path === '/mesh.json') {
    // A tab on another machine would dial its own loopback.
    const remote = !isLoopbackHost(req.headers.host ?? '')
    const bootstrap = browserDialable(init.addrs(), { secureOrigin: init.tls !== undefined }).filter(ma => !remote || !isLoopbackAddr(ma.toString())).map(String)
    const info: MeshJson = { bootstrap, private: init.private === true, ...init.iceServers === undefined || init.iceServers.length === 0 ? {} : { iceServers: init.iceServers } }
    send(res, 200, TYPES['.json'], JSON.stringify(info))
    return
  }
  if (path === '/favicon.ico') {
    res.writeHead(204, HEADERS).end()
    return
  }
  const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path))
  if (!file.startsWith(root.endsWith(sep) ? root : root + sep)) {
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n')
    return
  }
  const info = await stat(file).catch(() => undefined)
  if (info === undefined || !info.isFile()) {
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n')
    return
  }
  send(res, 200, TYPES[extname(file)] ?? 'application/octet-stream', await readFile(file), req.method === 'HEAD')
}

function send (res: ServerResponse, status: number, type: string, body: string | Buffer, headOnly = false): void {
  res.writeHead(status, { ...HEADERS, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) })
  res.end(headOnly ? undefined : body)
}

/** `localhost:8080`, `127.0.0.1`, `[::1]:80`: a Host header naming this machine's loopback */
function isLoopbackHost (host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')
  return name === 'localhost' || name === '::1' || name.startsWith('127.')
}

function isLoopbackAddr (addr: string): boolean {
  return /^\/ip4\/127\./.test(addr) || addr.startsWith('/ip6/::1/') || /^\/dns[46]?\/localhost\//.test(addr)
}
