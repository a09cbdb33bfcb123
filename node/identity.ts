/** A Node peer's identity: an Ed25519 key kept in a file, so the peer id survives restarts. */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

export async function loadOrCreateIdentity (file: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(`cannot read the identity file ${file}: ${(err as Error).message}`)
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(file), { recursive: true })
  // Written aside and renamed into place: a peer stopped mid-write (a service stopped
  // as it starts) must not leave a truncated key that every restart then refuses.
  const partial = `${file}.${process.pid}.partial`
  await writeFile(partial, privateKeyToProtobuf(key), { mode: 0o600 })
  await rename(partial, file)
  return key
}
