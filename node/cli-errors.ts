/**
 * What the refmesh command says when something a volunteer typed or runs into
 * goes wrong: one line that names the input and what to do about it, never
 * libp2p's internals or a stack trace (those with DEBUG set).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { networkInterfaces } from 'node:os'

/** A bad command line: the message names the flag or argument at fault. */
export class UsageError extends Error {
  override name = 'UsageError'
}

const ADDR_EXAMPLE = '/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...'

/**
 * Throws a UsageError when `addr` (the value of `flag`) is not a multiaddr, or
 * its /p2p/ part is not a peer id.
 */
export function checkMultiaddr (flag: string, addr: string): void {
  const at = `${flag} "${addr}"`
  if (!addr.startsWith('/')) throw new UsageError(`${at} is not a multiaddr: they look like ${ADDR_EXAMPLE}`)
  const parts = addr.split('/')
  for (let i = 1; i < parts.length - 1; i++) {
    const [proto, value] = [parts[i], parts[i + 1]]
    if ((proto === 'tcp' || proto === 'udp') && !/^\d{1,5}$/.test(value)) {
      throw new UsageError(`${at}: "${value}" after /${proto}/ is not a port number; write it like ${ADDR_EXAMPLE}`)
    }
  }
  let parsed
  try {
    parsed = multiaddr(addr)
  } catch (err) {
    throw new UsageError(`${at} is not a multiaddr (${oneLine((err as Error).message)}); write it like ${ADDR_EXAMPLE}`)
  }
  for (const component of parsed.getComponents()) {
    if (component.name !== 'p2p' || component.value === undefined) continue
    try {
      peerIdFromString(component.value)
    } catch (err) {
      throw new UsageError(`${at}: "${component.value}" after /p2p/ is not a peer id (${oneLine((err as Error).message)}); copy the whole address the peer printed`)
    }
  }
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/**
 * One line for a failed join through the bootstrap address `addr`, after
 * `waitedMs`; `secret`: whether this side was given a mesh secret.
 */
export function explainJoinFailure (addr: string, err: Error, waitedMs: number, secret: boolean): string {
  const message = err.message ?? ''
  const code = (err as { code?: string }).code
  const at = `--bootstrap ${addr}`
  if (err.name === 'NotAMemberError') {
    if (/no mesh secret/.test(message)) return `${at}: that peer is in a private mesh; give its secret with --mesh-secret or REFMESH_MESH_SECRET`
    if (/wrong answer/.test(message) || !secret) return `${at}: that peer's mesh secret differs from this one's; check --mesh-secret or REFMESH_MESH_SECRET on both`
    if (/within \d+ ms/.test(message)) return `${at}: that peer did not answer the mesh-secret challenge within ${seconds(waitedMs)}; check that it is in this private mesh (the same --mesh-secret)`
    // It refused the challenge (an older peer: could not negotiate it): a public peer.
    return `${at}: that peer's mesh is not private, but this one was given a mesh secret; drop --mesh-secret (or unset REFMESH_MESH_SECRET)`
  }
  if (code === 'ECONNREFUSED') return `${at}: nothing listens there (connection refused); check the port, and that the peer is running`
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `${at}: no route to that host (${code}); check the address, and this machine's network`
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `${at}: the host name does not resolve (${code}); check its spelling`
  if (/does not match expected remote identity/.test(message)) return `${at}: a different peer answers there than its /p2p/ id names (it may have restarted with a new identity); copy its current address`
  if (err.name === 'EncryptionFailedError' || err.name === 'InvalidMessageError' || err.name === 'MuxerUnavailableError' || err.name === 'UnsupportedProtocolError' ||
    /Missing newline|Unexpected EOF|Protocol selection failed|multistream/i.test(message)) {
    return `${at}: something answers there, but not a libp2p peer (an HTTP server or another service?); check the port the peer printed`
  }
  if (err.name === 'TimeoutError' || err.name === 'AbortError' || /aborted|timed out/i.test(message)) {
    return `${at}: no answer within ${seconds(waitedMs)}; the peer is down or unreachable, or a firewall drops the packets: check the address and that its port is open to this machine`
  }
  return `${at}: ${oneLine(message)}`
}

/** This machine's IP addresses, to say which ones --listen can use. */
function localAddresses (): string[] {
  return Object.values(networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address))
}

/** One line per listen address libp2p could not listen on, or undefined when `err` is not such a failure. */
export function explainListenFailure (err: Error): string | undefined {
  if (err.name !== 'UnsupportedListenAddressesError' && err.name !== 'UnsupportedListenAddressError') return undefined
  const lines: string[] = []
  for (const match of err.message.matchAll(/^\s+(\/\S+): (\w+): (.*)$/gm)) {
    const [, addr, kind, detail] = match
    const at = `--listen ${addr}`
    const host = addr.split('/')[2]
    const port = /\/(?:tcp|udp)\/(\d+)/.exec(addr)?.[1]
    if (detail.includes('EADDRNOTAVAIL')) lines.push(`${at}: this machine has no address ${host} (it has ${localAddresses().join(', ')}); listen on one of those, or on 0.0.0.0 for all`)
    else if (detail.includes('EADDRINUSE')) lines.push(`${at}: port ${port} is in use by another process; pick another port (0: any free one), or stop that process`)
    else if (detail.includes('EACCES')) lines.push(`${at}: not allowed to listen on port ${port} (ports below 1024 need root or CAP_NET_BIND_SERVICE); pick a port from 1024`)
    else if (kind === 'UnsupportedListenAddressError') lines.push(`${at}: a refmesh peer cannot listen on that kind of address; it listens on /tcp, /tcp/.../ws and /udp/.../webrtc-direct`)
    else lines.push(`${at}: ${oneLine(detail)}`)
  }
  return lines.length > 0 ? lines.join('\n') : undefined
}

/** An error's message on one line (the first, and any that follow joined to it). */
export function oneLine (message: string): string {
  return message.split('\n').map(s => s.trim()).filter(s => s !== '' && !s.startsWith('at ')).join(' ')
}

/**
 * What the CLI prints for `err`: the message of a usage error, a join or a
 * listen failure, one line each; with DEBUG set, the stack as well.
 */
export function describeError (err: unknown, secret = false): string {
  if (!(err instanceof Error)) return String(err)
  const failures = (err as { failures?: Array<{ addr: string, error: Error }> }).failures
  const waitedMs = (err as { waitedMs?: number }).waitedMs ?? 0
  let text = failures !== undefined
    ? failures.map(f => explainJoinFailure(f.addr, f.error, waitedMs, secret)).join('\n')
    : explainListenFailure(err) ?? oneLine(err.message)
  if (process.env.DEBUG !== undefined && process.env.DEBUG !== '') text += `\n${err.stack ?? ''}`
  return text
}
