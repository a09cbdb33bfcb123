/**
 * OPFS spill throughput in Chromium: OpfsSpill (a worker with sync access
 * handles) against the main thread's async OPFS API, for whole objects and
 * random 1 MiB chunk reads. The figures in browser/opfs-spill.ts come from here.
 *
 *   node test/bench/opfs-spill.ts [sizeMiB=64] [reads=64]
 *
 * A profile on disk, as people browse with; OFF_THE_RECORD=1 for Playwright's
 * default context (OPFS in the browser process's memory).
 */
import { openFixture } from '../browser/fixtures/isolated-page.ts'
import type { OpfsFigure } from '../browser/fixtures/opfs-bench-page.ts'

const sizeMiB = Number(process.argv[2] ?? 64)
const reads = Number(process.argv[3] ?? 64)

const persistent = process.env.OFF_THE_RECORD === undefined
const fixture = await openFixture('opfs-bench.html', { persistent })
try {
  await fixture.page.waitForFunction(() => typeof window.opfsBench === 'function', undefined, { timeout: 10_000 })
  const figures: OpfsFigure[] = await fixture.page.evaluate(async ([s, r]) => await window.opfsBench(s, r), [sizeMiB, reads] as const)
  console.log(`Chromium ${fixture.version}${persistent ? '' : ' (off the record)'}, object ${sizeMiB} MiB, ${reads} random reads`)
  for (const f of figures) console.log(`${f.method.padEnd(36)} ${f.op.padEnd(36)} ${String(f.mbps).padStart(6)} MB/s ${String(f.msEach).padStart(8)} ms each`)
  console.log(`bench-result ${JSON.stringify({ name: 'opfs-spill', figures })}`)
} finally {
  await fixture.close()
}
