// gRPC pass-by-value baseline server. Spawned by grpc-baseline.ts; prints
// {"port":N} once bound. Raw Buffer codec so the baseline measures transport
// and copying, not protobuf encoding.
import http2 from 'node:http2';
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import type { MethodDefinition, ServerUnaryCall, ServiceDefinition, sendUnaryData } from '@grpc/grpc-js';

export const METHODS = ['F', 'G', 'Noop'] as const;
export type MethodName = (typeof METHODS)[number];

/**
 * Tuned as a gRPC user moving 64 MiB messages would: no message size limits and a
 * 16 MiB HTTP/2 flow-control window instead of the 64 KiB default (grpc-js's own
 * source calls the default a "start-window stall"; measured here, the chain with
 * the default window was ~8% slower).
 */
export const FLOW_CONTROL_WINDOW = 16 * 1024 * 1024;
export const GRPC_OPTIONS = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
} as const;

/**
 * grpc-js 1.14.7 applies `grpc-node.flow_control_window` on the client only; its
 * Server passes no window to http2.createServer. So the server gets the same window
 * here: per stream through the settings it advertises, per connection once each
 * session starts. G receives the 64 MiB x, so without this half the chain would
 * still run on a 64 KiB window.
 */
function serverFlowControlWindow(window: number): void {
  const createServer = http2.createServer;
  const patched = (options: http2.ServerOptions, ...rest: unknown[]): http2.Http2Server => {
    const server = (createServer as (...args: unknown[]) => http2.Http2Server)({ ...options, settings: { ...options?.settings, initialWindowSize: window } }, ...rest);
    server.on('session', (session) => session.setLocalWindowSize(window));
    return server;
  };
  (http2 as { createServer: unknown }).createServer = patched;
}

const identity = (b: Buffer): Buffer => b;

/** `onBytes` lets the client count exactly the payload bytes it serializes and deserializes. */
export function rawService(onBytes?: (n: number) => void): ServiceDefinition {
  const counted = onBytes
    ? (b: Buffer): Buffer => {
        onBytes(b.length);
        return b;
      }
    : identity;
  const def: Record<string, MethodDefinition<Buffer, Buffer>> = {};
  for (const name of METHODS) {
    def[name] = {
      path: `/refmesh.bench.Raw/${name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: counted,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: counted,
    };
  }
  return def;
}

export const patternByte = (i: number): number => (i * 31) & 255;

/** The pattern has period 256, so Buffer.fill with one period reproduces it at memset speed. */
export function patternBuffer(size: number): Buffer {
  const period = Buffer.allocUnsafe(256);
  for (let i = 0; i < 256; i++) period[i] = patternByte(i);
  return Buffer.allocUnsafe(size).fill(period);
}

// Sparse so G stays cheap; the stride is coprime to the pattern's period 256,
// otherwise (e.g. 4096) every sample would land on the same pattern byte.
export const CHECKSUM_STRIDE = 4099;

export function sparseChecksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i += CHECKSUM_STRIDE) sum = (sum + buf[i]) >>> 0;
  return sum;
}

export function patternChecksum(size: number): number {
  let sum = 0;
  for (let i = 0; i < size; i += CHECKSUM_STRIDE) sum = (sum + patternByte(i)) >>> 0;
  return sum;
}

type Unary = (call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => void;

const handlers: Record<MethodName, Unary> = {
  F(call, cb) {
    if (call.request.length !== 4) {
      cb({ code: status.INVALID_ARGUMENT, details: 'F expects a 4-byte uint32 size' });
      return;
    }
    cb(null, patternBuffer(call.request.readUInt32LE(0)));
  },
  G(call, cb) {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32LE(call.request.length >>> 0, 0);
    out.writeUInt32LE(sparseChecksum(call.request), 4);
    cb(null, out);
  },
  Noop(call, cb) {
    cb(null, call.request);
  },
};

async function main(): Promise<void> {
  serverFlowControlWindow(FLOW_CONTROL_WINDOW);
  const server = new Server(GRPC_OPTIONS);
  server.addService(rawService(), handlers);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  process.stdout.write(JSON.stringify({ port }) + '\n');
  // The parent holds our stdin open; EOF means it went away, so never outlive it.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
