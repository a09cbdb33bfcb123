/**
 * The dedicated worker behind an OpfsSpill (opfs-spill.ts): it owns the spill
 * directory and does all file work through OPFS sync access handles, which
 * exist only in dedicated workers and read and write at an offset without the
 * copy-on-write swap file of the main thread's writable streams.
 *
 * Requests run one at a time, in the order they came: a delete that follows a
 * write finds the file written, and an open (async) never races another.
 */
import { serializeError, transferablesOf } from './worker-wire.ts'
import type { SerializedError } from './worker-wire.ts'

// ---- wire between OpfsSpill and this worker ----

export type SpillRequest =
  | { id: number, op: 'open', root: string, peerId: string, openFiles: number }
  /**
   * Writes `data` at `offset`. With `size` (a whole object, replacing any older
   * one), the file is then cut to `size`, and removed if the write fails.
   */
  | { id: number, op: 'write', key: string, offset: number, data: Uint8Array, size?: number }
  /** reads into `target`: shared memory read in place, or a buffer that comes back in the reply */
  | { id: number, op: 'read', key: string, offset: number, target: Uint8Array }
  | { id: number, op: 'delete', key: string }
  | { id: number, op: 'close' }

/** `data`: the request's plain (unshared) buffer, handed back to be used again. */
export type SpillReply =
  | { id: number, ok: true, data?: Uint8Array }
  | { id: number, ok: false, error: SerializedError, data?: Uint8Array }

// ---- OPFS sync access handles (lib.dom has no types for them: worker-only) ----

interface SyncAccessHandle {
  read: (buffer: ArrayBufferView, options?: { at?: number }) => number
  write: (buffer: ArrayBufferView, options?: { at?: number }) => number
  truncate: (size: number) => void
  close: () => void
}

interface SyncFileHandle extends FileSystemFileHandle {
  createSyncAccessHandle: () => Promise<SyncAccessHandle>
}

interface WorkerScope {
  postMessage: (message: unknown, transfer?: Transferable[]) => void
  addEventListener: (type: 'message', listener: (event: MessageEvent<SpillRequest>) => void) => void
}

const scope = globalThis as unknown as WorkerScope

/** An error with a name OpfsSpill maps to a typed one. */
function named (name: string, message: string): Error {
  const err = new Error(message)
  err.name = name
  return err
}

function isNotFound (err: unknown): boolean {
  return err instanceof Error && err.name === 'NotFoundError'
}

/** The spill directory, once open. */
let top: FileSystemDirectoryHandle | undefined
let dir: FileSystemDirectoryHandle | undefined
let peerId = ''
let maxOpen = 32
let releaseLock: (() => void) | undefined
/** open sync access handles, least recently used first */
const open = new Map<string, SyncAccessHandle>()

async function openDir (root: string, peer: string): Promise<void> {
  if (dir !== undefined) throw named('InvalidStateError', 'the spill directory is open already')
  // Two tabs of one origin can share an identity (IndexedDB); the second must
  // not empty the first one's directory under it.
  const locked = await new Promise<boolean>((resolve, reject) => {
    navigator.locks.request(`refmesh-spill:${root}/${peer}`, { ifAvailable: true }, async lock => {
      if (lock === null) { resolve(false); return }
      resolve(true)
      await new Promise<void>(release => { releaseLock = release })
    }).catch(reject)
  })
  if (!locked) throw named('SpillInUseError', `another tab of this origin spills into ${root}/${peer}`)
  try {
    const storage = await navigator.storage.getDirectory()
    top = await storage.getDirectoryHandle(root, { create: true })
    // Files left by a tab that crashed belong to objects that no longer exist.
    await top.removeEntry(peer, { recursive: true }).catch((err: unknown) => { if (!isNotFound(err)) throw err })
    dir = await top.getDirectoryHandle(peer, { create: true })
    peerId = peer
  } catch (err) {
    releaseLock?.()
    releaseLock = undefined
    throw err
  }
}

function spillDir (): FileSystemDirectoryHandle {
  if (dir === undefined) throw named('InvalidStateError', 'the spill directory is not open')
  return dir
}

async function handleOf (key: string, create: boolean): Promise<SyncAccessHandle> {
  const cached = open.get(key)
  if (cached !== undefined) {
    open.delete(key)
    open.set(key, cached)
    return cached
  }
  const file = await spillDir().getFileHandle(key, { create }) as SyncFileHandle
  const handle = await file.createSyncAccessHandle()
  open.set(key, handle)
  while (open.size > maxOpen) {
    const [oldest, h] = open.entries().next().value as [string, SyncAccessHandle]
    open.delete(oldest)
    h.close()
  }
  return handle
}

function closeHandle (key: string): void {
  open.get(key)?.close()
  open.delete(key)
}

function writeAll (handle: SyncAccessHandle, data: Uint8Array, offset: number): void {
  let done = 0
  while (done < data.byteLength) {
    const n = handle.write(data.subarray(done), { at: offset + done })
    if (n <= 0) throw named('QuotaExceededError', `wrote ${done} of ${data.byteLength} bytes`)
    done += n
  }
}

async function removeFile (key: string): Promise<void> {
  closeHandle(key)
  await spillDir().removeEntry(key).catch((err: unknown) => { if (!isNotFound(err)) throw err })
}

async function write (key: string, offset: number, data: Uint8Array, size: number | undefined): Promise<void> {
  const handle = await handleOf(key, true)
  try {
    writeAll(handle, data, offset)
    if (size !== undefined) handle.truncate(size)
  } catch (err) {
    // Half an object is of no use, and it would hold on to the quota.
    if (size !== undefined) await removeFile(key).catch(() => {})
    throw err
  }
}

async function read (key: string, offset: number, target: Uint8Array): Promise<void> {
  const handle = await handleOf(key, false)
  let done = 0
  while (done < target.byteLength) {
    const n = handle.read(target.subarray(done), { at: offset + done })
    if (n === 0) throw new RangeError(`spill file of ${key} ends at ${offset + done}, wanted ${offset + target.byteLength}`)
    done += n
  }
}

async function close (): Promise<void> {
  for (const key of [...open.keys()]) closeHandle(key)
  if (top !== undefined && dir !== undefined) await top.removeEntry(peerId, { recursive: true }).catch((err: unknown) => { if (!isNotFound(err)) throw err })
  dir = undefined
  releaseLock?.()
  releaseLock = undefined
}

async function serve (req: SpillRequest): Promise<void> {
  switch (req.op) {
    case 'open':
      maxOpen = req.openFiles
      await openDir(req.root, req.peerId)
      return
    case 'write':
      await write(req.key, req.offset, req.data, req.size)
      return
    case 'read':
      await read(req.key, req.offset, req.target)
      return
    case 'delete':
      await removeFile(req.key)
      return
    case 'close':
      await close()
  }
}

/** The request's plain buffer, to hand back. */
function lent (req: SpillRequest): Uint8Array | undefined {
  const view = req.op === 'write' ? req.data : req.op === 'read' ? req.target : undefined
  return view !== undefined && view.buffer instanceof ArrayBuffer ? view : undefined
}

let tail = Promise.resolve()

scope.addEventListener('message', event => {
  const req = event.data
  tail = tail.then(async () => {
    let reply: SpillReply
    try {
      await serve(req)
      reply = { id: req.id, ok: true, data: lent(req) }
    } catch (err) {
      reply = { id: req.id, ok: false, error: serializeError(err), data: lent(req) }
    }
    scope.postMessage(reply, transferablesOf(reply.data))
  })
})
