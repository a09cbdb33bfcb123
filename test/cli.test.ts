/** The refmesh command: peer, status, identity, and clear errors for bad flags. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { spawnPeer } from '../node/local-cluster.ts'
import { FIXTURES } from './helpers.ts'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../node/bin/refmesh.js', import.meta.url))

async function refmesh (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { timeout: 30_000 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

test('bad flags get one line naming them and a non-zero exit', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['peer', '--store-capacity', 'lots'], /--store-capacity: bad byte size "lots"/],
    [['peer', '--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['peer', '--bootstrap', 'localhost:4001'], /--bootstrap "localhost:4001" is not a multiaddr: they look like \/ip4\//],
    [['status'], /status needs --bootstrap/],
    [['peer', '--tls-cert', 'cert.pem'], /--tls-cert and --tls-key go together/],
    [['demo', '--listen', '/ip4/0.0.0.0/tcp/0'], /--listen takes an IPv4 address/],
    [['frobnicate'], /unknown command "frobnicate"; the commands are peer, status, share, fetch, demo/]
  ]
  for (const [args, message] of cases) {
    const r = await refmesh(...args)
    assert.equal(r.code, 2, `refmesh ${args.join(' ')} exited ${r.code}`)
    assert.match(r.stderr, message)
    // One line, pointing at the help rather than printing it.
    assert.match(r.stderr, /^refmesh: [^\n]+ \(refmesh (\w+ )?--help lists the options\)\n$/)
  }
})

test('refmesh peer keeps its identity in a file; refmesh status prints the mesh', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-cli-'))
  const identity = join(dir, 'peer.key')
  try {
    const first = await spawnPeer({ identity, module: FIXTURES })
    const firstId = first.peer
    const other = await spawnPeer({ bootstrap: [first.addrs[0]] })
    try {
      const status = await refmesh('status', '--bootstrap', first.addrs[0])
      assert.equal(status.code, 0, status.stderr)
      assert.match(status.stdout, new RegExp(firstId))
      assert.match(status.stdout, new RegExp(other.peer))
      assert.match(status.stdout, /functions: .*checksum/)
      const json = await refmesh('status', '--bootstrap', first.addrs[0], '--json')
      const peers = JSON.parse(json.stdout) as Array<{ peer: string }>
      assert.deepEqual(new Set(peers.map(p => p.peer)), new Set([firstId, other.peer]))
    } finally {
      await other.stop()
      await first.stop()
    }
    const again = await spawnPeer({ identity })
    try {
      assert.equal(again.peer, firstId, 'the restarted peer has the same id')
    } finally {
      await again.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
