/**
 * The links of a tab: its open connections, which transport each runs on,
 * whether it is direct or through a relay, and how many refmesh streams
 * (control, chunks) each has carried. Tests assert on it that objects move tab
 * to tab over WebRTC and not through the relay; the mesh page draws it.
 */
import type { Connection, Libp2p, StreamHandler } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export type LinkTransport = 'webrtc' | 'webrtc-direct' | 'websockets' | 'relay' | 'tcp' | 'other'

export interface LinkInfo {
  peer: string
  /** libp2p's connection id */
  id: string
  transport: LinkTransport
  /** false for a connection through a relay */
  direct: boolean
  /** true when the connection has relay limits (bytes or time); refmesh protocols never run on such a one */
  limited: boolean
  direction: 'inbound' | 'outbound'
  remoteAddr: string
  /** protocol streams opened on this connection since it opened, by protocol */
  streams: Record<string, number>
}

/** The transport a connection runs on, from its remote address. */
export function transportOf (addr: Multiaddr): LinkTransport {
  const names = addr.getComponents().map(c => c.name)
  // A tab's WebRTC address is signalled through a relay (…/p2p-circuit/webrtc) but carries data directly.
  if (names.includes('webrtc')) return 'webrtc'
  if (names.includes('p2p-circuit')) return 'relay'
  if (names.includes('webrtc-direct')) return 'webrtc-direct'
  if (names.includes('ws') || names.includes('wss') || names.includes('tls')) return 'websockets'
  if (names.includes('tcp')) return 'tcp'
  return 'other'
}

/**
 * Counts refmesh streams per connection by wrapping this libp2p node's
 * `handle` (inbound) and `dialProtocol` (outbound). Not libp2p's stream
 * middleware (`libp2p.use`): in libp2p 3.3.11 every inbound stream appends the
 * protocol handler to the registered middleware array, so the Nth stream runs
 * the handler N times, and outbound streams run it too.
 */
export class LinkLog {
  private readonly libp2p: Libp2p
  private readonly protocols: Set<string>
  private readonly counts = new Map<string, Record<string, number>>()
  private restore: (() => void) | undefined

  constructor (libp2p: Libp2p, protocols: string[]) {
    this.libp2p = libp2p
    this.protocols = new Set(protocols)
  }

  /** Call before the protocols are handled. */
  start (): void {
    if (this.restore !== undefined) return
    const libp2p = this.libp2p
    const { handle, dialProtocol } = libp2p
    libp2p.handle = async (protocols, handler, options) => {
      const tracked: StreamHandler = (stream, connection) => {
        if (this.protocols.has(stream.protocol)) this.count(connection.id, stream.protocol)
        return handler(stream, connection)
      }
      await handle.call(libp2p, protocols, tracked, options)
    }
    libp2p.dialProtocol = async (peer, protocols, options) => {
      const stream = await dialProtocol.call(libp2p, peer, protocols, options)
      if (this.protocols.has(stream.protocol)) {
        const connection = libp2p.getConnections().find(c => c.streams.includes(stream))
        if (connection !== undefined) this.count(connection.id, stream.protocol)
      }
      return stream
    }
    libp2p.addEventListener('connection:close', this.onClose)
    this.restore = () => {
      libp2p.handle = handle
      libp2p.dialProtocol = dialProtocol
      libp2p.removeEventListener('connection:close', this.onClose)
    }
  }

  stop (): void {
    this.restore?.()
    this.restore = undefined
    this.counts.clear()
  }

  /** Open connections, to `peer` or to everyone. */
  links (peer?: string): LinkInfo[] {
    const conns = this.libp2p.getConnections().filter(c => c.status === 'open' && (peer === undefined || c.remotePeer.toString() === peer))
    return conns.map(c => ({
      peer: c.remotePeer.toString(),
      id: c.id,
      transport: transportOf(c.remoteAddr),
      direct: c.direct,
      limited: c.limits !== undefined && c.limits !== null,
      direction: c.direction,
      remoteAddr: c.remoteAddr.toString(),
      streams: { ...this.counts.get(c.id) }
    }))
  }

  private count (connection: string, protocol: string): void {
    let byProtocol = this.counts.get(connection)
    if (byProtocol === undefined) this.counts.set(connection, byProtocol = {})
    byProtocol[protocol] = (byProtocol[protocol] ?? 0) + 1
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    this.counts.delete(evt.detail.id)
  }
}
