/**
 * A second implementation of the wire protocol, written from core/PROTOCOL.md,
 * core/protocol/refmesh.proto and the vectors alone: libp2p for connections,
 * protobufjs reading the .proto, cborg, node:crypto. Nothing here imports core/,
 * node/ or browser/ (the peer it talks to is started through the CLI, and the
 * fixture functions it calls are the test peers' usual ones).
 *
 * Against one live `refmesh peer` in a private mesh it: proves the secret and checks
 * the peer's proof; calls a function; pulls a 4 MiB stored result chunk by chunk with
 * SHA-256 checks; serves a 3 MiB object of its own that the peer pulls as a call
 * argument; frees what it owns; stays alive past the failure detector's bound by
 * sending hellos as the liveness section says; and is refused a protocol version the
 * peer does not speak.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { createLibp2p } from 'libp2p'
import type { Libp2p, Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import protobuf from 'protobufjs'
import { encode as cborEncode, decode as cborDecode, Token, Type } from 'cborg'
import { pattern, checksum } from './fixtures/functions.ts'

const CLI = fileURLToPath(new URL('../node/cli.ts', import.meta.url))
const FIXTURES = fileURLToPath(new URL('./fixtures/functions.ts', import.meta.url))
const PROTO = fileURLToPath(new URL('../core/protocol/refmesh.proto', import.meta.url))
const SPEC = fileURLToPath(new URL('../core/PROTOCOL.md', import.meta.url))

// From PROTOCOL.md.
const CONTROL = '/refmesh/control/1.1.0'
/** a 1.1 peer MUST also handle the 1.0.0 id (PROTOCOL.md, Versions) */
const CONTROL_1_0 = '/refmesh/control/1.0.0'
const CHUNK = '/refmesh/chunk/1.0.0'
const AUTH = '/refmesh/auth/1.0.0'
const AUTH_TAG = Buffer.from('refmesh-auth-v1')
const INLINE = 1
const STORED = 2
const FREED = 4
const OK = 0
const NOT_FOUND = 1
const NOT_YET = 2
const BITFIELD = 3
const REFUSED = 4
const ENCODING_CBOR = 0
const ENCODING_BYTES = 1
const DEREF_TAG = 40401
const HEARTBEAT_MS = 1000
/** the failure detector's bound for a peer that stays connected (deadWhileConnectedBeats) */
const DEAD_WHILE_CONNECTED_MS = 15 * HEARTBEAT_MS
const SECRET = 'conformance-' + randomBytes(8).toString('hex')

const root = protobuf.loadSync(PROTO)
const Envelope = root.lookupType('refmesh.v1.Envelope')
const ChunkRequest = root.lookupType('refmesh.v1.ChunkRequest')
const ChunkHeader = root.lookupType('refmesh.v1.ChunkHeader')

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

// ------------------------------------------------------------------ framing

function varint (n: number): Buffer {
  const out: number[] = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Buffer.from(out)
}

function readVarint (buf: Buffer, at: number): [number, number] | undefined {
  let value = 0
  let scale = 1
  for (let i = 0; i < 8; i++) {
    if (at + i >= buf.length) return undefined
    value += (buf[at + i] & 0x7f) * scale
    if (buf[at + i] < 0x80) return [value, i + 1]
    scale *= 0x80
  }
  throw new Error('varint longer than 8 bytes')
}

const framed = (...parts: Uint8Array[]): Buffer => {
  const body = Buffer.concat(parts)
  return Buffer.concat([varint(body.length), body])
}

/** Length-prefixed frames from a stream, refusing one over `max` before buffering it. */
async function * frames (stream: Stream, max: number): AsyncGenerator<Buffer> {
  let buf = Buffer.alloc(0)
  for await (const chunk of stream) {
    buf = Buffer.concat([buf, chunk.subarray()])
    for (;;) {
      const head = readVarint(buf, 0)
      if (head === undefined) break
      if (head[0] > max) throw new Error(`frame of ${head[0]} bytes over ${max}`)
      if (buf.length < head[1] + head[0]) break
      yield buf.subarray(head[1], head[1] + head[0])
      buf = buf.subarray(head[1] + head[0])
    }
  }
}

async function readExactly (stream: Stream, n: number): Promise<Buffer> {
  let buf = Buffer.alloc(0)
  for await (const chunk of stream) {
    buf = Buffer.concat([buf, chunk.subarray()])
    if (buf.length >= n) return buf.subarray(0, n)
  }
  throw new Error(`stream ended after ${buf.length} of ${n} bytes`)
}

const encodeEnvelope = (env: Record<string, unknown>): Buffer => framed(Envelope.encode(Envelope.fromObject(env)).finish())
const decodeEnvelope = (bytes: Uint8Array): any => Envelope.toObject(Envelope.decode(bytes), { longs: Number })

// ------------------------------------------------------------------ the client

interface OwnedObject { bytes: Buffer, chunkSize: number, hashes: Buffer[] }

class Client {
  readonly node: Libp2p
  readonly peer: string
  readonly me: string
  private control: Stream | undefined
  private nextId = 1
  private readonly pending = new Map<number, (env: any) => void>()
  readonly owned = new Map<string, OwnedObject>()
  readonly heard: string[] = []
  chunksServed = 0
  provedToPeer: Promise<void>
  private proved!: () => void
  private hellos: ReturnType<typeof setInterval> | undefined

  constructor (node: Libp2p, peer: string) {
    this.node = node
    this.peer = peer
    this.me = node.peerId.toString()
    this.provedToPeer = new Promise(resolve => { this.proved = resolve })
  }

  async start (): Promise<void> {
    // The peer challenges us: 32 nonce bytes in, 32 answer bytes out, nothing else.
    await this.node.handle(AUTH, async (stream, connection) => {
      const nonce = await readExactly(stream, 32)
      stream.send(this.answer(nonce, connection.remotePeer.toString(), this.me))
      await stream.close()
      this.proved()
    })
    await this.node.handle(CONTROL, (stream) => { void this.readControl(stream) })
    await this.node.handle(CHUNK, (stream) => { void this.serveChunks(stream) })
  }

  answer (nonce: Uint8Array, challenger: string, responder: string): Buffer {
    return createHmac('sha256', SECRET).update(Buffer.concat([AUTH_TAG, nonce, Buffer.from(challenger), Buffer.from(responder)])).digest()
  }

  /** We challenge the peer too, and check its answer. */
  async challenge (): Promise<void> {
    const stream = await this.node.dialProtocol(peerIdFromString(this.peer), AUTH, { signal: AbortSignal.timeout(10_000) })
    const nonce = randomBytes(32)
    stream.send(nonce)
    const answer = await readExactly(stream, 32)
    assert.ok(timingSafeEqual(answer, this.answer(nonce, this.me, this.peer)), 'the peer proved the mesh secret')
    await stream.close()
  }

  async openControl (): Promise<void> {
    this.control = await this.node.dialProtocol(peerIdFromString(this.peer), CONTROL, { signal: AbortSignal.timeout(10_000) })
    void this.readControl(this.control)
  }

  /** Liveness: a hello now and every heartbeat (PROTOCOL.md, "Liveness"). */
  startHellos (): void {
    const hello = (): void => { this.send({ id: 0, hello: { functions: [], addrs: [], peers: [] } }) }
    hello()
    this.hellos = setInterval(hello, HEARTBEAT_MS)
  }

  stopHellos (): void {
    clearInterval(this.hellos)
  }

  send (env: Record<string, unknown>, stream = this.control): void {
    assert.ok(stream !== undefined)
    stream.send(encodeEnvelope(env))
  }

  async request (body: Record<string, unknown>, timeoutMs = 30_000): Promise<any> {
    const id = this.nextId++
    const reply = new Promise<any>((resolve, reject) => {
      this.pending.set(id, resolve)
      setTimeout(() => { reject(new Error(`no reply to ${Object.keys(body).join()} in ${timeoutMs} ms`)) }, timeoutMs).unref()
    })
    this.send({ ...body, id })
    const env = await reply
    if (env.error !== undefined) throw Object.assign(new Error(env.error.message), { name: env.error.name })
    return env
  }

  private async readControl (stream: Stream): Promise<void> {
    try {
      for await (const f of frames(stream, 8 * 1024 * 1024)) {
        const env = decodeEnvelope(f)
        if (env.reply === true) {
          this.pending.get(env.id)?.(env)
          this.pending.delete(env.id)
          continue
        }
        this.heard.push(Object.keys(env).filter(k => k !== 'id' && k !== 'reply').join())
        const answer = this.onRequest(env)
        if ((env.id ?? 0) !== 0) this.send({ ...answer, id: env.id, reply: true }, stream)
      }
    } catch {
      // the stream went away with the peer
    }
  }

  private onRequest (env: any): Record<string, unknown> {
    if (env.locate !== undefined) {
      const key = Buffer.from(env.locate.id).toString('hex')
      const obj = this.owned.get(key)
      if (obj === undefined) return { locateReply: { object: { status: FREED } } }
      return {
        locateReply: {
          object: {
            status: STORED,
            encoding: ENCODING_BYTES,
            manifest: { size: obj.bytes.length, chunkSize: obj.chunkSize, hashes: obj.hashes, encoding: ENCODING_BYTES },
            locations: [this.me]
          }
        }
      }
    }
    if (env.borrow !== undefined) return { ack: {} }
    if (env.stats !== undefined) return { statsReply: { json: JSON.stringify({ peer: this.me }) } }
    if (env.hello !== undefined || env.progress !== undefined || env.free !== undefined || env.resultAck !== undefined) return {}
    return { error: { name: 'ProtocolError', message: 'not supported by the conformance client' } }
  }

  /** Holder side of the chunk protocol, for the objects we own. */
  private async serveChunks (stream: Stream): Promise<void> {
    try {
      for await (const f of frames(stream, 64 * 1024)) {
        const req = ChunkRequest.toObject(ChunkRequest.decode(f)) as { id: Uint8Array, indices?: number[], bitfield?: boolean }
        const obj = this.owned.get(Buffer.from(req.id).toString('hex'))
        if (req.bitfield === true) {
          stream.send(this.chunkFrame(req.id, 0, obj === undefined ? NOT_FOUND : BITFIELD, obj === undefined ? undefined : Buffer.alloc(obj.hashes.length, 1)))
        }
        for (const index of req.indices ?? []) {
          if (obj === undefined || index >= obj.hashes.length) {
            stream.send(this.chunkFrame(req.id, index, NOT_FOUND))
            continue
          }
          this.chunksServed++
          if (!stream.send(this.chunkFrame(req.id, index, OK, obj.bytes.subarray(index * obj.chunkSize, (index + 1) * obj.chunkSize)))) await stream.onDrain()
        }
      }
      await stream.close()
    } catch {
      // the puller went away
    }
  }

  private chunkFrame (id: Uint8Array, index: number, status: number, body?: Uint8Array): Buffer {
    const header = ChunkHeader.encode(ChunkHeader.fromObject({ id, index, status })).finish()
    return framed(varint(header.length), header, body ?? Buffer.alloc(0))
  }

  /** Puller side: every chunk of a STORED object from one holder, 3 in flight (PROTOCOL.md: a puller MAY ask more), each checked against its hash. */
  async pull (holder: string, id: Uint8Array, manifest: { size: number, chunkSize: number, hashes: Uint8Array[] }): Promise<{ bytes: Buffer, chunks: number }> {
    const count = manifest.hashes.length
    assert.equal(count, Math.ceil(manifest.size / manifest.chunkSize))
    const out = Buffer.alloc(manifest.size)
    const stream = await this.node.dialProtocol(peerIdFromString(holder), CHUNK, { signal: AbortSignal.timeout(10_000) })
    const want = [...Array(count).keys()]
    let inFlight = 0
    let received = 0
    const ask = (bitfield: boolean): void => {
      const indices = want.splice(0, 3 - inFlight)
      inFlight += indices.length
      stream.send(framed(ChunkRequest.encode(ChunkRequest.fromObject({ id, indices, bitfield })).finish()))
    }
    ask(true)
    let sawBitfield = false
    for await (const f of frames(stream, manifest.chunkSize + 1024)) {
      const [headerLength, prefix] = readVarint(f, 0) as [number, number]
      const header = ChunkHeader.toObject(ChunkHeader.decode(f.subarray(prefix, prefix + headerLength)), { defaults: true }) as { id: Uint8Array, index: number, status: number }
      const body = f.subarray(prefix + headerLength)
      assert.deepEqual(Buffer.from(header.id), Buffer.from(id))
      if (header.status === BITFIELD) {
        assert.deepEqual([...body], Array(count).fill(1), 'a complete holder has every chunk')
        sawBitfield = true
        continue
      }
      inFlight--
      if (header.status === NOT_YET || header.status === REFUSED) {
        want.push(header.index)
      } else {
        assert.equal(header.status, OK, `chunk ${header.index}: status ${header.status}`)
        const start = header.index * manifest.chunkSize
        assert.equal(body.length, Math.min(manifest.size, start + manifest.chunkSize) - start)
        assert.ok(sha256(body).equals(Buffer.from(manifest.hashes[header.index])), `chunk ${header.index} matches its hash`)
        body.copy(out, start)
        received++
      }
      if (received === count) break
      if (want.length > 0) ask(false)
    }
    await stream.close()
    assert.ok(sawBitfield, 'the bitfield came first')
    return { bytes: out, chunks: received }
  }

  async stats (): Promise<any> {
    const env = await this.request({ stats: {} })
    return JSON.parse(env.statsReply.json)
  }
}

/** CBOR call arguments (PROTOCOL.md "Call arguments"): plain ones as byte strings of their own CBOR. */
function args (...items: Array<Uint8Array | { deref: [Uint8Array, string, number, string[]] }>): Uint8Array {
  return cborEncode(items, {
    typeEncoders: {
      Object: (obj: any) => {
        if (obj.deref === undefined) return null
        const [id, owner, size, locations] = obj.deref
        return [new Token(Type.tag, DEREF_TAG), new Token(Type.array, 4), new Token(Type.bytes, id), new Token(Type.string, owner),
          new Token(Type.uint, size), new Token(Type.array, locations.length), ...locations.map((l: string) => new Token(Type.string, l))]
      }
    }
  })
}
const plain = (value: unknown): Uint8Array => cborEncode(value)

/** The members of the MeshStats table in PROTOCOL.md; `map` members are not walked into. */
function documentedStatsMembers (): { members: string[], maps: string[] } {
  const text = readFileSync(SPEC, 'utf8')
  const table = text.slice(text.indexOf('### `stats_reply`'), text.indexOf('### Objects'))
  const members: string[] = []
  const maps: string[] = []
  for (const line of table.split('\n')) {
    const cells = line.split(' | ')
    if (!line.startsWith('| `') || cells.length < 3) continue
    let parent = ''
    for (const [, name] of cells[0].matchAll(/`([^`]+)`/g)) {
      const full = name.startsWith('.') ? parent + name : name
      parent = full.includes('.') ? full.slice(0, full.lastIndexOf('.')) : ''
      ;(cells[1].startsWith('map') ? maps : members).push(full)
    }
  }
  return { members: members.sort(), maps: maps.sort() }
}

function statsMembers (stats: Record<string, unknown>): { members: string[], maps: string[] } {
  const { maps } = documentedStatsMembers()
  const members: string[] = []
  const found: string[] = []
  const walk = (o: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(o)) {
      const name = prefix + k
      if (maps.includes(name)) found.push(name)
      else if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, name + '.')
      else members.push(name)
    }
  }
  walk(stats, '')
  return { members: members.sort(), maps: found.sort() }
}

// ------------------------------------------------------------------ the test

const VECTORS = (name: string): any => JSON.parse(readFileSync(fileURLToPath(new URL(`../core/protocol/vectors/${name}`, import.meta.url)), 'utf8'))

/** A protobufjs message in vector notation: proto field names, bytes as hex, defaults left out. */
function asFields (value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex')
  if (Array.isArray(value)) return value.map(asFields)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      if (v === 0 || v === false || v === '' || (v instanceof Uint8Array && v.byteLength === 0) || (Array.isArray(v) && v.length === 0)) continue
      out[k] = asFields(v)
    }
    return out
  }
  return value
}

test('refmesh.proto read by protobufjs agrees with every message vector', () => {
  const keepCase = new protobuf.Root()
  ;(keepCase as any).loadSync(PROTO, { keepCase: true })
  const check = (type: string, v: { name: string, fields: unknown, hex: string }): void => {
    const T = keepCase.lookupType(type)
    const decoded = T.toObject(T.decode(Buffer.from(v.hex, 'hex')), { longs: Number })
    assert.deepEqual(asFields(decoded), v.fields, `${type} ${v.name}`)
  }
  for (const v of VECTORS('control.json').vectors) check('refmesh.v1.Envelope', v)
  for (const v of VECTORS('gossip.json').vectors) check('refmesh.v1.PeerState', v)
  for (const r of VECTORS('chunk.json').requests) check('refmesh.v1.ChunkRequest', r)
  for (const f of VECTORS('chunk.json').frames) check('refmesh.v1.ChunkHeader', { name: f.name, fields: f.header, hex: f.header_hex })
})

async function startPeer (): Promise<{ peer: string, addrs: string[], kill: () => void, exited: () => boolean, stderr: () => string }> {
  const child = spawn(process.execPath, [CLI, 'peer', '--json', '--listen', '/ip4/127.0.0.1/tcp/0', '--module', FIXTURES,
    '--store-capacity', '256MiB', '--no-spill'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, REFMESH_MESH_SECRET: SECRET } })
  // The peer runs until a signal (stdin does not stop it); the test SIGKILLs it.
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  let exited = false
  child.on('exit', () => { exited = true })
  const ready = await new Promise<{ peer: string, addrs: string[] }>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`peer not ready: ${stderr}`)) }, 30_000)
    createInterface({ input: child.stdout }).once('line', line => { clearTimeout(timer); resolve(JSON.parse(line)) })
    child.once('exit', code => { reject(new Error(`peer exited (${code}): ${stderr}`)) })
  })
  return { ...ready, kill: () => { child.kill('SIGKILL') }, exited: () => exited, stderr: () => stderr }
}

test('a client written from the spec alone joins a private mesh, calls, pulls, serves, frees and stays alive', { timeout: 120_000 }, async () => {
  const peer = await startPeer()
  const node = await createLibp2p({
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
  const client = new Client(node, peer.peer)
  try {
    await client.start()
    await node.dial(multiaddr(peer.addrs[0]), { signal: AbortSignal.timeout(10_000) })
    // Private mesh: both sides challenge; nothing refmesh flows before.
    await client.challenge()
    await Promise.race([client.provedToPeer, new Promise((_resolve, reject) => setTimeout(() => { reject(new Error('the peer never challenged us')) }, 10_000))])
    await client.openControl()
    client.startHellos()
    const joined = performance.now()

    // A call with an inline result.
    const added = await client.request({ call: { resultId: randomBytes(16), fn: 'add', args: args(plain(2), plain(3)), maySpillBack: true } })
    assert.equal(added.callReply.result.status, INLINE)
    assert.equal(cborDecode(added.callReply.result.inline), 5)

    // A 4 MiB result stays on the executor, owned by us; we pull it chunk by chunk.
    const resultId = randomBytes(16)
    const made = await client.request({ call: { resultId, fn: 'make', args: args(plain(4 * 1024 * 1024), plain(7)), maySpillBack: true } })
    const result = made.callReply.result
    assert.equal(result.status, STORED)
    assert.equal(result.encoding, ENCODING_BYTES)
    assert.deepEqual(result.locations, [peer.peer])
    assert.deepEqual(result.contained ?? [], [], 'no Refs inside: no result_ack needed')
    const pulled = await client.pull(peer.peer, resultId, result.manifest)
    // The maker cuts 4 MiB in chunks of 256 KiB (PROTOCOL.md: 1 MiB halved while under 64 chunks).
    assert.equal(result.manifest.chunkSize, 256 * 1024)
    assert.equal(pulled.chunks, 16)
    assert.ok(pulled.bytes.equals(Buffer.from(pattern(4 * 1024 * 1024, 7))), 'the pulled bytes are the value')

    // A Ref of our own, passed to be dereferenced: the peer locates it here and pulls it from us.
    const ownId = randomBytes(16)
    const ownBytes = randomBytes(3 * 1024 * 1024 + 5)
    const chunkSize = 1024 * 1024
    const hashes = [0, 1, 2, 3].map(i => sha256(ownBytes.subarray(i * chunkSize, (i + 1) * chunkSize)))
    client.owned.set(ownId.toString('hex'), { bytes: ownBytes, chunkSize, hashes })
    const summed = await client.request({ call: { resultId: randomBytes(16), fn: 'checksum', args: args({ deref: [ownId, client.me, ownBytes.length, [client.me]] }), argBytes: ownBytes.length, maySpillBack: true } })
    assert.equal(summed.callReply.result.status, INLINE, JSON.stringify(summed.callReply.result.error))
    assert.deepEqual(cborDecode(summed.callReply.result.inline), { length: ownBytes.length, checksum: checksum(ownBytes) })
    assert.equal(client.chunksServed, 4, 'the peer pulled our 4 chunks from us')
    client.owned.delete(ownId.toString('hex'))

    // An unknown function is a FAILED reply; a request with no body an error envelope; both leave the stream up.
    const unknown = await client.request({ call: { resultId: randomBytes(16), fn: 'no-such-function', args: args(), maySpillBack: true } })
    assert.equal(unknown.callReply.result.status, 3)
    assert.equal(unknown.callReply.result.error.name, 'FunctionNotFoundError')
    await assert.rejects(client.request({}), { name: 'ProtocolError' })
    const located = await client.request({ locate: { id: randomBytes(16) } })
    assert.equal(located.locateReply.object.status, FREED)

    // Arguments not wrapped as byte strings: a FAILED reply, not a misread call.
    const unwrapped = await client.request({ call: { resultId: randomBytes(16), fn: 'add', args: cborEncode([2, 3]), maySpillBack: true } })
    assert.equal(unwrapped.callReply.result.status, 3)
    assert.equal(unwrapped.callReply.result.error.name, 'MalformedFrameError')

    // A frame over the limit costs that stream only: the peer resets it and keeps the rest.
    const doomed = await node.dialProtocol(peerIdFromString(peer.peer), CONTROL, { signal: AbortSignal.timeout(10_000) })
    doomed.send(varint(2 ** 32))
    await assert.rejects((async () => { for await (const _ of doomed) { /* nothing comes */ } throw new Error('closed, not reset') })(), (err: Error) => err.message !== 'closed, not reset')
    assert.equal((await client.stats()).peer, peer.peer, 'the control stream still answers')

    // The older minor's id is still answered (libp2p matches ids exactly).
    const older = await node.dialProtocol(peerIdFromString(peer.peer), CONTROL_1_0, { signal: AbortSignal.timeout(10_000) })
    assert.equal(older.protocol, CONTROL_1_0)
    await older.close()

    // A protocol version the peer does not speak is refused at negotiation, never misread.
    for (const protocol of ['/refmesh/control/2.0.0', '/refmesh/chunk/2.0.0']) {
      await assert.rejects(node.dialProtocol(peerIdFromString(peer.peer), protocol, { signal: AbortSignal.timeout(10_000) }), { name: 'UnsupportedProtocolError' })
    }

    // A peer that speaks only version 2 of the auth protocol fails the private mesh's check and is hung up on.
    const refusedBefore = (await client.stats()).auth.refused
    const stranger = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() } })
    try {
      await stranger.handle('/refmesh/auth/2.0.0', async (stream) => { await stream.close() })
      const hungUp = new Promise<void>(resolve => { stranger.addEventListener('peer:disconnect', () => { resolve() }, { once: true }) })
      await stranger.dial(multiaddr(peer.addrs[0]), { signal: AbortSignal.timeout(10_000) })
      await Promise.race([hungUp, new Promise((_resolve, reject) => setTimeout(() => { reject(new Error('a version-2 peer was not hung up on')) }, 15_000))])
      assert.equal((await client.stats()).auth.refused, refusedBefore + 1)
    } finally {
      await stranger.stop()
    }

    // Liveness: hellos alone keep us alive for 30 s, twice the bound (without them, checked by
    // hand: the peer has dropped us from its view by then).
    const until = joined + 2 * DEAD_WHILE_CONNECTED_MS
    while (performance.now() < until) await new Promise(resolve => setTimeout(resolve, Math.min(5_000, until - performance.now())))
    const stats = await client.stats()
    assert.deepEqual(statsMembers(stats), documentedStatsMembers(), 'the MeshStats JSON has exactly the members PROTOCOL.md lists')
    const me = stats.membership.find((m: any) => m.peer === client.me)
    assert.deepEqual(me, { peer: client.me, liveness: 'alive', connected: true })
    assert.ok(stats.store.keys.includes(resultId.toString('hex')), 'the result we own is still held after the liveness bound')
    const again = await client.request({ locate: { id: resultId } })
    assert.equal(again.locateReply.object.status, FREED, 'the executor holds the result but does not own it')

    // We own the result: freeing it drops the executor's copy.
    client.send({ id: 0, free: { ids: [resultId] } })
    const deadline = performance.now() + 10_000
    for (;;) {
      const s = await client.stats()
      if (!s.store.keys.includes(resultId.toString('hex'))) break
      assert.ok(performance.now() < deadline, 'the freed result left the executor')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    assert.ok(client.heard.includes('hello'), 'the peer said hello')
    assert.ok(!peer.exited(), 'the peer is still up')
  } catch (err) {
    throw new Error(`${(err as Error).stack}\npeer's stderr:\n${peer.stderr()}`)
  } finally {
    client.stopHellos()
    await node.stop()
    peer.kill()
  }
})
