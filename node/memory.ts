/**
 * What a Node peer does to keep its resident memory near its store's capacity.
 *
 * - Buffers the store drops are only returned to the system once V8 collects
 *   them; the store asks for a collection after dropping a quarter of its
 *   capacity (see StoreInit.reclaim), through a `gc` function this module gets
 *   from V8 at run time.
 * - glibc raises its mmap threshold each time a large block is freed, after
 *   which multi-megabyte buffers come from the heap and freed ones stay in the
 *   process (RSS stays at its peak). Pinning the threshold with
 *   MALLOC_MMAP_THRESHOLD_ keeps every large buffer its own mapping, unmapped
 *   when freed. The variable only works from process start, so `refmesh peer`
 *   re-executes itself with it (same pid), and local clusters spawn with it.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export const MALLOC_ENV: Record<string, string> = { MALLOC_MMAP_THRESHOLD_: String(128 * 1024) }

let gc: (() => void) | undefined

/** A full garbage collection, now. */
export function collectGarbage (): void {
  if (gc === undefined) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
  }
  gc()
}

/**
 * On Linux, replaces this process with itself plus MALLOC_ENV unless it is
 * already set (or REFMESH_NO_MALLOC_TUNING is). Returns only when it did not.
 */
export function execWithMallocTuning (): void {
  if (process.platform !== 'linux' || typeof process.execve !== 'function') return
  if (Object.keys(MALLOC_ENV).every(k => process.env[k] !== undefined) || process.env.REFMESH_NO_MALLOC_TUNING !== undefined) return
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, ...MALLOC_ENV })
}

/** A buffer of `size` bytes that are about to be overwritten in whole: not zeroed first. */
export function allocateUninitialized (size: number): Uint8Array {
  return new Uint8Array(Buffer.allocUnsafeSlow(size).buffer, 0, size)
}
