/**
 * The quick half of failure detection: a peer whose last connection closed is
 * redialled at the addresses it announced. A process that died had its
 * connections closed by its kernel and leaves nothing listening, so the redial
 * is refused within a round trip, and the peer is dead at once. A redial that
 * connects means the peer is alive (the connection dropped for another reason);
 * one that fails any other way (a timeout, an address that cannot be told
 * apart, as a browser's WebSocket errors cannot) proves nothing, and the
 * heartbeat bound decides (core/membership.ts).
 */
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'

const log = logger('refmesh:redial')

export type RedialVerdict = 'reachable' | 'refused' | 'unknown'

export interface RedialInit {
  /** dials `addrs` (all of one peer) */
  dial: (addrs: Multiaddr[], options: { signal: AbortSignal }) => Promise<unknown>
  /** how long a redial may take before it counts as unanswered */
  timeoutMs: number
}

/** Whether a failed dial was refused by the host (nothing listens there), rather than unanswered. */
export function refusedDial (err: unknown): boolean {
  const errors: unknown[] = err instanceof AggregateError ? err.errors : [err]
  return errors.some(e => {
    const { code, message } = (e ?? {}) as { code?: unknown, message?: unknown }
    return code === 'ECONNREFUSED' || (typeof message === 'string' && message.includes('ECONNREFUSED'))
  })
}

/** Redials a peer whose last connection closed, at its direct addresses; what the answer says of it. */
export async function redial (init: RedialInit, peer: string, addrs: string[], signal: AbortSignal): Promise<RedialVerdict> {
  // Relayed and WebRTC addresses go through third parties and answer slowly: only direct ones tell.
  const direct = addrs.filter(a => !a.includes('/p2p-circuit') && !/\/webrtc(-direct)?(\/|$)/.test(a)).flatMap(a => {
    try { return [multiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${peer}`)] } catch { return [] }
  })
  if (direct.length === 0) return 'unknown'
  const bounded = AbortSignal.any([signal, AbortSignal.timeout(init.timeoutMs)])
  try {
    await init.dial(direct, { signal: bounded })
    return 'reachable'
  } catch (err) {
    // Aborted (a timeout, or we are stopping): no answer, no verdict.
    if (bounded.aborted) return 'unknown'
    const refused = refusedDial(err)
    log('redial of %s failed (%s): %s', peer, refused ? 'refused' : 'not refused', (err as Error).message)
    return refused ? 'refused' : 'unknown'
  }
}
