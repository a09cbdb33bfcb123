/**
 * Builds the mesh page (dist/page) with Vite when it is missing or older
 * than its sources, so tests and benchmarks always serve the code they test.
 * A build takes about a second; an up-to-date page costs a few stat calls.
 * An installed package has no sources (and no Vite): it serves the page it
 * shipped with, built by `npm pack` (scripts/build.mjs).
 */
import { readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { RefmeshError } from '../core/errors.ts'
import { PACKAGE_ROOT, PAGE_DIR } from './package-paths.ts'

const log = logger('refmesh:page-build')

const ROOT = PACKAGE_ROOT
const OUT = PAGE_DIR
/** Present in a clone, absent from the published package. */
const CONFIG = join(ROOT, 'vite.config.ts')
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
  // An installed package: its page is what it shipped (core/ is there too, for PROTOCOL.md, and newer).
  if (await stat(CONFIG).catch(() => undefined) === undefined) return false
  for (const source of SOURCES) if (await newest(join(ROOT, source)) > built) return true
  return false
}

/** The page was neither shipped nor buildable here (an installed package that lost dist/page). */
export class PageMissingError extends RefmeshError {
  override name = 'PageMissingError'
}

/** Builds dist/page unless it is up to date; returns true if it built. */
export async function ensurePageBuilt (): Promise<boolean> {
  if (!await pageIsStale()) return false
  if (await stat(CONFIG).catch(() => undefined) === undefined) {
    throw new PageMissingError(`the mesh page is not in ${OUT} and this package has no sources to build it from (reinstall refmesh, or run \`npm run build\` in a clone)`)
  }
  const { build } = await import('vite')
  // Build beside the page and swap it in, so a server never sees half a page
  // and two processes building at once do not write into one folder.
  const tmp = join(ROOT, 'dist', `.page-${process.pid}-${Date.now()}`)
  const started = performance.now()
  try {
    await build({ configFile: CONFIG, logLevel: 'warn', build: { outDir: tmp, emptyOutDir: true } })
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
