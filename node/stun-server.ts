/**
 * A STUN binding responder (RFC 8489, the binding method only): tells a peer
 * behind a NAT the public address and port its UDP packets arrive from, which
 * WebRTC's ICE needs to punch a hole between two NATs. A public refmesh peer
 * runs one (`refmesh peer --stun-port`), so a volunteer mesh needs no third-party
 * STUN server. It keeps no state and answers nothing but well-formed binding requests.
 */
import { createSocket } from 'node:dgram'
import type { Socket } from 'node:dgram'
import { isIPv4 } from 'node:net'
import { logger } from '@libp2p/logger'

const log = logger('refmesh:stun')

const MAGIC_COOKIE = 0x2112a442
const BINDING_REQUEST = 0x0001
const BINDING_SUCCESS = 0x0101
const XOR_MAPPED_ADDRESS = 0x0020
const HEADER = 20

export interface StunServer {
  port: number
  close: () => Promise<void>
}

/** The binding success response for `request` from `address:port`, or undefined when it is no binding request. */
export function stunBindingResponse (request: Uint8Array, address: string, port: number): Uint8Array | undefined {
  if (request.byteLength < HEADER || !isIPv4(address)) return undefined
  const view = new DataView(request.buffer, request.byteOffset, request.byteLength)
  if (view.getUint16(0) !== BINDING_REQUEST || view.getUint32(4) !== MAGIC_COOKIE) return undefined
  if (view.getUint16(2) + HEADER !== request.byteLength) return undefined
  const out = new Uint8Array(HEADER + 12)
  const w = new DataView(out.buffer)
  w.setUint16(0, BINDING_SUCCESS)
  w.setUint16(2, 12)
  out.set(request.subarray(4, HEADER), 4) // magic cookie and transaction id
  w.setUint16(HEADER, XOR_MAPPED_ADDRESS)
  w.setUint16(HEADER + 2, 8)
  w.setUint8(HEADER + 5, 0x01) // IPv4
  w.setUint16(HEADER + 6, port ^ (MAGIC_COOKIE >>> 16))
  const ip = address.split('.').reduce((n, octet) => (n << 8) + Number(octet), 0) >>> 0
  w.setUint32(HEADER + 8, (ip ^ MAGIC_COOKIE) >>> 0)
  return out
}

export async function startStunServer (port: number, host = '0.0.0.0'): Promise<StunServer> {
  const socket: Socket = createSocket('udp4')
  socket.on('message', (msg, rinfo) => {
    const response = stunBindingResponse(msg, rinfo.address, rinfo.port)
    if (response === undefined) return
    socket.send(response, rinfo.port, rinfo.address, (err) => { if (err != null) log('answer to %s:%d failed: %s', rinfo.address, rinfo.port, err.message) })
  })
  socket.on('error', (err) => { log.error('STUN socket: %s', err.message) })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(port, host, () => { socket.off('error', reject); resolve() })
  })
  return {
    port: socket.address().port,
    close: async () => { await new Promise<void>(resolve => { socket.close(() => { resolve() }) }) }
  }
}
