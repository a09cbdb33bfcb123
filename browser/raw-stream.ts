/**
 * A raw libp2p stream for benchmarks: the puller asks for N bytes and the
 * holder streams them back, with no framing, hashing or store. It runs on the
 * same connection (so the same transport) as refmesh's chunk streams: the
 * ceiling a refmesh transfer is compared with. Runs in tabs and in Node peers.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, Stream } from '@libp2p/interface'

export const RAW_PROTOCOL = '/refmesh/bench-raw/1.0.0'

/** The holder sends in slices of this size, as refmesh sends chunks. */
const SLICE = 1024 * 1024

/** Serves raw pulls on `libp2p` until it stops. */
export async function handleRawPulls (libp2p: Libp2p): Promise<void> {
  const slice = new Uint8Array(SLICE)
  for (let i = 0; i < SLICE; i += 4096) slice[i] = (i / 4096) & 255
  await libp2p.handle(RAW_PROTOCOL, (stream: Stream) => {
    serve(stream, slice).catch((err: Error) => { stream.abort(err) })
  })
}

async function serve (stream: Stream, slice: Uint8Array): Promise<void> {
  let request = new Uint8Array(0)
  let served = false
  // Read until the puller closes, so the stream ends cleanly on both sides.
  for await (const data of stream) {
    if (served) continue
    const bytes = data instanceof Uint8Array ? data : data.subarray()
    const joined = new Uint8Array(request.byteLength + bytes.byteLength)
    joined.set(request)
    joined.set(bytes, request.byteLength)
    request = joined
    if (request.byteLength < 8) continue
    served = true
    let left = Number(new DataView(request.buffer, request.byteOffset, 8).getBigUint64(0))
    while (left > 0) {
      const n = Math.min(left, SLICE)
      if (!stream.send(n === SLICE ? slice : slice.subarray(0, n))) await stream.onDrain()
      left -= n
    }
    await stream.close()
  }
}

/** Pulls `bytes` raw bytes from `peer`; the time runs from opening the stream to the last byte. */
export async function rawPull (libp2p: Libp2p, peer: string, bytes: number, options: { signal?: AbortSignal } = {}): Promise<{ ms: number, bytes: number }> {
  const started = performance.now()
  const stream = await libp2p.dialProtocol(peerIdFromString(peer), RAW_PROTOCOL, { signal: options.signal })
  try {
    const request = new Uint8Array(8)
    new DataView(request.buffer).setBigUint64(0, BigInt(bytes))
    stream.send(request)
    let got = 0
    // The holder closes its side after the last byte.
    for await (const data of stream) got += data.byteLength
    const ms = performance.now() - started
    if (got !== bytes) throw new Error(`raw pull from ${peer}: got ${got} of ${bytes} bytes`)
    await stream.close({ signal: options.signal })
    return { ms, bytes: got }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
