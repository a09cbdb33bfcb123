/** The store's memory rules, one module alone (the spill backend is an in-memory double here; test/memory.test.ts runs the real one across processes). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ObjectStore } from '../core/store.ts'
import type { SpillBackend } from '../core/store.ts'
import { OutOfMemoryError } from '../core/errors.ts'

const KiB = 1024

class MemorySpill implements SpillBackend {
  readonly files = new Map<string, Uint8Array>()
  async write (key: string, data: Uint8Array): Promise<void> { this.files.set(key, data.slice()) }
  async writeAt (key: string, offset: number, data: Uint8Array): Promise<void> {
    const old = this.files.get(key) ?? new Uint8Array(0)
    const out = new Uint8Array(Math.max(old.length, offset + data.length))
    out.set(old)
    out.set(data, offset)
    this.files.set(key, out)
  }

  async read (key: string, offset: number, target: Uint8Array): Promise<void> {
    const f = this.files.get(key)
    if (f === undefined) throw new Error(`no file ${key}`)
    target.set(f.subarray(offset, offset + target.length))
  }

  async delete (key: string): Promise<void> { this.files.delete(key) }
}

const manifest = (size: number): { size: number, chunkSize: number, hashes: Uint8Array[], encoding: number } => ({ size, chunkSize: 4 * KiB, hashes: [], encoding: 0 })

async function put (store: ObjectStore, key: string, size: number, primary = true, fill = 1): Promise<void> {
  await store.reserve(size, key)
  store.putComplete(key, new Uint8Array([1]), 'me', manifest(size), new Uint8Array(size).fill(fill), primary)
}

async function settled (): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve))
}

test('above 60%: secondary copies go first, then least recently used primaries spill; pinned objects stay; restores are byte-identical', async () => {
  const spill = new MemorySpill()
  const store = new ObjectStore({ capacity: 100 * KiB, spill })
  await put(store, 'aa', 20 * KiB, true, 1)
  await put(store, 'bb', 20 * KiB, false, 2)
  await put(store, 'cc', 20 * KiB, true, 3)
  const pinned = (await store.read('aa', 'test'))!
  await put(store, 'dd', 20 * KiB, true, 4)
  await settled()
  // 80 KiB > 60 KiB: the copy bb is dropped (not spilled); aa is pinned; nothing else needed.
  assert.equal(store.has('bb'), false)
  assert.equal(spill.files.size, 0)
  assert.equal(store.used, 60 * KiB)
  await put(store, 'ee', 20 * KiB, true, 5)
  await settled()
  // Now a primary must go: cc is the least recently used one not pinned.
  assert.deepEqual([...spill.files.keys()], ['cc'])
  assert.equal(store.get('cc')?.data, undefined)
  assert.notEqual(store.get('aa')?.data, undefined)
  pinned.release()
  const back = (await store.read('cc', 'test'))!
  assert.deepEqual(back.bytes, new Uint8Array(20 * KiB).fill(3))
  back.release()
  assert.equal(store.stats().restores, 1)
  assert.ok(store.stats().peakBytes <= 100 * KiB)
  store.delete('cc')
  await settled()
  assert.equal(spill.files.has('cc'), false, 'freeing a spilled object deletes its file')
})

test('a reservation waits for room and is served in order; one larger than capacity fails at once; an abort gives the room back', async () => {
  const store = new ObjectStore({ capacity: 100 * KiB })
  await put(store, 'aa', 70 * KiB)
  await assert.rejects(store.reserve(101 * KiB, 'huge'), OutOfMemoryError)
  const order: string[] = []
  const first = store.reserve(50 * KiB, 'first').then(() => order.push('first'))
  const controller = new AbortController()
  const aborted = store.reserve(10 * KiB, 'aborted', controller.signal)
  const third = store.reserve(10 * KiB, 'third').then(() => order.push('third'))
  await settled()
  assert.deepEqual(order, [], 'nothing fits while aa holds 70 KiB (and waiters keep their order)')
  controller.abort(new Error('gave up'))
  await assert.rejects(aborted, { name: 'AbortError' })
  store.delete('aa')
  await Promise.all([first, third])
  assert.deepEqual(order, ['first', 'third'])
  assert.equal(store.used, 60 * KiB)
})

test('with no spill backend and nothing to free, a reservation fails with OutOfMemoryError after its wait, naming the sizes', async () => {
  const store = new ObjectStore({ capacity: 100 * KiB, memoryWaitMs: 100 })
  await put(store, 'aa', 90 * KiB)
  await assert.rejects(store.reserve(20 * KiB, 'put of object bb'), (err: Error) => {
    assert.ok(err instanceof OutOfMemoryError)
    assert.match(err.message, /put of object bb waited 100 ms for 20480 bytes/)
    assert.match(err.message, /92160 of 102400 bytes in use/)
    return true
  })
  assert.equal(store.used, 90 * KiB, 'the failed reservation left nothing behind')
})
