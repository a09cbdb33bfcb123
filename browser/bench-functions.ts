/**
 * Functions every peer of a browser test or benchmark offers, tabs and Node
 * peers alike: make bytes, read an object and time it, pull raw bytes and time
 * it. The puller always measures, from the start of its request to the last
 * byte, so refmesh and the raw stream are timed the same way.
 */
import type { Mesh } from '../core/mesh.ts'
import type { Ref } from '../core/ref.ts'
import { handleRawPulls, rawPull } from './raw-stream.ts'

/** Cheap test bytes: every 4096th byte is set. */
export function pattern (n: number, seed = 0): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i += 4096) out[i] = (i / 4096 + seed) & 255
  return out
}

export function checksum (x: Uint8Array): number {
  let s = 0
  for (let i = 0; i < x.length; i += 4096) s = (s * 31 + x[i]) >>> 0
  return s
}

export interface Timed { ms: number, bytes: number }

export type BenchMake = (n: number, seed?: number) => Uint8Array
/** Reads the object behind `ref` here (pulling it if it lives elsewhere). */
export type BenchTimedGet = (ref: Ref<Uint8Array>) => Timed & { checksum: number }
export type BenchRawPull = (peer: string, bytes: number) => Timed

export async function registerBenchFunctions (mesh: Mesh): Promise<void> {
  await handleRawPulls(mesh.libp2p)
  mesh.register('bench.make', (n: number, seed = 0) => pattern(n, seed))
  mesh.register('bench.timedGet', async (ref: Ref<Uint8Array>) => {
    const started = performance.now()
    const value = await mesh.get(ref)
    const ms = performance.now() - started
    return { ms, bytes: value.byteLength, checksum: checksum(value) }
  })
  mesh.register('bench.rawPull', async (peer: string, bytes: number) => await rawPull(mesh.libp2p, peer, bytes))
}
