/**
 * The peers this peer knows: what functions each offers and where it listens.
 * Filled from the Hello every peer sends when a connection opens (and again
 * when its functions change). The gossip scheduler replaces this with state
 * gossiped on a pubsub topic.
 */
export interface PeerRecord {
  peer: string
  functions: Set<string>
  addrs: string[]
  lastSeen: number
}

export class PeerDirectory {
  private readonly peers = new Map<string, PeerRecord>()
  private readonly listeners = new Set<() => void>()

  update (peer: string, functions: string[], addrs: string[]): void {
    this.peers.set(peer, { peer, functions: new Set(functions), addrs, lastSeen: Date.now() })
    for (const l of this.listeners) l()
  }

  remove (peer: string): void {
    if (this.peers.delete(peer)) for (const l of this.listeners) l()
  }

  get (peer: string): PeerRecord | undefined {
    return this.peers.get(peer)
  }

  has (peer: string): boolean {
    return this.peers.has(peer)
  }

  all (): PeerRecord[] {
    return [...this.peers.values()]
  }

  offering (fn: string): PeerRecord[] {
    return this.all().filter(p => p.functions.has(fn))
  }

  /** Calls `listener` whenever the directory changes; returns the unsubscribe function. */
  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }
}
