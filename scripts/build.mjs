#!/usr/bin/env node
// Builds what the published package runs (plain JavaScript, not TypeScript:
// Node does not strip types under node_modules). npm runs it as `prepare`: on
// `npm install` in a clone, on `npm pack` and `npm publish`, and when a project
// installs refmesh from git (only `prepare` runs there, not `prepack`).
//
//   dist/{core,node,browser,examples}  JS + .d.ts (tsc -p tsconfig.build.json, incremental)
//   dist/page                          the mesh page `refmesh peer --page-port` serves (Vite)
//
// Plain .mjs so it runs on any Node npm runs scripts with; sources stay .ts
// and run directly under type stripping during development.
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DIST = join(ROOT, 'dist')
const require = createRequire(import.meta.url)

function fail (message) {
  console.error(`refmesh build: ${message}`)
  process.exit(1)
}

let tsc
try {
  tsc = require.resolve('typescript/bin/tsc')
} catch {
  // `npm install --omit=dev` in a clone: nothing to build with, and nothing needs dist/ there.
  console.error('refmesh build: typescript is not installed (dev dependency); skipping the build')
  process.exit(0)
}

const started = performance.now()
const result = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' })
// tsconfig.build.json has noCheck: type errors are `npm test`'s to report (tsc --noEmit),
// and must not fail `npm install` in a clone. Status 2 would be errors with output emitted.
if (result.status === 2) console.error('refmesh build: tsc reported errors (above); the JavaScript was emitted anyway')
else if (result.status !== 0) fail(`tsc exited with ${result.status ?? result.signal}`)

// tsc rewrites import specifiers, not the `new URL('./x.ts', import.meta.url)`
// that locate worker scripts and child processes. Bundlers need those as
// literals, so the compiled files name the compiled modules.
const URL_OF_TS = /new URL\((['"])(\.\.?\/[^'"]+)\.ts\1, import\.meta\.url\)/g
async function * jsFiles (dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) { if (entry.name !== 'page') yield * jsFiles(path) } else if (entry.name.endsWith('.js')) yield path
  }
}
for await (const file of jsFiles(DIST)) {
  const code = await readFile(file, 'utf8')
  const rewritten = code.split('\n').map(line => /^\s*(\*|\/\/)/.test(line)
    ? line // a comment's example
    : line.replace(URL_OF_TS, (_, quote, stem) => {
      if (!existsSync(join(dirname(file), `${stem}.js`))) fail(`${file} locates ${stem}.ts, which was not compiled (add it to tsconfig.build.json "files")`)
      return `new URL(${quote}${stem}.js${quote}, import.meta.url)`
    })).join('\n')
  if (rewritten !== code) await writeFile(file, rewritten)
}
console.error(`refmesh build: dist/ compiled in ${Math.round(performance.now() - started)} ms`)

// The installed package has no Vite and no sources to build the page from, so it ships it.
const pageStarted = performance.now()
const { build } = await import('vite')
await build({ configFile: join(ROOT, 'vite.config.ts'), logLevel: 'warn' })
console.error(`refmesh build: dist/page built in ${Math.round(performance.now() - pageStarted)} ms`)
