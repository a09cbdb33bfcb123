/**
 * Handoffs: Refs this peer hands to another in a message (the Refs inside a call
 * result, an object a name lookup found) stay pinned here until the receiver has
 * registered its borrow with their owners and acknowledged, so the object cannot
 * be freed in between (the handoff protocol of PROTOCOL.md).
 *
 * Answers: `resultAck` (the receiver is registered: unpin).
 */
export interface HandoffsInit {
  /** drops this peer's pin of an object */
  unpin: (key: string) => void
}

export class Handoffs {
  private readonly unpin: (key: string) => void
  /** by the key the receiver acknowledges (a result's key, or a lookup's handoff id): who receives, what is pinned */
  private readonly pending = new Map<string, { peer: string, keys: string[] }>()

  constructor (init: HandoffsInit) {
    this.unpin = init.unpin
  }

  /** `keys` are pinned (by the caller) until `peer` acknowledges `key`. */
  hold (key: string, peer: string, keys: string[]): void {
    this.pending.set(key, { peer, keys })
  }

  /** `from` acknowledged `key`: the pins go. Only the receiver can release a handoff. */
  release (from: string, key: string): void {
    const handoff = this.pending.get(key)
    if (handoff === undefined || handoff.peer !== from) return
    this.pending.delete(key)
    for (const k of handoff.keys) this.unpin(k)
  }

  /** A dead receiver will never acknowledge: its handoffs go. */
  peerGone (peer: string): void {
    for (const [key, h] of this.pending) if (h.peer === peer) this.release(peer, key)
  }

  get size (): number {
    return this.pending.size
  }
}
