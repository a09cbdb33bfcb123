/**
 * Private meshes: every peer proves it knows the mesh secret before any refmesh
 * protocol runs with it, on every transport (it is a libp2p protocol of its own,
 * run on each new connection after Noise, so browsers and WebRTC are covered).
 *
 * `/refmesh/auth/1.0.0`, one stream per direction: the challenger writes a random
 * 32-byte nonce; the responder answers with
 *   HMAC-SHA256(secret, "refmesh-auth-v1" | nonce | challenger's peer id | responder's peer id)
 * and the challenger compares it in constant time. Both sides challenge each other.
 * The secret never crosses the wire, a fresh nonce defeats replay, and the peer
 * ids (which Noise has authenticated) bind the answer to this pair, so a peer
 * without the secret cannot relay a member's answer as its own.
 *
 * Until a peer has answered, its control and chunk streams wait (bounded) and its
 * gossip is rejected; a wrong answer, or none within `timeoutMs`, hangs up on it.
 */
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { openStream } from './connect.ts'
import { AbortError, RefmeshError } from './errors.ts'
import { raceSignal } from './signals.ts'

const log = logger('refmesh:auth')

export const AUTH_PROTOCOL = '/refmesh/auth/1.0.0'
const NONCE_BYTES = 32
const TAG = new TextEncoder().encode('refmesh-auth-v1')

/** A peer did not prove it knows the mesh secret. */
export class NotAMemberError extends RefmeshError {
  override name = 'NotAMemberError'
}

export interface MeshAuthInit {
  libp2p: Libp2p
  secret: string | Uint8Array
  /** how long a new peer has to answer the challenge */
  timeoutMs: number
}

export class MeshAuth {
  private readonly init: MeshAuthInit
  private key: CryptoKey | undefined
  private readonly verified = new Set<string>()
  private readonly waiting = new Map<string, Array<{ resolve: () => void, reject: (err: Error) => void }>>()
  private readonly checking = new Set<string>()
  private readonly failed = new Set<string>()
  /** peers refused (wrong answer or none), for tests and metrics */
  refused = 0

  constructor (init: MeshAuthInit) {
    this.init = init
  }

  async start (): Promise<void> {
    const secret = typeof this.init.secret === 'string' ? new TextEncoder().encode(this.init.secret) : new Uint8Array(this.init.secret)
    if (secret.byteLength === 0) throw new TypeError('the mesh secret must not be empty')
    this.key = await crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
    await this.init.libp2p.handle(AUTH_PROTOCOL, (stream, connection) => {
      void this.answer(connection.remotePeer.toString(), stream)
    }, { maxInboundStreams: 4, maxOutboundStreams: 4 })
    this.init.libp2p.addEventListener('peer:connect', this.onConnect)
    this.init.libp2p.addEventListener('peer:disconnect', this.onDisconnect)
    for (const conn of this.init.libp2p.getConnections()) this.check(conn.remotePeer.toString())
  }

  async stop (): Promise<void> {
    this.init.libp2p.removeEventListener('peer:connect', this.onConnect)
    this.init.libp2p.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.init.libp2p.unhandle(AUTH_PROTOCOL).catch(() => {})
    for (const [peer, list] of this.waiting) for (const w of list) w.reject(new NotAMemberError(`${peer}: this peer stopped`))
    this.waiting.clear()
  }

  isMember (peer: string): boolean {
    return this.verified.has(peer)
  }

  /** Resolves once `peer` has proved the secret; NotAMemberError when it fails or takes too long. */
  async admit (peer: string, signal?: AbortSignal): Promise<void> {
    if (this.verified.has(peer)) return
    if (this.failed.has(peer)) throw new NotAMemberError(`${peer} did not prove the mesh secret`)
    this.check(peer)
    const proved = new Promise<void>((resolve, reject) => {
      let list = this.waiting.get(peer)
      if (list === undefined) this.waiting.set(peer, list = [])
      list.push({ resolve, reject })
    })
    await raceSignal(proved, AbortSignal.any([AbortSignal.timeout(this.init.timeoutMs), ...(signal !== undefined ? [signal] : [])]), `admission of ${peer}`)
      .catch((err: Error) => { throw err instanceof AbortError || err.name === 'TimeoutError' ? new NotAMemberError(`${peer} did not prove the mesh secret within ${this.init.timeoutMs} ms`) : err })
  }

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    this.check(evt.detail.toString())
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    this.verified.delete(peer)
    this.failed.delete(peer)
  }

  private async mac (nonce: Uint8Array, challenger: string, responder: string): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign('HMAC', this.key as CryptoKey, authMessage(nonce, challenger, responder)))
  }

  /** Challenges `peer` once per connection. */
  private check (peer: string): void {
    if (this.verified.has(peer) || this.checking.has(peer)) return
    this.checking.add(peer)
    this.challenge(peer).then(() => {
      this.verified.add(peer)
      this.failed.delete(peer)
      log('%s proved the mesh secret', peer)
      for (const w of this.waiting.get(peer) ?? []) w.resolve()
    }, (err: Error) => {
      this.refused++
      this.failed.add(peer)
      log.error('%s is not a member: %s; hanging up', peer, err.message)
      const reason = new NotAMemberError(`${peer} did not prove the mesh secret: ${err.message}`)
      for (const w of this.waiting.get(peer) ?? []) w.reject(reason)
      this.init.libp2p.hangUp(peerIdFromString(peer)).catch(() => {})
    }).finally(() => {
      this.checking.delete(peer)
      this.waiting.delete(peer)
    })
  }

  private async challenge (peer: string): Promise<void> {
    const signal = AbortSignal.timeout(this.init.timeoutMs)
    const stream = await openStream(this.init.libp2p, peerIdFromString(peer), AUTH_PROTOCOL, { signal })
    try {
      const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES))
      stream.send(nonce)
      const answer = await readExactly(stream, 32, signal)
      const expected = await this.mac(nonce, this.init.libp2p.peerId.toString(), peer)
      let diff = 0
      for (let i = 0; i < expected.byteLength; i++) diff |= expected[i] ^ answer[i]
      if (diff !== 0) throw new NotAMemberError('wrong answer to the challenge')
      await stream.close({ signal }).catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  private async answer (peer: string, stream: Stream): Promise<void> {
    try {
      const signal = AbortSignal.timeout(this.init.timeoutMs)
      const nonce = await readExactly(stream, NONCE_BYTES, signal)
      stream.send(await this.mac(nonce, peer, this.init.libp2p.peerId.toString()))
      await stream.close({ signal }).catch(() => {})
    } catch (err) {
      log('answering %s failed: %s', peer, (err as Error).message)
      stream.abort(err as Error)
    }
  }
}

async function readExactly (stream: Stream, n: number, signal: AbortSignal): Promise<Uint8Array> {
  const out = new Uint8Array(n)
  let at = 0
  const read = (async () => {
    for await (const chunk of stream) {
      const bytes = chunk.subarray()
      if (at + bytes.byteLength > n) throw new NotAMemberError(`more than ${n} bytes in an auth message`)
      out.set(bytes, at)
      at += bytes.byteLength
      if (at === n) return out
    }
    throw new NotAMemberError(`the auth stream ended after ${at} of ${n} bytes`)
  })()
  return await raceSignal(read, signal, 'mesh auth')
}

/**
 * The bytes a responder signs (HMAC-SHA256 with the mesh secret as key): the ASCII tag
 * `refmesh-auth-v1`, the 32-byte nonce, then both peer ids as UTF-8 base58 text, with no
 * separators or length prefixes (the tag and nonce have fixed lengths; see PROTOCOL.md).
 * Exported for the test vectors.
 */
export function authMessage (nonce: Uint8Array, challenger: string, responder: string): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder()
  const parts = [TAG, nonce, enc.encode(challenger), enc.encode(responder)]
  const data = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { data.set(p, at); at += p.byteLength }
  return data
}
