/**
 * refmesh as a stranger gets it: `npm pack` (which runs the build), then, in a
 * temporary folder outside the repository, `npm install` of the tarball (from
 * the npm cache) and of what the user's own project uses (vite, typescript,
 * @types/node), and each way in: a plain .mjs Node script, a TypeScript
 * consumer type-checked against the shipped declarations, `npx refmesh peer`,
 * and a Vite app whose Chromium tab joins that peer.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, extname, join, normalize, sep } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright'
import type { Browser } from 'playwright'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURE = fileURLToPath(new URL('./fixtures/package-consumer/', import.meta.url))
/** The packed tarball's limit, stated in README ("Use refmesh in your project"). */
const MAX_TARBALL_BYTES = 600 * 1024
const MIB4 = 4 * 1024 * 1024
/** Node 24 (the pinned one) first on PATH, as on a user's machine with a supported Node. */
const ENV = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command to its end (or kills it at the deadline) and returns its output. */
async function run (cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  const child = spawn(cmd, args, { cwd, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  try {
    const code = await new Promise<number | null>((resolve, reject) => { child.on('error', reject).on('close', resolve) })
    return { code, stdout, stderr }
  } finally {
    clearTimeout(timer)
  }
}

function ok (what: string, r: Run): Run {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`)
  return r
}

/** A static server for the built app, crossOriginIsolated as refmesh/vite's dev and preview servers make it. */
async function serveStatic (dir: string): Promise<{ server: Server, url: string }> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript' }
  const server = createServer((req, res) => {
    const path = normalize(join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)))
    const file = path.endsWith(sep) ? join(path, 'index.html') : path
    if (!file.startsWith(dir)) { res.writeHead(404).end(); return }
    readFile(file).then(body => {
      res.writeHead(200, {
        'Content-Type': types[extname(file)] ?? 'application/octet-stream',
        'Cross-Origin-Opener-Policy': 'same-origin',
        'Cross-Origin-Embedder-Policy': 'require-corp'
      }).end(body)
    }, () => { res.writeHead(404).end() })
  })
  await new Promise<void>(resolve => { server.listen(0, '127.0.0.1', resolve) })
  const address = server.address()
  assert.ok(address !== null && typeof address === 'object')
  return { server, url: `http://127.0.0.1:${address.port}` }
}

let work: string
let app: string
let tarball: { filename: string, size: number, files: Array<{ path: string }> }
let peer: ChildProcess | undefined
let peerInfo: { peer: string, addrs: string[], page: string }
let peerErr = ''
let installWarnings = ''
let typeCheck: Promise<Run> | undefined
let viteBuild: Promise<Run> | undefined

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'refmesh-package-'))
  app = join(work, 'app')
  const packed = ok('npm pack', await run('npm', ['pack', '--json', '--pack-destination', work], ROOT, 300_000))
  tarball = (JSON.parse(packed.stdout) as Array<typeof tarball>)[0]

  await cp(FIXTURE, app, { recursive: true })
  const version = async (pkg: string): Promise<string> => (JSON.parse(await readFile(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'refmesh-user', private: true, type: 'module' }))
  const installed = ok('npm install', await run('npm', ['install', '--prefer-offline', join(work, tarball.filename),
    `vite@${await version('vite')}`, `typescript@${await version('typescript')}`, `@types/node@${await version('@types/node')}`], app, 300_000))
  installWarnings = installed.stderr
  // The type check and the app's build only read the installed package: they run while the peer starts and the script runs.
  typeCheck = run(process.execPath, [join(app, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', '.', '--pretty', 'false'], app, 240_000)
  viteBuild = run(process.execPath, [join(app, 'node_modules/vite/bin/vite.js'), 'build'], app, 240_000)

  // (3) the peer that the script and the tab join, started as README says.
  peer = spawn('npx', ['refmesh', 'peer', '--json', '--module', './functions.mjs', '--page-port', '0'], { cwd: app, env: ENV, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  peer.stderr?.setEncoding('utf8').on('data', (s: string) => { peerErr += s })
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`npx refmesh peer printed nothing within 60 s: ${peerErr}`)) }, 60_000)
    createInterface({ input: peer?.stdout as NodeJS.ReadableStream }).once('line', l => { clearTimeout(timer); resolve(l) })
    peer?.once('exit', code => { clearTimeout(timer); reject(new Error(`npx refmesh peer exited with ${code}: ${peerErr}`)) })
  })
  peerInfo = JSON.parse(line) as typeof peerInfo
})

after(async () => {
  await Promise.allSettled([typeCheck, viteBuild]) // started in before(); never left running
  if (peer !== undefined && peer.exitCode === null) {
    const exited = new Promise(resolve => peer?.once('exit', resolve))
    // SIGTERM stops a peer (stdin does not); to the process group, as npx runs the bin in a child of its own.
    const group = -(peer.pid as number)
    process.kill(group, 'SIGTERM')
    const timer = setTimeout(() => { try { process.kill(group, 'SIGKILL') } catch {} }, 10_000)
    await exited
    clearTimeout(timer)
  }
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

test('the tarball holds what users run, nothing of test/, and stays under the stated size', () => {
  const paths = tarball.files.map(f => f.path)
  assert.deepEqual(paths.filter(p => p.startsWith('test/') || p.includes('/test/')), [])
  assert.deepEqual(paths.filter(p => p.endsWith('.ts') && !p.endsWith('.d.ts')), [], 'no TypeScript sources: Node does not strip types under node_modules')
  for (const needed of ['dist/node/index.js', 'dist/node/index.d.ts', 'dist/node/bin/refmesh.js', 'dist/browser/mesh.js', 'dist/browser/vite-plugin.js', 'dist/core/index.js', 'dist/page/index.html', 'README.md', 'core/PROTOCOL.md', 'core/protocol/refmesh.proto']) {
    assert.ok(paths.includes(needed), `${needed} is in the tarball`)
  }
  assert.ok(tarball.size < MAX_TARBALL_BYTES, `${tarball.size} bytes < ${MAX_TARBALL_BYTES}`)
})

test('installing and running it on a supported Node warns of no engine mismatch', () => {
  assert.doesNotMatch(installWarnings, /EBADENGINE/, installWarnings)
  assert.doesNotMatch(peerErr, /EBADENGINE|npm warn/, peerErr)
})

test('npx refmesh peer --page-port serves the mesh page shipped in the package', async () => {
  const res = await fetch(`${peerInfo.page}/`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('cross-origin-embedder-policy'), 'require-corp')
  const html = await res.text()
  const script = /<script type="module"[^>]* src="([^"]+)"/.exec(html)?.[1]
  assert.ok(script !== undefined, html)
  assert.equal((await fetch(new URL(script, `${peerInfo.page}/`))).status, 200)
  const mesh = await (await fetch(`${peerInfo.page}/mesh.json`)).json() as { bootstrap?: string[] }
  assert.ok(JSON.stringify(mesh).includes(peerInfo.peer), JSON.stringify(mesh))
})

test('a plain .mjs script: two meshes, a call, 4 MiB by reference, and a call on the npx peer', async () => {
  const r = ok('node node-consumer.mjs', await run(process.execPath, ['node-consumer.mjs', peerInfo.addrs[0]], app, 120_000))
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>
  assert.equal(out.checksum, out.expected, 'the callee read the 4 MiB argument')
  assert.equal(out.pulledBytes, MIB4)
  assert.equal(out.pulledMatches, true)
  assert.equal(out.cliPeer, peerInfo.peer)
  assert.equal(out.cliWhoami, peerInfo.peer, 'the call ran on the peer npx started')
  assert.equal(out.cliChecksum, out.expected)
})

test('TypeScript: fn<typeof f>(name).remote(...) takes the right argument types and rejects a wrong one', async () => {
  // One tsc run over both files (tsc is slow here; started in before()): typed.ts must be clean, typed-wrong.ts must fail exactly where the string goes.
  assert.ok(typeCheck !== undefined)
  const r = await typeCheck
  const errors = r.stdout.split('\n').filter(l => l.includes('error TS'))
  assert.deepEqual(errors.filter(e => !e.startsWith('typed-wrong.ts')), [], `typed.ts type-checks against the shipped declarations:\n${r.stdout}${r.stderr}`)
  assert.equal(errors.length, 1, r.stdout + r.stderr)
  assert.match(errors[0], /^typed-wrong\.ts\(10,\d+\): error TS2345: Argument of type 'string' is not assignable to parameter of type 'number \| Ref<number>'/)
  assert.notEqual(r.code, 0)
})

test('a Vite app imports refmesh/browser; its Chromium tab joins the npx peer, calls there and pulls 4 MiB', async () => {
  assert.ok(viteBuild !== undefined)
  const built = ok('vite build', await viteBuild)
  // Vite swaps a `node:` import for an empty stub and only warns: refmesh/browser must reach none.
  assert.doesNotMatch(built.stdout + built.stderr, /externalized for browser compatibility|node:/, built.stdout + built.stderr)
  const bundle = await readFile(join(app, 'web-dist', 'index.html'), 'utf8')
  assert.match(bundle, /<script type="module"/)
  const { server, url } = await serveStatic(join(app, 'web-dist') + sep)
  let browser: Browser | undefined
  try {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium' })
    const page = await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', err => { errors.push(String(err)) })
    const ws = peerInfo.addrs.find(a => a.includes('/ws/'))
    assert.ok(ws !== undefined, `the peer listens on WebSockets: ${peerInfo.addrs.join(' ')}`)
    await page.goto(`${url}/?peer=${encodeURIComponent(ws)}`)
    const outcome = await page.evaluate(async () => await (window as unknown as { outcome: Promise<Record<string, unknown>> }).outcome)
    assert.equal(outcome.error, undefined, `${String(outcome.error)}\n${errors.join('\n')}`)
    assert.equal(outcome.whoami, peerInfo.peer, 'the call ran on the npx peer')
    assert.equal(outcome.bytes, MIB4)
    let expected = 0
    for (let i = 0; i < MIB4; i++) expected = (expected * 33 + ((i * 31 + 7) & 0xff)) >>> 0
    assert.equal(outcome.checksum, expected, 'the tab pulled the right 4 MiB')
  } finally {
    await browser?.close()
    await new Promise(resolve => server.close(resolve))
  }
})
