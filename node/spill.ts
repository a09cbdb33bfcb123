/**
 * The Node spill backend: one file per spilled object in a per-peer directory,
 * emptied when the peer starts (a previous run's files belong to objects that
 * no longer exist) and when it stops.
 */
import { mkdir, open, rm, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { SpillBackend } from '../core/store.ts'
import { OutOfMemoryError } from '../core/errors.ts'

/** Errors of a disk with no room left: a full store, typed as such. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG'])

function diskFull (dir: string, key: string) {
  return (err: Error & { code?: string }): never => {
    if (err.code !== undefined && DISK_FULL.has(err.code)) {
      throw new OutOfMemoryError(`the spill disk is full (${err.code}) writing object ${key} under ${dir}`, { cause: err })
    }
    throw err
  }
}

/** The spill directory a peer uses when none is given. */
export function defaultSpillDir (peerId: string): string {
  return join(tmpdir(), 'refmesh-spill', peerId)
}

export class FileSpill implements SpillBackend {
  readonly dir: string
  /** files of objects arriving straight to disk, open until complete or deleted */
  private readonly partial = new Map<string, Promise<FileHandle>>()

  private constructor (dir: string) {
    this.dir = dir
  }

  /** Empties (or creates) `dir` and spills into it. */
  static async open (dir: string): Promise<FileSpill> {
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { recursive: true })
    return new FileSpill(dir)
  }

  private path (key: string): string {
    if (!/^[0-9a-f]+$/.test(key)) throw new TypeError(`not an object key: ${key}`)
    return join(this.dir, key)
  }

  async write (key: string, data: Uint8Array): Promise<void> {
    await this.closePartial(key)
    await writeFile(this.path(key), data).catch(diskFull(this.dir, key))
  }

  async writeAt (key: string, offset: number, data: Uint8Array): Promise<void> {
    let handle = this.partial.get(key)
    if (handle === undefined) {
      handle = open(this.path(key), 'w+')
      this.partial.set(key, handle)
      handle.catch(() => { this.partial.delete(key) })
    }
    const fh = await handle
    let written = 0
    while (written < data.byteLength) {
      const { bytesWritten } = await fh.write(data, written, data.byteLength - written, offset + written).catch(diskFull(this.dir, key))
      written += bytesWritten
    }
  }

  async read (key: string, offset: number, target: Uint8Array): Promise<void> {
    const partial = this.partial.get(key)
    const fh = partial !== undefined ? await partial : await open(this.path(key), 'r')
    try {
      let done = 0
      while (done < target.byteLength) {
        const { bytesRead } = await fh.read(target, done, target.byteLength - done, offset + done)
        if (bytesRead === 0) throw new RangeError(`spill file of ${key} ends at ${offset + done}, wanted ${offset + target.byteLength}`)
        done += bytesRead
      }
    } finally {
      if (partial === undefined) await fh.close()
    }
  }

  async delete (key: string): Promise<void> {
    await this.closePartial(key)
    await rm(this.path(key), { force: true })
  }

  /** Removes the directory and everything in it. */
  async close (): Promise<void> {
    await Promise.all([...this.partial.keys()].map(async key => { await this.closePartial(key) }))
    await rm(this.dir, { recursive: true, force: true })
  }

  private async closePartial (key: string): Promise<void> {
    const handle = this.partial.get(key)
    if (handle === undefined) return
    this.partial.delete(key)
    await (await handle.catch(() => undefined))?.close().catch(() => {})
  }
}
