/**
 * A tab's identity: an Ed25519 key kept in IndexedDB, so a reloaded tab comes
 * back as the same peer.
 *
 * Every tab of one origin shares that origin's IndexedDB, and two tabs with one
 * key would be one peer id on two connections. So keys live in numbered slots
 * and a tab holds its slot with a Web Lock while it runs: the first tab gets
 * slot 0, a second tab opened beside it slot 1, and a reload gets its old slot
 * back (the tab's sessionStorage remembers which).
 */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { logger } from '@libp2p/logger'

const log = logger('refmesh:identity')

export const IDENTITY_DEFAULTS = {
  database: 'refmesh',
  /** tabs of one origin that may run at once; one more gets a key that is not kept */
  slots: 64,
  /** how long a reloaded tab waits for its old document to let its slot go */
  reloadWaitMs: 2_000
} as const

const STORE = 'identity'

export interface IdentityLease {
  privateKey: PrivateKey
  /** the slot held, or undefined when every slot was taken (the key is then not kept) */
  slot?: number
  /** lets the next tab (or this one, reloaded) take the slot */
  release: () => void
}

export interface IdentityOptions {
  /** the IndexedDB database holding the keys */
  database?: string
  slots?: number
}

/**
 * The key of this tab's slot: the one it had before a reload, else the first
 * free one. The key is created and stored on first use.
 */
export async function leaseIdentity (options: IdentityOptions = {}): Promise<IdentityLease> {
  const database = options.database ?? IDENTITY_DEFAULTS.database
  const slots = options.slots ?? IDENTITY_DEFAULTS.slots
  const lockName = (slot: number): string => `${database}:identity:${slot}`
  // A reloaded tab keeps its sessionStorage. Its old document may still hold
  // the lock for a moment after unloading, so wait for it a little.
  const previous = Number(sessionStorage.getItem(`${database}:identity-slot`) ?? NaN)
  let slot: number | undefined
  let release = Number.isInteger(previous) && previous >= 0 && previous < slots ? await tryLock(lockName(previous), IDENTITY_DEFAULTS.reloadWaitMs) : undefined
  if (release !== undefined) slot = previous
  for (let s = 0; release === undefined && s < slots; s++) {
    release = await tryLock(lockName(s))
    if (release !== undefined) slot = s
  }
  if (release === undefined || slot === undefined) {
    log('all %d identity slots are in use; this tab gets a new identity that is not kept', slots)
    return { privateKey: await generateKeyPair('Ed25519'), release: () => {} }
  }
  try {
    const privateKey = await loadOrCreate(database, `slot-${slot}`)
    sessionStorage.setItem(`${database}:identity-slot`, String(slot))
    return { privateKey, slot, release }
  } catch (err) {
    release()
    throw err
  }
}

/** Takes the Web Lock `name` if nobody holds it (or it is let go within `waitMs`); the returned function lets it go. */
async function tryLock (name: string, waitMs = 0): Promise<(() => void) | undefined> {
  const options: LockOptions = waitMs > 0 ? { signal: AbortSignal.timeout(waitMs) } : { ifAvailable: true }
  return await new Promise((resolve, reject) => {
    navigator.locks.request(name, options, async lock => {
      if (lock === null) {
        resolve(undefined)
        return
      }
      // The lock is held for as long as this callback's promise is pending.
      await new Promise<void>(release => { resolve(release) })
    }).catch((err: Error) => {
      if (err.name === 'AbortError' || err.name === 'TimeoutError') resolve(undefined)
      else reject(err)
    })
  })
}

async function loadOrCreate (database: string, key: string): Promise<PrivateKey> {
  const db = await openDatabase(database)
  try {
    const stored = await request<unknown>(db.transaction(STORE, 'readonly').objectStore(STORE).get(key))
    if (stored instanceof Uint8Array) {
      try {
        return privateKeyFromProtobuf(stored)
      } catch (err) {
        log.error('the key in %s/%s is unreadable, replacing it: %e', database, key, err)
      }
    }
    const privateKey = await generateKeyPair('Ed25519')
    const tx = db.transaction(STORE, 'readwrite')
    tx.objectStore(STORE).put(privateKeyToProtobuf(privateKey), key)
    // Only a committed key is ours for good.
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => { resolve() }
      tx.onerror = tx.onabort = () => { reject(tx.error ?? new Error('IndexedDB transaction failed')) }
    })
    return privateKey
  } finally {
    db.close()
  }
}

async function openDatabase (name: string): Promise<IDBDatabase> {
  const open = indexedDB.open(name, 1)
  open.onupgradeneeded = () => { open.result.createObjectStore(STORE) }
  return await request(open)
}

async function request<T> (req: IDBRequest<T>): Promise<T> {
  return await new Promise((resolve, reject) => {
    req.onsuccess = () => { resolve(req.result) }
    req.onerror = () => { reject(req.error ?? new Error('IndexedDB request failed')) }
  })
}
