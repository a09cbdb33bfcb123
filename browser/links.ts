/**
 * The links of a tab: its open connections, which transport each runs on,
 * whether it is direct or through a relay, and how many refmesh streams
 * (control, chunks) each has carried. Tests assert on it that objects move tab
 * to tab over WebRTC and not through the relay; the mesh page draws it.
 */
import type { Connection, Libp2p, Stream, StreamHandler } from '@libp2p/interface'
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
  /** when the connection opened (ms since the epoch) */
  opened: number
  /** protocol streams opened on this connection since it opened, either way, by protocol */
  streams: Record<string, number>
  /** bytes those streams carried since the connection opened, by protocol */
  bytes: Record<string, LinkBytes>
}

export interface LinkBytes {
  sent: number
  received: number
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
 * Counts refmesh streams, and the bytes each carried, per connection: inbound
 * streams by wrapping this libp2p node's `handle`, outbound ones by wrapping
 * `newStream` of every connection as it opens. Outbound is counted at the
 * connection, not at `libp2p.dialProtocol`, because a pull opens its chunk
 * streams with `conn.newStream` on a connection it chose (only unlimited ones):
 * counting at `dialProtocol` saw none of them. Not libp2p's stream middleware
 * (`libp2p.use`): in libp2p 3.3.11 every inbound stream appends the protocol
 * handler to the registered middleware array, so the Nth stream runs the
 * handler N times, and outbound streams run it too.
 *
 * The counts are cumulative over the connection's life (a chunk stream closes
 * as soon as its pull is done, so counting the streams open at the moment of
 * reading proves nothing), and dropped when the connection closes.
 */
export class LinkLog {
  private readonly libp2p: Libp2p
  private readonly protocols: Set<string>
  private readonly counts = new Map<string, { streams: Record<string, number>, bytes: Record<string, LinkBytes> }>()
  private restore: (() => void) | undefined

  constructor (libp2p: Libp2p, protocols: string[]) {
    this.libp2p = libp2p
    this.protocols = new Set(protocols)
  }

  /** Call before the protocols are handled. */
  start (): void {
    if (this.restore !== undefined) return
    const libp2p = this.libp2p
    const { handle } = libp2p
    libp2p.handle = async (protocols, handler, options) => {
      const tracked: StreamHandler = (stream, connection) => {
        this.track(stream, connection)
        return handler(stream, connection)
      }
      await handle.call(libp2p, protocols, tracked, options)
    }
    // libp2p dispatches connection:open as it creates the connection, before anyone can open a stream on it.
    for (const conn of libp2p.getConnections()) this.wrap(conn)
    libp2p.addEventListener('connection:open', this.onOpen)
    libp2p.addEventListener('connection:close', this.onClose)
    this.restore = () => {
      libp2p.handle = handle
      libp2p.removeEventListener('connection:open', this.onOpen)
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
    return conns.map(c => {
      const counted = this.counts.get(c.id)
      return {
        peer: c.remotePeer.toString(),
        id: c.id,
        transport: transportOf(c.remoteAddr),
        direct: c.direct,
        limited: c.limits !== undefined && c.limits !== null,
        direction: c.direction,
        remoteAddr: c.remoteAddr.toString(),
        opened: c.timeline.open,
        streams: { ...counted?.streams },
        bytes: Object.fromEntries(Object.entries(counted?.bytes ?? {}).map(([k, v]) => [k, { ...v }]))
      }
    })
  }

  private wrap (conn: Connection): void {
    const newStream = conn.newStream
    conn.newStream = async (protocols, options) => {
      const stream = await newStream.call(conn, protocols, options)
      this.track(stream, conn)
      return stream
    }
  }

  /** Counts `stream` on `connection` if it is one of ours, and the bytes it sends and reads from then on. */
  private track (stream: Stream, connection: Connection): void {
    const protocol = stream.protocol
    // After stop() the connections stay wrapped (libp2p stops next), but nothing is counted.
    if (this.restore === undefined || !this.protocols.has(protocol)) return
    let entry = this.counts.get(connection.id)
    if (entry === undefined) this.counts.set(connection.id, entry = { streams: {}, bytes: {} })
    entry.streams[protocol] = (entry.streams[protocol] ?? 0) + 1
    const bytes = entry.bytes[protocol] ??= { sent: 0, received: 0 }
    // Counted where refmesh hands bytes to the stream and takes them from it, not by
    // listening for its 'message' events: a listener added before the reader's would
    // take the data the stream buffers for its reader.
    const send = stream.send
    stream.send = (data) => {
      bytes.sent += data.byteLength
      return send.call(stream, data)
    }
    const iterate = stream[Symbol.asyncIterator]
    stream[Symbol.asyncIterator] = () => {
      const it = iterate.call(stream)
      // Only next() is counted; return() and throw() go straight through, so a reader that stops early ends the stream's own iterator.
      return {
        async next () {
          const r = await it.next()
          if (r.done !== true) bytes.received += r.value.byteLength
          return r
        },
        return: it.return?.bind(it),
        throw: it.throw?.bind(it)
      }
    }
  }

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    this.wrap(evt.detail)
  }

  private readonly onClose = (evt: CustomEvent<Connection>): void => {
    this.counts.delete(evt.detail.id)
  }
}
