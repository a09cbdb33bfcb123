/** refmesh share and refmesh fetch: a file from one process to another by name, and clear failures. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { main, parseFetchArgs, parseShareArgs } from '../node/cli.ts'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../node/bin/refmesh.js', import.meta.url))

async function refmesh (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { timeout: 45_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

interface Sharer {
  peer: string
  addrs: string[]
  size: number
  child: ChildProcess
  exited: Promise<number | null>
  stderr: () => string
}

/** `refmesh share <file> --name <name> --json`, ready once it prints its JSON line. */
async function share (file: string, name: string): Promise<Sharer> {
  const child = spawn(process.execPath, [BIN, 'share', file, '--name', name, '--json', '--stop-on-stdin-end'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`share not ready within 30 s:\n${stderr}`)), 30_000)
    createInterface({ input: child.stdout! }).once('line', l => { clearTimeout(timer); resolve(l) })
    void exited.then(code => { clearTimeout(timer); reject(new Error(`share exited with ${code}:\n${stderr}`)) })
  }).catch((err: unknown) => { child.kill('SIGKILL'); throw err })
  const info = JSON.parse(line) as { peer: string, addrs: string[], name: string, size: number }
  return { ...info, child, exited, stderr: () => stderr }
}

async function stopSharer (s: Sharer): Promise<number | null> {
  // Like refmesh peer, a sharer spawned with a pipe on stdin stops when it closes.
  s.child.stdin!.end()
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 10_000)
  const code = await s.exited
  clearTimeout(timer)
  return code
}

test('a file shared by name in one process is fetched byte for byte by another; an unknown name or a dead peer fails clearly', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-share-'))
  try {
    const input = join(dir, 'data.bin')
    // 12 MiB and a bit: twelve whole chunks and a short last one.
    const bytes = randomBytes(12 * 2 ** 20 + 12_345)
    await writeFile(input, bytes)
    const sharer = await share(input, 'test/data.bin')
    let stopped = false
    try {
      assert.equal(sharer.size, bytes.byteLength)
      assert.match(sharer.stderr(), /reading data\.bin: 100% \(12\.0 MiB of 12\.0 MiB\)/)
      const addr = sharer.addrs[0]

      const out = join(dir, 'out.bin')
      const fetched = await refmesh('fetch', 'test/data.bin', out, '--bootstrap', addr)
      assert.equal(fetched.code, 0, fetched.stderr)
      assert.ok(bytes.equals(await readFile(out)), 'the fetched file equals the shared one')
      // Not a terminal: plain percentage lines, ending at 100%.
      assert.match(fetched.stderr, /fetching test\/data\.bin: 100% \(12\.0 MiB of 12\.0 MiB\)\n$/)
      assert.match(fetched.stdout, new RegExp(`fetched "test/data.bin": ${bytes.byteLength} bytes`))
      assert.match(fetched.stdout, new RegExp(`chunks received from 1 peer\\(s\\), 12\\.0 MiB on the wire:\n  ${sharer.peer} +12\\.0 MiB  \\(the publisher\\)\n$`))

      const missing = await refmesh('fetch', 'no/such/name', join(dir, 'missing.bin'), '--bootstrap', addr, '--timeout', '2')
      assert.equal(missing.code, 1)
      assert.match(missing.stderr, /refmesh: fetch: no peer in the mesh publishes "no\/such\/name" \(looked for 2 s/)
      assert.deepEqual((await readdir(dir)).sort(), ['data.bin', 'out.bin'], 'a failed fetch leaves no file behind')

      assert.equal(await stopSharer(sharer), 0)
      stopped = true
      const dead = await refmesh('fetch', 'test/data.bin', join(dir, 'dead.bin'), '--bootstrap', addr)
      assert.equal(dead.code, 1)
      assert.equal(dead.stderr, `refmesh: --bootstrap ${addr}: nothing listens there (connection refused); check the port, and that the peer is running\n`)
      assert.deepEqual((await readdir(dir)).sort(), ['data.bin', 'out.bin'])
    } finally {
      if (!stopped) await stopSharer(sharer)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

/** Runs the command in this process (a new process costs seconds here), with its stderr captured. */
async function inProcess (...args: string[]): Promise<{ code: number, stderr: string }> {
  // A share that got as far as serving would re-execute this process with glibc tuned.
  process.env.REFMESH_NO_MALLOC_TUNING = '1'
  let stderr = ''
  const write = process.stderr.write
  process.stderr.write = ((chunk: string | Uint8Array) => { stderr += chunk.toString(); return true }) as typeof process.stderr.write
  try {
    return { code: await main(args), stderr }
  } finally {
    process.stderr.write = write
  }
}

test('share and fetch: bad arguments get one line naming them and exit 2; a missing file, 1', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['share', '--name', 'x'], /share needs a file/],
    [['share', 'file.bin'], /share needs --name <name>/],
    [['share', 'a', 'b', '--name', 'x'], /unexpected argument "b"/],
    [['share', 'a', '--name', 'x', '--bootstrap', 'localhost:4001'], /is not a multiaddr/],
    [['fetch', 'name', 'out'], /fetch needs --bootstrap/],
    [['fetch', 'name', '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/x'], /fetch needs a name and an output file/],
    [['fetch', 'name', 'out', '--bootstrap', '/ip4/127.0.0.1/tcp/1', '--timeout', 'soon'], /--timeout must be a number of seconds/],
    [['fetch', 'name', 'out', '--bootstrap', '/ip4/127.0.0.1/tcp/1', '--mesh-secret', ''], /--mesh-secret must not be empty/]
  ]
  for (const [args, message] of cases) {
    const r = await inProcess(...args)
    assert.equal(r.code, 2, `refmesh ${args.join(' ')} exited ${r.code}`)
    assert.match(r.stderr, message)
    assert.match(r.stderr, new RegExp(`^refmesh: [^\n]* \\(refmesh ${args[0]} --help lists the options\\)\n$`))
  }
  assert.equal(parseFetchArgs(['n', 'o', '--bootstrap', '/ip4/127.0.0.1/tcp/1', '--mesh-secret', 's3cret']).secret, 's3cret')
  assert.equal(parseShareArgs(['f', '--name', 'n', '--mesh-secret', 's3cret']).secret, 's3cret')
  const absent = await inProcess('share', join(tmpdir(), 'refmesh-no-such-file'), '--name', 'x')
  assert.equal(absent.code, 1)
  assert.match(absent.stderr, /share: cannot read ".*refmesh-no-such-file": ENOENT/)
})
