/**
 * A maintained patch of one method of @libp2p/tcp 11.0.28:
 * `TCPSocketMultiaddrConnection.sendData` calls `socket.write` once per buffer
 * of the list it is handed, and Noise hands it at least two per frame (a 2-byte
 * length, then the ciphertext), so every small message costs two or more
 * syscalls; on loopback each also runs the receiver's TCP path and wakes it.
 * We cork the socket around the loop, so the list leaves in one writev with no
 * copy, and `write`'s backpressure answer is unchanged.
 *
 * The class is not exported, so its prototype is taken from a throwaway
 * instance around an unconnected socket. test/transport-patches.test.ts checks
 * the patch is installed and counts the corked writes.
 */
import { Socket } from 'node:net'
import { logger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'

interface SendResult { sentBytes: number, canSendMore: boolean }
interface TcpConnection {
  socket: Socket
  sendData: (this: TcpConnection, data: Iterable<Uint8Array> & { byteLength: number, bufs?: Uint8Array[] }) => SendResult
}

export const tcpWritevPatch = { installed: false, corked: 0 }

const socketToConn = new URL('./socket-to-conn.js', import.meta.resolve('@libp2p/tcp'))
const { toMultiaddrConnection } = await import(socketToConn.href) as { toMultiaddrConnection?: (init: unknown) => TcpConnection }
if (typeof toMultiaddrConnection !== 'function') {
  throw new Error('@libp2p/tcp changed: socket-to-conn.js no longer exports toMultiaddrConnection; revisit node/tcp-writev.ts')
}
const probeSocket = new Socket()
const probe = toMultiaddrConnection({ socket: probeSocket, remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/1'), direction: 'outbound', log: logger('refmesh:tcp-writev') })
probeSocket.destroy()
const proto = Object.getPrototypeOf(probe) as TcpConnection
const original = proto.sendData
if (typeof original !== 'function' || !Object.hasOwn(proto, 'sendData')) {
  throw new Error('@libp2p/tcp changed: TCPSocketMultiaddrConnection.sendData is gone; revisit node/tcp-writev.ts')
}
proto.sendData = function (data) {
  if (data.bufs === undefined || data.bufs.length < 2 || this.socket.writableCorked > 0) return original.call(this, data)
  tcpWritevPatch.corked++
  this.socket.cork()
  try {
    return original.call(this, data)
  } finally {
    this.socket.uncork()
  }
}
tcpWritevPatch.installed = true
