/**
 * Builds the mesh page (dist/browser) with Vite when it is missing or older
 * than its sources, so tests and benchmarks always serve the code they test.
 * A build takes about a second; an up-to-date page costs a few stat calls.
 */
import { readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { logger } from '@libp2p/logger'

const log = logger('refmesh:page-build')

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const OUT = join(ROOT, 'dist', 'browser')
/** Everything the bundle is made from. */
const SOURCES = ['browser', 'core', 'examples/mapreduce.ts', 'vite.config.ts', 'package-lock.json']

/** The newest modification time under `path` (a file or a folder). */
async function newest (path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined)
  if (info === undefined) return 0
  if (!info.isDirectory()) return info.mtimeMs
  let latest = info.mtimeMs
  for (const entry of await readdir(path)) latest = Math.max(latest, await newest(join(path, entry)))
  return latest
}

export async function pageIsStale (): Promise<boolean> {
  const built = (await stat(join(OUT, 'index.html')).catch(() => undefined))?.mtimeMs
  if (built === undefined) return true
  for (const source of SOURCES) if (await newest(join(ROOT, source)) > built) return true
  return false
}

/** Builds dist/browser unless it is up to date; returns true if it built. */
export async function ensurePageBuilt (): Promise<boolean> {
  if (!await pageIsStale()) return false
  const { build } = await import('vite')
  // Build beside the page and swap it in, so a server never sees half a page
  // and two processes building at once do not write into one folder.
  const tmp = join(ROOT, 'dist', `.browser-${process.pid}-${Date.now()}`)
  const started = performance.now()
  try {
    await build({ configFile: join(ROOT, 'vite.config.ts'), logLevel: 'warn', build: { outDir: tmp, emptyOutDir: true } })
    const old = `${tmp}-old`
    await rename(OUT, old).catch(() => {})
    try {
      await rename(tmp, OUT)
    } catch (err) {
      // Another process put a fresh page there first: theirs is as good as ours.
      log('could not move the page into place (%s); keeping the one there', (err as Error).message)
    }
    await rm(old, { recursive: true, force: true })
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  log('built the page in %d ms', Math.round(performance.now() - started))
  return true
}
