/** Bytes sent and received per remote peer and protocol, for stats and for tests that prove where data went. */
export interface PeerTraffic {
  controlIn: number
  controlOut: number
  chunkIn: number
  chunkOut: number
}

export class TrafficCounter {
  private readonly byPeer = new Map<string, PeerTraffic>()

  private entry (peer: string): PeerTraffic {
    let e = this.byPeer.get(peer)
    if (e === undefined) {
      e = { controlIn: 0, controlOut: 0, chunkIn: 0, chunkOut: 0 }
      this.byPeer.set(peer, e)
    }
    return e
  }

  add (peer: string, kind: keyof PeerTraffic, bytes: number): void {
    this.entry(peer)[kind] += bytes
  }

  snapshot (): Record<string, PeerTraffic> {
    return Object.fromEntries([...this.byPeer].map(([k, v]) => [k, { ...v }]))
  }

  totals (): PeerTraffic {
    const t: PeerTraffic = { controlIn: 0, controlOut: 0, chunkIn: 0, chunkOut: 0 }
    for (const v of this.byPeer.values()) {
      t.controlIn += v.controlIn
      t.controlOut += v.controlOut
      t.chunkIn += v.chunkIn
      t.chunkOut += v.chunkOut
    }
    return t
  }
}
