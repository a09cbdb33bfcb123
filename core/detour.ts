/**
 * Objects around relays. A relayed connection is limited (libp2p's relays carry
 * 128 KiB and 2 minutes per circuit), so chunks never cross one: when every holder
 * of an object is one this peer reaches only through a relay (two peers behind NATs
 * that hole punching could not join), a peer that both reach directly takes a copy
 * first (a prefetch, as broadcast asks) and serves it. Which peers reach which is
 * known from the gossiped `links` of every peer (a peer's open connections and what
 * they run over).
 */
import { ObjectLostError } from './errors.ts'
import type { Membership } from './membership.ts'
import type { RefDesc } from './protocol/messages.ts'

export interface DetourInit {
  self: string
  membership: Membership
  /** this peer has an open, unlimited connection to `peer` */
  reachesDirectly: (peer: string) => boolean
  /** asks `peer` to take a copy of `object` (resolves once it holds it) */
  prefetch: (peer: string, object: RefDesc, signal?: AbortSignal) => Promise<void>
  /**
   * the failure detector's word on a holder (Membership.verdict, bounded by the redial):
   * 'dead' once it is declared dead, 'alive' once heard from or when no verdict came in time
   */
  verdict: (peer: string, signal?: AbortSignal) => Promise<'dead' | 'alive'>
}

/** Peers this one reaches directly that report a direct link to one of `holders`, the least loaded first. */
export function detourPeers (init: DetourInit, holders: string[]): string[] {
  const wanted = new Set(holders)
  return init.membership.all()
    .filter(p => p.peer !== init.self && !wanted.has(p.peer) && p.liveness === 'alive' && init.reachesDirectly(p.peer))
    .filter(p => p.state?.links.some(l => wanted.has(l.peer) && l.transport !== 'relay') === true)
    .sort((a, b) => ((a.state?.queued ?? 0) + (a.state?.running ?? 0)) - ((b.state?.queued ?? 0) + (b.state?.running ?? 0)))
    .map(p => p.peer)
}

/** Has a peer between this one and `holders` take a copy of the object; resolves with that peer, as a source. */
export async function detour (init: DetourInit, object: { id: Uint8Array, owner: string }, holders: string[], signal?: AbortSignal): Promise<string[]> {
  // A holder no chunk stream reached may have died rather than be behind a NAT: its
  // connections closed as it died, and the redial that tells is under way. A dead one is
  // no reason to go around (peers still gossiping a link to it would take the copy from
  // nobody, and the object would wait on them): the pull fails, and the object fails over
  // at once (lineage computes it again, or its borrowers get OwnerDiedError).
  const verdicts = await Promise.all(holders.map(async peer => await init.verdict(peer, signal)))
  const living = holders.filter((_, i) => verdicts[i] === 'alive')
  if (living.length === 0) throw new ObjectLostError(`its holders died (${holders.join(', ')})`)
  const errors: string[] = []
  for (const peer of detourPeers(init, living)) {
    try {
      await init.prefetch(peer, { id: object.id, owner: object.owner }, signal)
      return [peer]
    } catch (err) {
      if (signal?.aborted === true) throw err
      errors.push(`${peer}: ${(err as Error).message}`)
    }
  }
  throw new Error(errors.length === 0 ? 'no peer reached directly reports a direct link to them' : errors.join('; '))
}
