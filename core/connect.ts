/**
 * Streams to a peer, around a connection stuck half-closed. When a graceful close
 * of a connection times out (a stream the other end keeps open, as a WebRTC data
 * channel may), libp2p 3.3 leaves it listed as open with its muxer "closing" for
 * good: every dial of that peer returns it, and every new stream on it fails. A
 * stream that fails so waits for that connection to close (as one does when its peer
 * died) for longer than a close takes, aborts it if it did not, and dials the peer
 * once more. The dial comes after the connection's close, so the redial that tells
 * whether a peer died (peers.ts) is under way first and is not joined to this one.
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
    if ((err as Error).name !== 'ConnectionClosedError' || conn.status !== 'open') throw err
    await closedOrTimeout(conn, options.signal)
    if (options.signal?.aborted === true) throw err
    if (conn.status === 'open') {
      log('connection %s to %p (%a) refuses streams while listed as open: aborting it and dialling again', conn.id, peer, conn.remoteAddr)
      conn.abort(err as Error)
    }
    const again = await libp2p.dial(peer, { signal: options.signal })
    accept?.(again)
    return await again.newStream(protocols, streamOptions)
  }
}

/** longer than libp2p's own close timeout (1 s): a close under way ends within it */
const CLOSING_MS = 1_500

/** Resolves when `conn` closes, `signal` aborts, or CLOSING_MS pass. */
async function closedOrTimeout (conn: Connection, signal?: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      conn.removeEventListener('close', done)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, CLOSING_MS)
    conn.addEventListener('close', done)
    signal?.addEventListener('abort', done)
  })
}
