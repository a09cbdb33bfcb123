/**
 * refmesh run like a service: a peer started with README's systemd command
 * line and a sharer, both with stdin from /dev/null, serve until SIGTERM and
 * exit 0; `refmesh demo` and `npm start` stop every process they started on
 * SIGTERM; each mistake a volunteer can make gets one line naming the input.
 *
 * One peer and one sharer serve every test of the file: they start first,
 * the error and demo tests run while they serve, and the last test checks
 * that they still serve 10 s on, then stops them.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { main } from '../node/cli.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'node', 'bin', 'refmesh.js')
const SECRET = 'service-test-secret'
const SERVE_MS = 10_000
const STOP_MS = 10_000

interface Service {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
}

/** Starts `refmesh ...args` with stdin from /dev/null (as systemd's StandardInput=null does), ready when `ready` matches its stdout. */
async function startService (args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<Service> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`refmesh ${args[0]} not ready within 90 s:\n${stdout}\n${stderr}`)), 90_000)
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString()
      if (ready.test(stdout)) { clearTimeout(timer); resolve() }
    })
    void exited.then(code => { clearTimeout(timer); reject(new Error(`refmesh ${args[0]} exited with ${code}:\n${stdout}\n${stderr}`)) })
  }).catch((err: unknown) => { child.kill('SIGKILL'); throw err })
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/** README's systemd ExecStart, its paths moved to `dir` and its port to a free one on loopback. */
async function readmeCommandLine (dir: string): Promise<string[]> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const line = /^ExecStart=(\S+) (.*)$/m.exec(readme)
  assert.ok(line !== null, 'README has a systemd unit with an ExecStart line')
  assert.match(line[1], /\/refmesh$/)
  assert.match(readme, /^StandardInput=null$/m)
  assert.match(readme, /^KillSignal=SIGTERM$/m)
  assert.match(readme, /^Restart=on-failure$/m)
  return line[2].split(' ').map(arg => arg.replace('/var/lib/refmesh', dir).replace(/^\/ip4\/0\.0\.0\.0\/tcp\/4001$/, '/ip4/127.0.0.1/tcp/0'))
}

/** Runs the command in this process (a new process costs seconds here), capturing what it prints. */
async function inProcess (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  // `refmesh peer` would re-execute this process with glibc tuned.
  process.env.REFMESH_NO_MALLOC_TUNING = '1'
  let stdout = ''
  let stderr = ''
  const [out, err] = [process.stdout.write, process.stderr.write]
  // The command writes strings; the test runner reports results on this process's stdout as bytes, and those must get through.
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof chunk !== 'string') return (out as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest)
    stdout += chunk
    return true
  }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string | Uint8Array) => { stderr += chunk.toString(); return true }) as typeof process.stderr.write
  try {
    return { code: await main(args), stdout, stderr }
  } finally {
    process.stdout.write = out
    process.stderr.write = err
  }
}

/** Every process below `pid`, from /proc. */
async function descendants (pid: number): Promise<number[]> {
  const parents = new Map<number, number>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // The command name, in parentheses, may hold spaces: the fields after it are fixed.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (Number.isInteger(ppid)) parents.set(Number(entry), ppid)
  }
  const found: number[] = []
  const walk = (p: number): void => { for (const [child, parent] of parents) if (parent === p) { found.push(child); walk(child) } }
  walk(pid)
  return found
}

const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** Sends SIGTERM to `target`, then expects every pid in `tree` gone within STOP_MS; returns target's exit code. */
async function terminateTree (target: Service, tree: number[]): Promise<number | null> {
  const sent = Date.now()
  target.child.kill('SIGTERM')
  const code = await Promise.race([target.exited, new Promise<'late'>(resolve => setTimeout(() => resolve('late'), STOP_MS).unref())])
  for (;;) {
    const left = tree.filter(alive)
    if (left.length === 0) break
    if (Date.now() - sent > STOP_MS) {
      for (const pid of left) process.kill(pid, 'SIGKILL')
      assert.fail(`still running ${STOP_MS / 1000} s after SIGTERM: ${left.join(', ')}\n${target.stderr()}`)
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  assert.notEqual(code, 'late', `exited within ${STOP_MS / 1000} s of SIGTERM`)
  return code as number | null
}

let dir: string
let peer: Service
let sharer: Service
let peerAddr: string
let sharerId: string
let servingSince: number
const shared = randomBytes(3 * 2 ** 20 + 777)

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'refmesh-service-'))
  await writeFile(join(dir, 'data.bin'), shared)
  // The secret as systemd's EnvironmentFile gives it.
  peer = await startService(await readmeCommandLine(dir), /join with:\n {2}--bootstrap (\S+)\n/, { REFMESH_MESH_SECRET: SECRET })
  peerAddr = /--bootstrap (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)\n/.exec(peer.stdout())![1]
  sharer = await startService(['share', join(dir, 'data.bin'), '--name', 'service/data.bin', '--bootstrap', peerAddr], /serving until/, { REFMESH_MESH_SECRET: SECRET })
  sharerId = /refmesh peer (\w+)\n/.exec(sharer.stdout())![1]
  servingSince = Date.now()
})

after(async () => {
  for (const s of [peer, sharer]) if (s !== undefined && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

test('each mistake a volunteer can make gets one line naming the input and what to do, and a non-zero status', async () => {
  const peerId = peerAddr.split('/p2p/')[1]
  const http = createServer((_req, res) => { res.end('not a peer') })
  await new Promise<void>(resolve => http.listen(0, '127.0.0.1', resolve))
  const httpPort = (http.address() as AddressInfo).port
  try {
    const cases: Array<[string[], number, RegExp]> = [
      [['status', '--bootstrap', '/ip4/127.0.0.1/tcp/notaport'], 2, /--bootstrap "\/ip4\/127\.0\.0\.1\/tcp\/notaport": "notaport" after \/tcp\/ is not a port number; write it like \/ip4\//],
      [['fetch', 'x', join(dir, 'x'), '--bootstrap', '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc'], 2, /"12D3KooWabc" after \/p2p\/ is not a peer id \(.*\); copy the whole address the peer printed/],
      [['status', '--bootstrap', `/ip4/127.0.0.1/tcp/${httpPort}/p2p/${peerId}`], 1, new RegExp(`--bootstrap /ip4/127\\.0\\.0\\.1/tcp/${httpPort}/p2p/\\w+: something answers there, but not a libp2p peer \\(an HTTP server or another service\\?\\); check the port`)],
      [['peer', '--listen', '/ip4/192.0.2.1/tcp/0'], 1, /--listen \/ip4\/192\.0\.2\.1\/tcp\/0: this machine has no address 192\.0\.2\.1 \(it has [^)]*127\.0\.0\.1[^)]*\); listen on one of those, or on 0\.0\.0\.0 for all/],
      [['status', '--bootstrap', peerAddr, '--mesh-secret', 'not-the-secret'], 1, /: that peer's mesh secret differs from this one's; check --mesh-secret or REFMESH_MESH_SECRET on both/],
      // Long enough for the connection and identify on a busy machine: the peer's protocols are what tell.
      [['status', '--bootstrap', peerAddr, '--timeout', '10'], 1, /: that peer is in a private mesh; give its secret with --mesh-secret or REFMESH_MESH_SECRET/],
      [['demo', '--maps', 'many'], 2, /demo: --maps must be a whole number from 1 to 1000, not "many" \(refmesh demo --help lists the options\)/]
    ]
    for (const [args, status, message] of cases) {
      const r = await inProcess(...args)
      assert.equal(r.code, status, `refmesh ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
      assert.match(r.stderr, /^refmesh: [^\n]+\n$/, `refmesh ${args.join(' ')}: one line, no stack trace`)
      assert.match(r.stderr, message)
    }
  } finally {
    http.close()
  }
})

test('a filtered port: the message says how long it waited', async (t) => {
  if (process.getuid?.() !== 0) { t.diagnostic('needs root for a network namespace; nothing to check'); return }
  // A namespace of its own whose firewall drops every packet to one port: the dial hears nothing back.
  const ns = `rm16-${process.pid}`
  const inNs = async (...cmd: string[]): Promise<void> => { await run('ip', ['netns', 'exec', ns, ...cmd]) }
  await run('ip', ['netns', 'add', ns])
  try {
    await inNs('ip', 'link', 'set', 'lo', 'up')
    await inNs('nft', 'add', 'table', 'inet', 'refmesh')
    await inNs('nft', 'add', 'chain', 'inet', 'refmesh', 'out', '{ type filter hook output priority 0; }')
    await inNs('nft', 'add', 'rule', 'inet', 'refmesh', 'out', 'tcp', 'dport', '4999', 'drop')
    const addr = `/ip4/127.0.0.1/tcp/4999/p2p/${peerAddr.split('/p2p/')[1]}`
    const r = await run('ip', ['netns', 'exec', ns, process.execPath, BIN, 'status', '--bootstrap', addr, '--timeout', '2'], { timeout: 60_000 }).then(() => assert.fail('status succeeded'), (err: { code: number, stderr: string }) => err)
    assert.equal(r.code, 1)
    assert.match(r.stderr, new RegExp(`^refmesh: --bootstrap ${addr}: no answer within 2\\.\\d s; the peer is down or unreachable, or a firewall drops the packets: check the address and that its port is open to this machine\\n$`))
  } finally {
    await run('ip', ['netns', 'del', ns])
  }
})

test('--help on every command exits 0 with that command\'s flags', async () => {
  for (const command of ['peer', 'status', 'share', 'fetch', 'demo']) {
    const r = await inProcess(command, '--help')
    assert.equal(r.code, 0, `refmesh ${command} --help`)
    assert.match(r.stdout, new RegExp(`^usage: refmesh ${command} `))
    assert.equal(r.stderr, '')
  }
  assert.match((await inProcess('demo', '--help')).stdout, /--serve/)
  assert.match((await inProcess('peer', '-h')).stdout, /--stop-on-stdin-end/)
})

/** `command args` with stdin from /dev/null; resolves once `ready(stdout)` holds. */
async function startProcess (command: string, args: string[], ready: (stdout: string, pid: number) => Promise<boolean>): Promise<Service> {
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  const deadline = Date.now() + 120_000
  while (!await ready(stdout, child.pid!)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      for (const pid of [child.pid!, ...await descendants(child.pid!)]) process.kill(pid, 'SIGKILL')
      assert.fail(`${command} ${args.join(' ')} ${child.exitCode !== null ? `exited with ${child.exitCode}` : 'not ready within 120 s'}:\n${stdout}\n${stderr}`)
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

test('refmesh demo (serving) and npm start (starting its peers), sent SIGTERM, stop every process they started within 10 s', async () => {
  const demoArgs = ['--maps', '2', '--shard-bytes', '64KiB']
  // One after the other: two demos at once starve each other's peers on a small machine.
  const demo = await startProcess(process.execPath, [BIN, 'demo', '--serve', ...demoArgs], async stdout => /Ctrl-C \(or SIGTERM\) stops it/.test(stdout))
  const demoTree = await descendants(demo.child.pid!)
  assert.equal(demoTree.length, 3, 'the demo runs three peer processes')
  assert.equal(await terminateTree(demo, [demo.child.pid!, ...demoTree]), 0, `the demo exits 0:\n${demo.stderr()}`)
  assert.match(demo.stderr(), /SIGTERM: stopping the peers/)
  assert.match(demo.stdout(), /every peer is stopped/)

  // npm as a volunteer runs it, stopped while the demo's peers start: npm passes SIGTERM
  // to the demo (its start script execs it), which stops the peers mid-start.
  const npm = await startProcess('npm', ['start', '--', ...demoArgs], async (stdout, pid) => /starting 3 peer processes/.test(stdout) && (await descendants(pid)).length >= 4)
  const npmTree = await descendants(npm.child.pid!)
  await terminateTree(npm, [npm.child.pid!, ...npmTree])
  assert.match(npm.stderr(), /SIGTERM: stopping the peers/)
})

test('the peer (README\'s systemd command line) and the sharer, stdin from /dev/null, serve 10 s on, then stop on SIGTERM with status 0', async () => {
  const wait = servingSince + SERVE_MS - Date.now()
  if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
  assert.ok(Date.now() - servingSince >= SERVE_MS)
  assert.equal(peer.child.exitCode, null, `the peer still runs:\n${peer.stderr()}`)
  assert.equal(sharer.child.exitCode, null, `the sharer still runs:\n${sharer.stderr()}`)

  // Another process's mesh joins through the peer and fetches the sharer's file.
  const out = join(dir, 'fetched.bin')
  const fetched = await inProcess('fetch', 'service/data.bin', out, '--bootstrap', peerAddr, '--mesh-secret', SECRET)
  assert.equal(fetched.code, 0, fetched.stderr)
  assert.ok(shared.equals(await readFile(out)), 'the fetched file equals the shared one')
  assert.match(fetched.stdout, new RegExp(`chunks received from \\d peer\\(s\\), [\\d.]+ MiB on the wire:\\n(  \\w+ +[\\d.]+ MiB.*\\n)*  ${sharerId} +[\\d.]+ MiB  \\(the publisher\\)\\n`))

  const status = await inProcess('status', '--bootstrap', peerAddr, '--mesh-secret', SECRET)
  assert.equal(status.code, 0, status.stderr)
  assert.match(status.stdout, new RegExp(`published names: 1\\n  service/data\\.bin  ${shared.byteLength} bytes \\(3\\.0 MiB\\)  published by ${sharerId}\\n`))

  for (const [what, s] of [['peer', peer], ['sharer', sharer]] as const) {
    const code = await terminateTree(s, [s.child.pid!])
    assert.equal(code, 0, `the ${what} exits 0 on SIGTERM:\n${s.stderr()}`)
    assert.match(s.stderr(), /refmesh: SIGTERM: stopping/)
  }
})
