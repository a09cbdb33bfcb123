/**
 * Streams to a peer, around a connection stuck half-closed. When a graceful close
 * of a connection times out (a stream the other end keeps open, as a WebRTC data
 * channel may), libp2p 3.3 leaves it listed as open with its muxer "closing" for
 * good: every dial of that peer returns it, and every new stream on it fails. A
 * stream that fails so aborts that connection and dials the peer once more.
 *
 * Answers no message.
 */
import { logger } from '@libp2p/logger'
import type { AbortOptions, Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'

const log = logger('refmesh:connect')

export interface OpenStreamOptions extends AbortOptions {
  /** checks the connection before a stream is opened on it; throws to refuse it */
  accept?: (conn: Connection) => void
}

/** A stream for one of `protocols` on a connection to `peer` (dialled when there is none). */
export async function openStream (libp2p: Libp2p, peer: PeerId, protocols: string | string[], options: OpenStreamOptions = {}): Promise<Stream> {
  const { accept, ...streamOptions } = options
  const conn = await libp2p.dial(peer, { signal: options.signal })
  accept?.(conn)
  try {
    return await conn.newStream(protocols, streamOptions)
  } catch (err) {
    if (!stuckHalfClosed(conn, err as Error)) throw err
    log('connection %s to %p (%a) refuses streams while listed as open: aborting it and dialling again', conn.id, peer, conn.remoteAddr)
    conn.abort(err as Error)
    const again = await libp2p.dial(peer, { signal: options.signal })
    accept?.(again)
    return await again.newStream(protocols, streamOptions)
  }
}

function stuckHalfClosed (conn: Connection, err: Error): boolean {
  return err.name === 'ConnectionClosedError' && conn.status === 'open'
}
