/** The examples the README shows run and print what it says. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

test('the README quickstart runs', async () => {
  const file = fileURLToPath(new URL('../examples/quickstart.ts', import.meta.url))
  const { stdout } = await run(process.execPath, [file], { timeout: 60_000 })
  assert.match(stdout, /'quick'/)
  assert.match(stdout, /^9$/m)
  assert.match(stdout, /2 of 2 ready/)
  assert.match(stdout, /Error on \w+: no such page/)
})
