/**
 * The browser spill backend: one file per spilled object in the Origin
 * Private File System, under a per-peer directory (`refmesh-spill/<peerId>`)
 * emptied when the peer starts (a tab that crashed leaves its files; they
 * belong to objects that no longer exist) and when it stops. Like node/spill.ts
 * for Node peers.
 *
 * The files are worked by a dedicated worker (opfs-worker.ts) through sync
 * access handles. The main thread has only the async OPFS API, and it is the
 * wrong shape for a spill: a writable stream writes into a swap file that is
 * copied in (keepExistingData) and moved over the file on close(), so writing
 * one chunk of an object arriving straight to disk copies the whole file, and
 * nothing written is readable before close(). Measured with
 * `node test/bench/opfs-spill.ts` (Chromium 150, a profile on disk, 2 vCPUs
 * under load; two runs):
 *
 *                                    worker + sync   same, shared   main thread
 *                                    handles         memory         async API
 *   write a 64 MiB object            22-35 ms        9-10 ms        520-600 ms
 *   read 1 MiB at a random offset    0.37 ms         0.2 ms         12-18 ms
 *   read a 64 MiB object whole       11-14 ms        35-42 ms       270-350 ms
 *   writeAt 1 MiB into a new file    0.6-0.8 ms      0.5 ms         100-115 ms
 *
 * (Off the record, as Playwright's default context is, Chromium keeps OPFS in
 * the browser process's memory and every way is 40-240 MB/s; sync access
 * handles there also ignore the storage quota.)
 *
 * Bytes cross to the worker with one copy at most. In shared memory (a store
 * with `shared: true`) they are not copied at all. Otherwise they are copied a
 * piece at a time into a few reused buffers that are transferred to the worker
 * and back: a fresh buffer's first touch costs more than the copy (200 ms for
 * 64 MiB on the machine above), and structured clone would copy twice.
 *
 * A storage quota error becomes OutOfMemoryError, the store's error for bytes
 * that fit nowhere, with the QuotaExceededError as its cause; the object that
 * did not fit leaves no file behind.
 */
import { logger } from '@libp2p/logger'
import { OutOfMemoryError, RefmeshError } from '../core/errors.ts'
import type { SpillBackend } from '../core/store.ts'
import type { AbortOptions } from '../core/signals.ts'
import { BufferPool } from './buffer-pool.ts'
import { deserializeError } from './worker-wire.ts'
import type { SpillReply, SpillRequest } from './opfs-worker.ts'

const log = logger('refmesh:opfs-spill')

export const OPFS_SPILL_DEFAULTS = {
  /** the top directory in the origin's private file system; peers spill into `<root>/<peerId>` */
  root: 'refmesh-spill',
  /** sync access handles kept open (least recently used are closed first) */
  openFiles: 32,
  /** bytes outside shared memory cross to the worker in pieces of this size, through reused buffers */
  pieceBytes: 1024 * 1024,
  /** pieces in flight at once (and buffers kept for them) */
  pieces: 4
} as const

export interface OpfsSpillInit {
  /** the peer whose spill directory this is */
  peerId: string
  root?: string
  openFiles?: number
  pieceBytes?: number
  pieces?: number
  /** starts the worker that works the files; default opfs-worker.ts, bundled by Vite */
  createWorker?: () => Worker
}

/** Another tab of this origin spills into the same directory (two tabs with one identity). */
export class SpillInUseError extends RefmeshError {
  override name = 'SpillInUseError'
}

/** The spill was closed, or its worker failed; its files are gone or unreachable. */
export class SpillClosedError extends RefmeshError {
  override name = 'SpillClosedError'
}

type Request = SpillRequest extends infer R ? R extends { id: number } ? Omit<R, 'id'> : never : never

interface Pending {
  resolve: (reply: SpillReply & { ok: true }) => void
  reject: (err: Error) => void
  what: string
  /** a pooled buffer lent with the request */
  lent?: ArrayBuffer
}

function defaultWorker (): Worker {
  return new Worker(new URL('./opfs-worker.ts', import.meta.url), { type: 'module', name: 'refmesh-opfs-spill' })
}

function isShared (view: Uint8Array): boolean {
  return typeof SharedArrayBuffer === 'function' && view.buffer instanceof SharedArrayBuffer
}

function checkKey (key: string): void {
  if (!/^[0-9a-f]+$/.test(key)) throw new TypeError(`not an object key: ${key}`)
}

export class OpfsSpill implements SpillBackend {
  /** the directory's path from the origin's root, e.g. `refmesh-spill/12D3KooW...` */
  readonly dir: string
  private readonly worker: Worker
  private readonly buffers: BufferPool
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private failure: Error | undefined
  private closePromise: Promise<void> | undefined

  private constructor (worker: Worker, dir: string, buffers: BufferPool) {
    this.worker = worker
    this.dir = dir
    this.buffers = buffers
    worker.addEventListener('message', (event: MessageEvent<SpillReply>) => { this.onReply(event.data) })
    worker.addEventListener('error', event => {
      event.preventDefault()
      this.fail(new SpillClosedError(`the OPFS spill worker failed: ${event.message ?? 'it could not start'}`))
    })
    worker.addEventListener('messageerror', () => {
      this.fail(new SpillClosedError('a reply of the OPFS spill worker could not be read'))
    })
  }

  /**
   * Starts the worker, takes `<root>/<peerId>` for this tab and empties it.
   * SpillInUseError when another tab holds it; the signal's reason when it
   * fires first (the worker is stopped).
   */
  static async open (init: OpfsSpillInit, options: AbortOptions = {}): Promise<OpfsSpill> {
    const root = init.root ?? OPFS_SPILL_DEFAULTS.root
    const openFiles = init.openFiles ?? OPFS_SPILL_DEFAULTS.openFiles
    if (typeof init.peerId !== 'string' || !/^[A-Za-z0-9]+$/.test(init.peerId)) throw new TypeError(`not a peer id: ${String(init.peerId)}`)
    if (!/^[^/\\]+$/.test(root) || root === '.' || root === '..') throw new TypeError(`the spill root is one directory name, not ${root}`)
    if (!Number.isInteger(openFiles) || openFiles < 1) throw new RangeError(`openFiles must be a whole number from 1, not ${String(openFiles)}`)
    const buffers = new BufferPool(init.pieceBytes ?? OPFS_SPILL_DEFAULTS.pieceBytes, init.pieces ?? OPFS_SPILL_DEFAULTS.pieces)
    options.signal?.throwIfAborted()
    const spill = new OpfsSpill((init.createWorker ?? defaultWorker)(), `${root}/${init.peerId}`, buffers)
    const onAbort = (): void => { spill.fail(options.signal?.reason as Error) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await spill.request({ op: 'open', root, peerId: init.peerId, openFiles }, `opening ${spill.dir}`)
    } catch (err) {
      spill.fail(err as Error)
      throw err
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
    log('spilling into %s', spill.dir)
    return spill
  }

  async write (key: string, data: Uint8Array): Promise<void> {
    checkKey(key)
    const what = `spilling ${key} (${data.byteLength} bytes)`
    if (isShared(data)) {
      await this.request({ op: 'write', key, offset: 0, data, size: data.byteLength }, what)
      return
    }
    try {
      await this.writePieces(key, 0, data, data.byteLength, what)
    } catch (err) {
      // The worker removes the file when the first piece fails; a later one leaves part of it.
      if (this.failure === undefined) await this.request({ op: 'delete', key }, `deleting ${key}`).catch(() => {})
      throw err
    }
  }

  async writeAt (key: string, offset: number, data: Uint8Array): Promise<void> {
    checkKey(key)
    const what = `writing ${data.byteLength} bytes of ${key} at ${offset}`
    if (isShared(data)) await this.request({ op: 'write', key, offset, data }, what)
    else await this.writePieces(key, offset, data, undefined, what)
  }

  async read (key: string, offset: number, target: Uint8Array): Promise<void> {
    checkKey(key)
    const what = `reading ${target.byteLength} bytes of ${key} at ${offset}`
    if (isShared(target)) {
      await this.request({ op: 'read', key, offset, target }, what)
      return
    }
    const piece = this.buffers.bufferBytes
    const reads: Array<Promise<void>> = []
    let failed = false
    for (let done = 0; done < target.byteLength && !failed; done += piece) {
      const length = Math.min(piece, target.byteLength - done)
      const buffer = await this.buffers.take()
      const read = this.request({ op: 'read', key, offset: offset + done, target: new Uint8Array(buffer, 0, length) }, what, buffer)
      reads.push(read.then(reply => {
        const bytes = reply.data as Uint8Array
        target.set(bytes, done)
        this.buffers.give(bytes.buffer as ArrayBuffer)
      }, (err: unknown) => {
        failed = true
        throw err
      }))
      reads[reads.length - 1].catch(() => {})
    }
    await Promise.all(reads)
  }

  async delete (key: string): Promise<void> {
    checkKey(key)
    await this.request({ op: 'delete', key }, `deleting ${key}`)
  }

  /** Removes the directory and everything in it, and stops the worker. */
  async close (): Promise<void> {
    this.closePromise ??= (async () => {
      try {
        if (this.failure === undefined) await this.request({ op: 'close' }, `removing ${this.dir}`)
      } finally {
        this.fail(new SpillClosedError(`the spill in ${this.dir} is closed`))
      }
    })()
    await this.closePromise
  }

  /**
   * Writes bytes outside shared memory: copied, a piece at a time, into pooled
   * buffers that are transferred to the worker and back. The worker writes
   * pieces in the order they were sent; the first carries `size`.
   */
  private async writePieces (key: string, offset: number, data: Uint8Array, size: number | undefined, what: string): Promise<void> {
    const piece = this.buffers.bufferBytes
    const writes: Array<Promise<void>> = []
    let failed = false
    let done = 0
    do {
      const length = Math.min(piece, data.byteLength - done)
      const buffer = await this.buffers.take()
      const view = new Uint8Array(buffer, 0, length)
      view.set(data.subarray(done, done + length))
      const write = this.request({ op: 'write', key, offset: offset + done, data: view, size: done === 0 ? size : undefined }, what, buffer)
      writes.push(write.then(reply => { this.buffers.give((reply.data as Uint8Array).buffer as ArrayBuffer) }, (err: unknown) => {
        failed = true
        throw err
      }))
      writes[writes.length - 1].catch(() => {})
      done += length
    } while (done < data.byteLength && !failed)
    await Promise.all(writes)
  }

  private async request (req: Request, what: string, lent?: ArrayBuffer): Promise<SpillReply & { ok: true }> {
    if (this.failure !== undefined) {
      if (lent !== undefined) this.buffers.give(lent)
      throw this.failure
    }
    const id = this.nextId++
    return await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, what, lent })
      this.worker.postMessage({ ...req, id }, lent !== undefined ? [lent] : [])
    })
  }

  private onReply (reply: SpillReply): void {
    const p = this.pending.get(reply.id)
    if (p === undefined) return
    this.pending.delete(reply.id)
    if (reply.ok) {
      p.resolve(reply)
      return
    }
    if (reply.data !== undefined) this.buffers.give(reply.data.buffer as ArrayBuffer)
    const cause = deserializeError(reply.error)
    if (cause.name === 'QuotaExceededError') p.reject(new OutOfMemoryError(`${p.what}: the origin's storage quota is full`, { cause }))
    else if (cause.name === 'SpillInUseError') p.reject(new SpillInUseError(cause.message))
    else p.reject(cause)
  }

  /** Fails every request in flight and every later one; stops the worker. */
  private fail (err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    this.worker.terminate()
    for (const p of this.pending.values()) {
      if (p.lent !== undefined) this.buffers.lost()
      p.reject(err)
    }
    this.pending.clear()
  }
}
