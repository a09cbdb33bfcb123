/**
 * The flags with which `refmesh peer` and `refmesh demo` serve other machines:
 * where the page listens, the addresses others dial, the certificate for https
 * and wss, and the STUN/TURN servers handed to tabs. Kept apart from the rest
 * of the command line: each command spreads SERVE_FLAGS into its parseArgs
 * options and reads them back with parseServeFlags.
 */
import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { createSecureContext } from 'node:tls'
import type { ParseArgsOptionsConfig } from 'node:util'
import type { TlsFiles } from './index.ts'
import type { IceServer } from './page-server.ts'

export const SERVE_FLAGS = {
  'page-host': { type: 'string' },
  announce: { type: 'string', multiple: true },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  stun: { type: 'string', multiple: true },
  turn: { type: 'string', multiple: true },
  'turn-username': { type: 'string' },
  'turn-credential': { type: 'string' }
} as const satisfies ParseArgsOptionsConfig

export const SERVE_USAGE = `
             --page-host <addr>       where the mesh page listens (default --metrics-host, or 127.0.0.1;
                                      0.0.0.0: every interface). From another machine the page must be https
             --announce <addr>        what others dial: a multiaddr (repeatable, e.g. /dns4/mesh.example.org/tcp/4001)
                                      or a public IP or DNS name that replaces the host of every listen address
             --tls-cert <file>        a PEM certificate (chain) and its key: the page is served over https and
             --tls-key <file>         WebSockets listen addresses serve wss (/ws becomes /tls/ws)
             --stun <url>             a STUN server for WebRTC between tabs, e.g. stun:stun.example.org:3478 (repeatable)
             --turn <url>             a TURN server, e.g. turn:turn.example.org:3478 (repeatable), with
             --turn-username <name>   its user name and
             --turn-credential <pw>   its password`

export interface ServeOptions {
  pageHost?: string
  /** multiaddrs to announce verbatim */
  announce: string[]
  /** a host to announce every listen address at */
  announceHost?: string
  tls?: { certFile: string, keyFile: string }
  iceServers: IceServer[]
}

/** Thrown for a bad flag; each command maps it to its own usage error. */
export class ServeFlagError extends Error {
  override name = 'ServeFlagError'
}

export function parseServeFlags (v: Record<string, unknown>): ServeOptions {
  const announced = v.announce as string[] | undefined ?? []
  const hosts = announced.filter(a => !a.startsWith('/'))
  if (hosts.length > 1 || (hosts.length === 1 && announced.length > 1)) {
    throw new ServeFlagError('--announce takes either multiaddrs (repeatable) or one host name or IP address, not both')
  }
  for (const host of hosts) {
    if (!/^[a-zA-Z0-9.:-]+$/.test(host)) throw new ServeFlagError(`--announce "${host}" is neither a multiaddr (/ip4/203.0.113.5/tcp/4001) nor a host name or IP address`)
  }
  const cert = v['tls-cert'] as string | undefined
  const key = v['tls-key'] as string | undefined
  if ((cert === undefined) !== (key === undefined)) throw new ServeFlagError('--tls-cert and --tls-key go together: the certificate and its private key')
  const iceServers: IceServer[] = []
  for (const url of v.stun as string[] | undefined ?? []) {
    if (!/^stuns?:/.test(url)) throw new ServeFlagError(`--stun "${url}" must be a stun: URL, e.g. stun:stun.example.org:3478`)
    iceServers.push({ urls: url })
  }
  const turn = v.turn as string[] | undefined ?? []
  for (const url of turn) {
    if (!/^turns?:/.test(url)) throw new ServeFlagError(`--turn "${url}" must be a turn: URL, e.g. turn:turn.example.org:3478`)
  }
  const username = v['turn-username'] as string | undefined
  const credential = v['turn-credential'] as string | undefined
  if (turn.length > 0 && (username === undefined || credential === undefined)) throw new ServeFlagError('--turn needs --turn-username and --turn-credential (browsers refuse a TURN server without them)')
  if (turn.length > 0) iceServers.push({ urls: turn, username, credential })
  return {
    pageHost: v['page-host'] as string | undefined,
    announce: hosts.length === 0 ? announced : [],
    announceHost: hosts[0],
    tls: cert !== undefined && key !== undefined ? { certFile: cert, keyFile: key } : undefined,
    iceServers
  }
}

/** Reads the certificate and key named by --tls-cert and --tls-key, with a message that names the file that failed. */
export async function loadTls (tls: ServeOptions['tls']): Promise<TlsFiles | undefined> {
  if (tls === undefined) return undefined
  const read = async (file: string, what: string): Promise<Buffer> => await readFile(file).catch((err: Error) => {
    throw new Error(`cannot read the TLS ${what} ${file}: ${err.message}`)
  })
  const [cert, key] = await Promise.all([read(tls.certFile, 'certificate'), read(tls.keyFile, 'key')])
  // Here, with the files named, rather than as a listen failure of libp2p's with a stack trace.
  try {
    createSecureContext({ cert, key })
  } catch (err) {
    throw new Error(`cannot use the TLS certificate ${tls.certFile} with the key ${tls.keyFile}: ${(err as Error).message.replace(/^error:[0-9A-F]+:[^:]*::/, '')}`)
  }
  return { cert, key }
}

/**
 * The host a page URL should name: where it listens when that is loopback (a
 * proxy in front, or this machine only); else an announced host, else where it
 * listens, or for every interface one of this machine's addresses.
 */
export function publicHostOf (serve: ServeOptions): string | undefined {
  const listen = serve.pageHost
  if (listen === undefined || listen === 'localhost' || listen === '::1' || listen.startsWith('127.')) return undefined
  if (serve.announceHost !== undefined) return serve.announceHost
  for (const addr of serve.announce) {
    const m = /^\/(?:ip4|ip6|dns|dns4|dns6)\/([^/]+)/.exec(addr)
    if (m !== null) return m[1]
  }
  if (listen !== '0.0.0.0' && listen !== '::') return listen
  // Every interface: name one another machine can use, not 0.0.0.0.
  return Object.values(networkInterfaces()).flat().find(i => i !== undefined && !i.internal && i.family === 'IPv4')?.address
}

/** A line for a page served over plain http to other machines, whose tabs then cannot join; undefined otherwise. */
export function insecurePageNote (url: string): string | undefined {
  if (!url.startsWith('http://') || /^http:\/\/(127\.|localhost[:/]|\[::1\])/.test(url)) return undefined
  return '  over http, a tab on another machine is no secure context and cannot join: give --tls-cert and --tls-key, or put an https server in front (see README)'
}
