/** examples/dataset-sharing.ts: volunteers find a published Arrow table by name, compute over it, and mostly feed each other. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { tableFromIPC, tableToIPC } from 'apache-arrow'
import { COLUMN_NAMES, columnsOf, describe, generateTable, mergeStats, rowsFor, runDatasetSharing, sameStats, shareRows, tableStats } from '../examples/dataset-sharing.ts'
import type { DatasetSharingResult } from '../examples/dataset-sharing.ts'
import { startMesh, waitForEmptyStores } from './helpers.ts'

const MODULE = fileURLToPath(new URL('../examples/dataset-sharing.ts', import.meta.url))
const MiB = 2 ** 20

test('statistics of an Arrow table survive IPC bytes exactly, and shares merge to the whole', () => {
  const rows = rowsFor(MiB)
  const table = generateTable(rows, 5)
  assert.deepEqual(table.schema.fields.map(f => f.name), COLUMN_NAMES)
  const whole = tableStats(columnsOf(table), 0, rows)
  const read = tableFromIPC(tableToIPC(table, 'stream'))
  assert.equal(read.numRows, rows)
  assert.ok(sameStats(tableStats(columnsOf(read), 0, rows), whole))
  const shares = [0, 1, 2].map(i => shareRows(rows, i, 3))
  assert.equal(shares[0].from, 0)
  assert.equal(shares[2].to, rows)
  assert.equal(shares[1].from, shares[0].to)
  const merged = mergeStats(shares.map(s => tableStats(columnsOf(read), s.from, s.to)))
  for (const c of COLUMN_NAMES) {
    assert.equal(merged[c].count, whole[c].count)
    assert.equal(merged[c].min, whole[c].min)
    assert.equal(merged[c].max, whole[c].max)
    assert.ok(Math.abs(merged[c].mean - whole[c].mean) <= 1e-9 * Math.abs(whole[c].mean), c)
  }
})

function check (r: DatasetSharingResult, volunteers: string[]): void {
  assert.equal(r.volunteers.length, volunteers.length)
  assert.deepEqual(r.volunteers.map(v => v.peer), volunteers, 'each call ran on the volunteer it was placed on')
  assert.ok(r.wholeMatches, 'every volunteer\'s whole-table statistics equal this process\'s')
  for (const v of r.volunteers) {
    assert.ok(sameStats(v.wholeStats, r.local))
    assert.equal(v.rows, r.rows)
    assert.equal(v.bytes, r.tableBytes)
  }
  assert.ok(r.mergedError < 1e-9, `shares merged differ from the whole by ${r.mergedError}: ${JSON.stringify(r.merged)} vs ${JSON.stringify(r.local)}; ${JSON.stringify(r.volunteers.map(v => [v.share, v.from, v.to]))}`)
  assert.equal(r.merged.temperature.count, r.rows)
  // Each volunteer took in (at least) the whole table, and not only from the owner.
  for (const t of r.traffic) assert.ok(t.fromOwner + t.fromVolunteers >= r.tableBytes, `${t.peer} took ${t.fromOwner} + ${t.fromVolunteers} bytes`)
  assert.ok(r.traffic.some(t => t.fromVolunteers > 0), 'volunteers fed each other')
  const perVolunteer = r.ownerChunkOut / (r.tableBytes * volunteers.length)
  assert.ok(perVolunteer < 0.6, `the owner sent ${(r.ownerChunkOut / r.tableBytes).toFixed(2)} copies for ${volunteers.length} volunteers (${perVolunteer.toFixed(2)} per volunteer)`)
}

test('four volunteer processes look a 24 MiB Arrow table up by name; the owner sends far less than a copy each; every store empties after', async () => {
  const t = await startMesh(4, { module: MODULE })
  try {
    const volunteers = t.peers.map(p => p.peer)
    const lines: string[] = []
    const broadcast = await runDatasetSharing(t.caller, volunteers, { bytes: 24 * MiB, seed: 11, onStep: line => lines.push(line) })
    check(broadcast, volunteers)
    assert.ok(broadcast.tableBytes >= 24 * MiB)
    assert.equal(lines.filter(l => /broadcast: .* has its copy/.test(l)).length, 4)
    assert.match(describe(broadcast), /owner: sent [\d.]+ MiB = [\d.]+ copies of the [\d.]+ MiB table for 4 volunteers/)
    assert.match(describe(broadcast), /every volunteer's whole-table result equals this process's own computation, exactly/)

    // Without the broadcast, the volunteers' own gets start the multicast.
    const pulled = await runDatasetSharing(t.caller, volunteers, { bytes: 24 * MiB, seed: 12, broadcast: false })
    check(pulled, volunteers)
    assert.equal(pulled.broadcastMs, 0)

    // Unpublished and released: the owner frees it, and with it every volunteer's copy.
    await waitForEmptyStores(t)
  } finally {
    await t.close()
  }
})
