/**
 * A tab's storage and executors, in a real Chromium: OpfsSpill (OPFS through
 * a worker's sync access handles) and WebWorkerPool (module Web Workers), each
 * alone and then an ObjectStore spilling to OPFS. The page is
 * test/browser/fixtures/store-worker.html, bundled by Vite and served
 * crossOriginIsolated.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openFixture } from './fixtures/isolated-page.ts'
import type { FixturePage } from './fixtures/isolated-page.ts'
import type { StoreWorkerFixture } from './fixtures/store-worker-page.ts'

const MiB = 1024 * 1024

type Scenario = keyof StoreWorkerFixture

/** Runs a scenario of the page and returns what it saw. */
async function inPage<K extends Scenario> (f: FixturePage, name: K, ...args: Parameters<StoreWorkerFixture[K]>): Promise<Awaited<ReturnType<StoreWorkerFixture[K]>>> {
  return await f.page.evaluate(async ([n, a]) => {
    const fn = window.fixture[n] as (...args: unknown[]) => Promise<unknown>
    return await fn(...a)
  }, [name, args] as const) as Awaited<ReturnType<StoreWorkerFixture[K]>>
}

async function fixtureReady (f: FixturePage): Promise<void> {
  await f.page.waitForFunction(() => typeof window.fixture === 'object', undefined, { timeout: 10_000 })
}

test('a tab spills to OPFS and runs calls in Web Workers', { timeout: 180_000 }, async t => {
  // A profile on disk, as people browse with: off the record, Chromium keeps
  // OPFS in memory and sync access handles there ignore the storage quota.
  const f = await openFixture('store-worker.html', { persistent: true })
  try {
    await fixtureReady(f)
    assert.equal(await f.page.evaluate(() => crossOriginIsolated), true, 'the page is crossOriginIsolated')

    await t.test('OpfsSpill: write, writeAt, read and delete round-trip byte-identical; files go on delete and on close', async () => {
      for (const shared of [false, true]) {
        const r = await inPage(f, 'spillRoundTrip', shared ? 'roundTripShared' : 'roundTripPlain', 6 * MiB + 321, shared)
        const what = shared ? 'shared memory' : 'plain buffers'
        assert.equal(r.sourceIntact, true, `${what}: the written bytes stay the caller's`)
        assert.equal(r.whole, true, `${what}: whole object`)
        assert.equal(r.pieces, true, `${what}: reads at unaligned offsets`)
        assert.equal(r.partialReadable, true, `${what}: a chunk of an object still arriving is readable`)
        assert.equal(r.writeAtWhole, true, `${what}: chunks written out of order`)
        assert.deepEqual(r.filesAfterWrite, ['aa', 'bb'], `${what}: one file per object`)
        assert.equal(r.replacedSmaller, true, `${what}: replaced by a smaller object`)
        assert.equal(r.pastEnd, 'RangeError', `${what}: a read past the end of a replaced object`)
        assert.deepEqual(r.filesAfterDelete, ['bb'], `${what}: delete removes the file`)
        assert.equal(r.readAfterDelete, 'NotFoundError')
        assert.equal(r.badKey, 'TypeError', 'keys are hex: no paths')
        assert.equal(r.dirAfterClose, null, `${what}: close removes the directory`)
        assert.equal(r.afterClose, 'SpillClosedError')
      }
    })

    await t.test('OpfsSpill: a start clears what a crashed tab left; a second start with the same identity is refused', async () => {
      await inPage(f, 'plantLeftover', 'crashed', 'ffff')
      assert.deepEqual(await inPage(f, 'listSpill', 'crashed'), ['ffff'])
      const opened = await inPage(f, 'spillOpen', 'crashed')
      assert.deepEqual(opened.files, [], 'leftovers removed at start')
      assert.equal(opened.second, 'SpillInUseError')
      await inPage(f, 'closeAll')

      // A real crash: the tab goes away with the spill open and a file in it.
      assert.deepEqual(await inPage(f, 'spillLeaveOpen', 'reloaded'), ['cc'])
      await f.page.reload()
      await fixtureReady(f)
      assert.deepEqual(await inPage(f, 'listSpill', 'reloaded'), ['cc'], 'the file outlived the tab')
      const reopened = await inPage(f, 'spillOpen', 'reloaded')
      assert.deepEqual(reopened.files, [], 'and is gone once the same identity starts again')
      await inPage(f, 'closeAll')
      assert.equal(await inPage(f, 'listSpill', 'reloaded'), null)
    })

    await t.test('OpfsSpill: a full storage quota is an OutOfMemoryError and leaves no half-written file', async () => {
      const cdp = await f.context.newCDPSession(f.page)
      const origin = new URL(f.url).origin
      const usage = await inPage(f, 'storageUsage')
      await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: usage + 6 * MiB })
      try {
        const r = await inPage(f, 'spillQuota', 'quota', 16 * MiB)
        assert.equal(r.name, 'OutOfMemoryError', String(r.message))
        assert.equal(r.isOutOfMemory, true)
        assert.equal(r.cause, 'QuotaExceededError')
        assert.match(String(r.message), /quota/)
        assert.equal(r.sharedName, 'OutOfMemoryError')
        assert.deepEqual(r.files, ['a1'], 'the object that did not fit is removed')
        assert.equal(r.stillWorks, true)
      } finally {
        await cdp.send('Storage.overrideQuotaForOrigin', { origin })
        await cdp.detach()
      }
    })

    await t.test('WebWorkerPool: bundled functions and module URLs; one worker per core by default; load errors are typed', async () => {
      const r = await inPage(f, 'poolBasics')
      assert.equal(r.defaultSize, r.hardwareConcurrency)
      assert.deepEqual(r.names, ['checksum', 'pattern', 'urlSum', 'urlWorkerName', 'wbarrier', 'wblock', 'wclose', 'wdescribe', 'wdescribeIn', 'wfail', 'wpattern', 'wrejectRange', 'wsum', 'wthrowLater'])
      assert.equal(r.sum, 5)
      assert.equal(r.urlSum, 42)
      assert.equal(r.workerName, 'refmesh-test-worker')
      assert.equal(r.notFound, 'FunctionNotFoundError')
      assert.deepEqual(r.defaultEntryNames, ['urlSum', 'urlWorkerName'])
      assert.equal(r.defaultEntrySum, 2)
      assert.equal(r.defaultEntryWorkerName, 'refmesh-worker')
      const missing = r.missing as { name: string, typed: boolean, module: string, message: string }
      assert.equal(missing.name, 'WorkerModuleError')
      assert.equal(missing.typed, true)
      assert.equal(missing.module, `${new URL(f.url).origin}/missing.js`)
      const duplicate = r.duplicate as { name: string, message: string }
      assert.equal(duplicate.name, 'WorkerModuleError')
      assert.match(duplicate.message, /urlSum/)
      const noScript = r.noScript as { name: string, message: string }
      assert.equal(noScript.name, 'WorkerCrashedError')
      assert.match(noScript.message, /could not load its script/)
    })

    await t.test('WebWorkerPool: `size` calls run at once, and no more', async () => {
      const size = 3
      const r = await inPage(f, 'poolConcurrency', size)
      assert.deepEqual(r.passed, [size, size, size], 'every call met the others at the barrier')
      assert.deepEqual(r.whileBlocked, { started: size, busy: size, queued: 1 })
      assert.deepEqual(r.results, Array(size + 1).fill('released'))
      assert.equal(r.startedAfter, size + 1)
    })

    await t.test('WebWorkerPool: a thrown error arrives with its name, message and stack', async () => {
      const r = await inPage(f, 'poolErrors')
      assert.deepEqual(r.thrown, { name: 'ParseFailure', message: 'bad input at line 3', stackNamesFunction: true })
      assert.deepEqual(r.range, { name: 'RangeError', message: 'out of range', isRangeError: true })
      assert.equal(r.notFound, true)
      assert.equal(r.unclonable, 'DataCloneError')
      assert.equal(r.afterwards, 3)
    })

    await t.test('WebWorkerPool: abort takes a queued call off the queue and ends a running one', async () => {
      const r = await inPage(f, 'poolAbort')
      assert.equal(r.queuedError, 'not needed any more')
      assert.equal(r.runningError, 'caller gave up')
      assert.equal(r.cellReleased, 0, 'the blocked call was never released: its worker was ended')
      assert.equal(r.after, 9)
      assert.equal(r.busy, 0)
    })

    await t.test('WebWorkerPool: a worker that dies fails its call with WorkerCrashedError (a PeerDiedError) and is replaced', async () => {
      const r = await inPage(f, 'poolCrash')
      const closed = r.closed as { name: string, message: string, peerDied: boolean, typed: boolean }
      assert.equal(closed.name, 'WorkerCrashedError')
      assert.equal(closed.peerDied, true)
      assert.equal(closed.typed, true)
      assert.match(closed.message, /wclose/)
      const uncaught = r.uncaught as { name: string, message: string }
      assert.equal(uncaught.name, 'WorkerCrashedError')
      assert.match(uncaught.message, /boom later/)
      assert.deepEqual(r.replacedBoth, [2, 2], 'both workers were replaced and run at once')
    })

    await t.test('WebWorkerPool: large binary arguments and results arrive intact, copied once at most', async () => {
      const size = 24 * MiB + 5
      const r = await inPage(f, 'poolBinary', size)
      assert.deepEqual(r.copied, { length: size, checksum: r.copied.checksum, shared: false, bufferBytes: size, matches: true, callerKeeps: true })
      assert.equal(r.viewed.matches, true)
      assert.equal(r.viewed.bufferBytes, MiB, 'a view crosses as its own bytes, not the buffer behind it')
      assert.equal(r.transferred.matches, true)
      assert.equal(r.transferred.callerGaveUp, true, 'a transferred argument moved')
      assert.equal(r.shared.matches, true)
      assert.equal(r.shared.shared, true, 'shared memory is shared, not copied')
      assert.equal(r.nested.matches, true)
      assert.equal(r.nested.bufferBytes, MiB)
      assert.deepEqual(r.result, { isBytes: true, length: size, matches: true })
    })

    await t.test('ObjectStore with an OpfsSpill: objects over the spill mark go to OPFS and come back byte-identical', async () => {
      for (const shared of [false, true]) {
        const r = await inPage(f, 'storeSpill', shared)
        const what = shared ? 'shared store' : 'plain store'
        const afterPuts = r.afterPuts as { spilledObjects: number, bytes: number, peak: number }
        assert.ok(afterPuts.spilledObjects >= 4, `${what}: objects spilled (${afterPuts.spilledObjects})`)
        assert.ok(afterPuts.bytes <= 0.6 * 4 * MiB, `${what}: memory back under the spill mark (${afterPuts.bytes})`)
        assert.ok(afterPuts.peak <= 4 * MiB, `${what}: never above capacity`)
        assert.equal((r.filesAfterPuts as string[]).length, afterPuts.spilledObjects, `${what}: one OPFS file per spilled object`)
        assert.deepEqual(r.identical, Array(8).fill(true), `${what}: every object reads back byte-identical`)
        assert.ok((r.restores as number) >= afterPuts.spilledObjects, `${what}: spilled objects were restored from OPFS`)
        assert.equal(r.putOnDisk, true)
        assert.equal(r.hugeIdentical, true, `${what}: an object larger than the store`)
        assert.equal(r.chunksIdentical, true, `${what}: an object arriving straight to disk, served chunk by chunk`)
        assert.ok((r.filesBeforeFree as string[]).includes('0b0') && (r.filesBeforeFree as string[]).includes('0c0'))
        assert.deepEqual(r.filesAfterFree, [], `${what}: freed objects leave no files`)
        assert.equal(r.dirAfterClose, null)
      }
    })
  } finally {
    await f.close()
  }
})
