// gRPC pass-by-value baseline: the same F -> G chain refmesh does by reference,
// but with every byte of x travelling server -> caller -> server.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import type { Client, ClientUnaryCall, ServiceError } from '@grpc/grpc-js';
import { GRPC_OPTIONS, patternBuffer, patternChecksum, rawService } from './grpc-server.ts';
import type { MethodName } from './grpc-server.ts';

export interface GrpcBaselineFigures {
  chainMs: number;
  chainCallerBytes: number;
  smallP50Us: number;
  smallCallsPerSec: number;
}

export interface GrpcBaselineOptions {
  chainBytes: number;
  chainRuns: number;
  smallCalls: number;
  inflight: number;
  signal?: AbortSignal;
}

const SERVER_PATH = fileURLToPath(new URL('./grpc-server.ts', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;
/** Both sides of bench:chain use these: the same warm-up and the same window. */
export const THROUGHPUT_WINDOW_MS = 3_000;
export const SMALL_WARMUP = 500;
export const CONCURRENT_WARMUP_CALLS = 2_000;
const SMALL_PAYLOAD = 100;

type UnaryMethod = (req: Buffer, cb: (err: ServiceError | null, res?: Buffer) => void) => ClientUnaryCall;

function waitForPort(child: ChildProcess, signal?: AbortSignal): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const cleanup = (): void => {
      clearTimeout(timer);
      lines.close();
      child.off('exit', onExit);
      child.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number | null, sig: string | null): void =>
      fail(new Error(`grpc-server exited before binding (code ${code}, signal ${sig})`));
    const onError = (err: Error): void => fail(err);
    const onAbort = (): void => fail(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    const timer = setTimeout(() => fail(new Error(`grpc-server did not report a port within ${STARTUP_TIMEOUT_MS} ms`)), STARTUP_TIMEOUT_MS);
    lines.on('line', (line) => {
      try {
        const { port } = JSON.parse(line) as { port?: unknown };
        if (typeof port !== 'number') return;
        cleanup();
        resolve(port);
      } catch {
        // Not our JSON line; keep waiting.
      }
    });
    child.once('exit', onExit);
    child.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.stdin?.end();
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function runGrpcBaseline(opts: GrpcBaselineOptions): Promise<GrpcBaselineFigures> {
  const { chainBytes, chainRuns, smallCalls, inflight, signal } = opts;
  signal?.throwIfAborted();

  const child = spawn(process.execPath, [SERVER_PATH], { stdio: ['pipe', 'pipe', 'inherit'] });
  let client: Client | undefined;
  try {
    const port = await waitForPort(child, signal);

    let callerBytes = 0;
    const Ctor = makeGenericClientConstructor(rawService((n) => (callerBytes += n)), 'Raw');
    const c = new Ctor(`127.0.0.1:${port}`, credentials.createInsecure(), GRPC_OPTIONS);
    client = c;
    await new Promise<void>((resolve, reject) =>
      c.waitForReady(Date.now() + STARTUP_TIMEOUT_MS, (err) => (err ? reject(err) : resolve())),
    );

    const call = (method: MethodName, req: Buffer): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        (c[method] as UnaryMethod).call(c, req, (err, res) => (err || !res ? reject(err ?? new Error('empty response')) : resolve(res)));
      });

    const sizeReq = Buffer.allocUnsafe(4);
    sizeReq.writeUInt32LE(chainBytes, 0);
    const expectedSum = patternChecksum(chainBytes);
    const chain = async (): Promise<void> => {
      const x = await call('F', sizeReq);
      const r = await call('G', x);
      if (r.readUInt32LE(0) !== chainBytes) throw new Error(`G saw ${r.readUInt32LE(0)} bytes, expected ${chainBytes}`);
      if (r.readUInt32LE(4) !== expectedSum) throw new Error('G checksum mismatch');
    };

    await chain(); // warm-up: JIT, HTTP/2 flow-control windows, allocator
    const chainTimes: number[] = [];
    let chainCallerBytes = 0;
    for (let i = 0; i < chainRuns; i++) {
      signal?.throwIfAborted();
      const before = callerBytes;
      const t0 = performance.now();
      await chain();
      chainTimes.push(performance.now() - t0);
      chainCallerBytes = callerBytes - before;
    }

    const payload = patternBuffer(SMALL_PAYLOAD);
    const inFlight = async (maxCalls: number, windowMs: number): Promise<{ completed: number; ms: number }> => {
      let started = 0;
      let completed = 0;
      const tStart = performance.now();
      const deadline = tStart + windowMs;
      const worker = async (): Promise<void> => {
        while (started < maxCalls && performance.now() < deadline && !signal?.aborted) {
          started++;
          await call('Noop', payload);
          completed++;
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, inflight) }, worker));
      signal?.throwIfAborted();
      return { completed, ms: performance.now() - tStart };
    };

    for (let i = 0; i < SMALL_WARMUP; i++) await call('Noop', payload);
    await inFlight(CONCURRENT_WARMUP_CALLS, THROUGHPUT_WINDOW_MS);
    const lat: number[] = [];
    for (let i = 0; i < smallCalls; i++) {
      if ((i & 255) === 0) signal?.throwIfAborted();
      const t0 = performance.now();
      const echo = await call('Noop', payload);
      lat.push((performance.now() - t0) * 1000);
      if (echo.length !== SMALL_PAYLOAD) throw new Error(`Noop echoed ${echo.length} bytes`);
    }
    // A fixed window, no call cap: a faster side must not end its window early.
    const { completed, ms } = await inFlight(Infinity, THROUGHPUT_WINDOW_MS);

    return {
      chainMs: median(chainTimes),
      chainCallerBytes,
      smallP50Us: median(lat),
      smallCallsPerSec: completed / (ms / 1000),
    };
  } finally {
    client?.close();
    await stopServer(child);
  }
}

if (import.meta.main) {
  const figures = await runGrpcBaseline({ chainBytes: 64 * 1024 * 1024, chainRuns: 3, smallCalls: 2000, inflight: 64 });
  console.log(JSON.stringify(figures));
}
