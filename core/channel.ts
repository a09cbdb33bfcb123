/**
 * Control channels: one long-lived, multiplexed stream per peer pair and
 * direction, carrying Envelope frames (requests matched to replies by id).
 * A new stream per call costs protocol negotiation round trips (see
 * STACK-NOTES), so every request to a peer reuses the same stream, which also
 * keeps one peer's messages to another in order.
 */
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, Stream, StreamMessageEvent } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { openStream } from './connect.ts'
import { FrameDecoder, frame } from './protocol/framing.ts'
import { EnvelopeCodec } from './protocol/messages.ts'
import type { Envelope } from './protocol/messages.ts'
import { PeerDiedError, errorToInfo, infoToError } from './errors.ts'
import { raceSignal } from './signals.ts'
import type { TrafficCounter } from './traffic.ts'

const log = logger('refmesh:channel')

/** Runs `fn` once this turn of the event loop is over: setImmediate in Node, a timer in a browser (it has no setImmediate). */
const afterThisTurn: (fn: () => void) => void = typeof globalThis.setImmediate === 'function'
  ? fn => { globalThis.setImmediate(fn) }
  : fn => { setTimeout(fn, 0) }

/**
 * Version 1.1 added multiple return values (CallRequest.result_ids, CallReply.results),
 * 1.2 a sender's state in its hello (Hello.state): optional fields an older peer skips,
 * so minor versions (PROTOCOL.md, Versions). libp2p matches ids exactly, so a 1.2 peer
 * also answers 1.1.0 and 1.0.0, and dials 1.2.0 first.
 */
export const CONTROL_PROTOCOL = '/refmesh/control/1.2.0'
/** every control protocol id this peer speaks, newest first */
export const CONTROL_PROTOCOLS = [CONTROL_PROTOCOL, '/refmesh/control/1.1.0', '/refmesh/control/1.0.0']

export type EnvelopeBody = Omit<Envelope, 'id' | 'reply'>

/** Handles a request from `from`; the returned body is the reply (ignored for one-way messages). */
export type RequestHandler = (from: string, request: Envelope) => Promise<EnvelopeBody> | EnvelopeBody

export interface ControlChannelsInit {
  libp2p: Libp2p
  traffic: TrafficCounter
  maxFrameBytes: number
  onRequest: RequestHandler
  /** a frame came from `peer`: proof that it lives, whatever the frame says */
  onHeard?: (peer: string) => void
  /** private meshes: resolves once the peer has proved the mesh secret, rejects if it cannot */
  admit?: (peer: string, signal?: AbortSignal) => Promise<void>
}

interface Pending {
  peer: string
  stream: Stream
  resolve: (env: Envelope) => void
  reject: (err: Error) => void
}

export class ControlChannels {
  private readonly init: ControlChannelsInit
  private readonly outbound = new Map<string, Promise<Stream>>()
  /** outbound streams once open: a request to one is written at once, without a turn of the event loop's promise queue */
  private readonly opened = new Map<string, Stream>()
  /** streams that sent a frame on their own this turn of the event loop (see write) */
  private readonly sentThisTurn = new Set<Stream>()
  private readonly pending = new Map<number, Pending>()
  private readonly batches = new Map<Stream, Uint8ArrayList>()
  private nextId = 1
  private stopped = false

  constructor (init: ControlChannelsInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.libp2p.handle(CONTROL_PROTOCOLS, (stream, connection) => {
      const peer = connection.remotePeer.toString()
      if (this.init.admit === undefined) {
        this.readLoop(peer, stream)
        return
      }
      this.init.admit(peer).then(() => { this.readLoop(peer, stream) }, (err: Error) => { stream.abort(err) })
    }, { maxInboundStreams: 8, maxOutboundStreams: 8 })
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const p of this.pending.values()) p.reject(new PeerDiedError('mesh stopped'))
    this.pending.clear()
    const streams = await Promise.allSettled(this.outbound.values())
    for (const s of streams) if (s.status === 'fulfilled') s.value.abort(new PeerDiedError('mesh stopped'))
    this.outbound.clear()
    this.opened.clear()
    await this.init.libp2p.unhandle(CONTROL_PROTOCOLS).catch(() => {})
  }

  /** Sends a request and waits for its reply. Rejects with the remote's typed error, PeerDiedError, or the signal's reason. */
  request (peer: string, body: EnvelopeBody, options: { signal?: AbortSignal } = {}): Promise<Envelope> {
    // Not an async function, on an open stream: each await between a reply's arrival and
    // its caller is a turn of the promise queue on every call's path.
    const stream = this.openStream(peer, options.signal)
    return stream === undefined ? this.requestOnNewStream(peer, body, options) : this.requestOn(peer, stream, body, options.signal)
  }

  private async requestOnNewStream (peer: string, body: EnvelopeBody, options: { signal?: AbortSignal }): Promise<Envelope> {
    const stream = await raceSignal(this.streamTo(peer, options.signal), options.signal, `request to ${peer}`)
    return await this.requestOn(peer, stream, body, options.signal)
  }

  private requestOn (peer: string, stream: Stream, body: EnvelopeBody, signal: AbortSignal | undefined): Promise<Envelope> {
    const id = this.nextId++
    if (this.nextId > 0xfffffff0) this.nextId = 1
    // Settled by dispatch() (which takes it out of pending), or failed with the stream.
    const reply = new Promise<Envelope>((resolve, reject) => {
      this.pending.set(id, { peer, stream, resolve, reject })
    })
    try {
      this.write(peer, stream, { ...body, id, reply: false })
    } catch (err) {
      this.pending.delete(id)
      return Promise.reject(err)
    }
    if (signal === undefined) return reply
    return raceSignal(reply, signal, `request to ${peer}`).finally(() => { this.pending.delete(id) })
  }

  /** Sends a message that expects no reply. Messages to one peer arrive in the order they were sent. */
  async send (peer: string, body: EnvelopeBody, options: { signal?: AbortSignal } = {}): Promise<void> {
    const stream = this.openStream(peer, options.signal) ?? await raceSignal(this.streamTo(peer, options.signal), options.signal, `message to ${peer}`)
    this.write(peer, stream, { ...body, id: 0, reply: false })
  }

  /** Forgets the stream to `peer` (its connection closed) and fails what waits on it. */
  dropPeer (peer: string): void {
    this.outbound.delete(peer)
    this.opened.delete(peer)
    for (const [id, p] of this.pending) {
      if (p.peer === peer) {
        this.pending.delete(id)
        p.reject(new PeerDiedError(`connection to ${peer} closed`))
      }
    }
  }

  /** The open outbound stream to `peer`, if there is one and `signal` has not fired (else the caller takes the slow path, which says why). */
  private openStream (peer: string, signal?: AbortSignal): Stream | undefined {
    const stream = this.opened.get(peer)
    if (stream === undefined || signal?.aborted === true || this.stopped) return undefined
    if (stream.writeStatus === 'writable' && this.outbound.has(peer)) return stream
    this.opened.delete(peer)
    return undefined
  }

  private streamTo (peer: string, signal?: AbortSignal): Promise<Stream> {
    if (this.stopped) return Promise.reject(new PeerDiedError('mesh stopped'))
    let stream = this.outbound.get(peer)
    if (stream === undefined) {
      this.opened.delete(peer)
      stream = this.open(peer, signal)
      this.outbound.set(peer, stream)
      stream.catch(() => {
        if (this.outbound.get(peer) === stream) this.outbound.delete(peer)
      })
    }
    return stream
  }

  private async open (peer: string, signal?: AbortSignal): Promise<Stream> {
    try {
      // In a private mesh nothing, not even a hello, goes to a peer before it has proved the secret.
      await this.init.admit?.(peer, signal)
      const stream = await openStream(this.init.libp2p, peerIdFromString(peer), CONTROL_PROTOCOLS, { signal })
      this.readLoop(peer, stream)
      if (!this.stopped) this.opened.set(peer, stream)
      return stream
    } catch (err) {
      throw new PeerDiedError(`cannot reach ${peer}: ${(err as Error).message}`)
    }
  }

  /**
   * Sends a frame. The first frame a stream sends in a turn of the event loop
   * leaves at once (a lone call or reply waits for nothing); frames after it in
   * the same turn are queued and leave together at the next microtask
   * checkpoint, so many calls in flight cost one encryption and one syscall per
   * batch, not per call.
   */
  private write (peer: string, stream: Stream, env: Envelope): void {
    const out = frame(EnvelopeCodec.encode(env))
    this.init.traffic.add(peer, 'controlOut', out.byteLength)
    let batch = this.batches.get(stream)
    if (batch === undefined && !this.sentThisTurn.has(stream)) {
      if (this.sentThisTurn.size === 0) afterThisTurn(this.newTurn)
      this.sentThisTurn.add(stream)
      // The control stream has no write limit; large payloads never travel on it.
      if (stream.writeStatus === 'writable') stream.send(out)
      return
    }
    if (batch === undefined) {
      batch = new Uint8ArrayList()
      this.batches.set(stream, batch)
      queueMicrotask(() => {
        this.batches.delete(stream)
        if (stream.writeStatus === 'writable') stream.send((batch as Uint8ArrayList).subarray())
      })
    }
    batch.append(out)
  }

  private readonly newTurn = (): void => { this.sentThisTurn.clear() }

  /**
   * Reads frames as the stream's 'message' events arrive, not with `for await`:
   * the stream's async iterator passes each message through a pushable and a
   * generator, ~15 us per small message on both ends of every call's path.
   */
  private readLoop (peer: string, stream: Stream): void {
    const decoder = new FrameDecoder(this.init.maxFrameBytes)
    let ended = false
    const onMessage = (evt: StreamMessageEvent): void => {
      if (ended) return
      try {
        this.init.traffic.add(peer, 'controlIn', evt.data.byteLength)
        this.init.onHeard?.(peer)
        for (const f of decoder.push(evt.data)) {
          const env = EnvelopeCodec.decode(f.subarray())
          this.dispatch(peer, stream, env)
        }
      } catch (err) {
        // A bad frame costs this stream, never the peer.
        log.error('control stream from %s closed: %e', peer, err)
        end()
        stream.abort(err as Error)
      }
    }
    const end = (): void => {
      if (ended) return
      ended = true
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('close', end)
      stream.removeEventListener('remoteCloseWrite', end)
      // If this was our outbound stream to the peer, the next request opens a new one.
      if (this.opened.get(peer) === stream) this.opened.delete(peer)
      const outbound = this.outbound.get(peer)
      outbound?.then(s => { if (s === stream && this.outbound.get(peer) === outbound) this.outbound.delete(peer) }, () => {})
      for (const [id, p] of this.pending) {
        if (p.stream === stream) {
          this.pending.delete(id)
          p.reject(new PeerDiedError(`control stream to ${peer} closed`))
        }
      }
    }
    if (stream.readStatus !== 'readable' && stream.readStatus !== 'paused') {
      end()
      return
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', end)
    stream.addEventListener('remoteCloseWrite', end)
  }

  private dispatch (peer: string, stream: Stream, env: Envelope): void {
    if (env.reply) {
      const pending = this.pending.get(env.id)
      if (pending === undefined) return
      this.pending.delete(env.id)
      if (env.error !== undefined) pending.reject(infoToError(env.error))
      else pending.resolve(env)
      return
    }
    const reply = (body: EnvelopeBody): void => {
      if (env.id === 0 || stream.writeStatus !== 'writable') return
      this.write(peer, stream, { ...body, id: env.id, reply: true })
    }
    let result: Promise<EnvelopeBody> | EnvelopeBody
    try {
      result = this.init.onRequest(peer, env)
    } catch (err) {
      reply({ error: errorToInfo(err, this.init.libp2p.peerId.toString()) })
      return
    }
    if (result instanceof Promise) {
      result.then(reply, (err: unknown) => {
        log('request %d from %s failed: %s', env.id, peer, (err as Error).message)
        reply({ error: errorToInfo(err, this.init.libp2p.peerId.toString()) })
      })
    } else {
      reply(result)
    }
  }
}
