// The README's example: two peers in one process (on a real machine they would be
// separate processes or machines, joined with --bootstrap), pass-by-reference calls.
import { createMesh, shared, RemoteError } from '../node/index.ts'
import type { Ref } from '../node/index.ts'

// Functions are services: each peer registers what it offers.
function tokenize (text: string): string[] {
  return text.toLowerCase().split(/\W+/).filter(w => w.length > 0)
}

const a = await createMesh()                                       // a single-peer mesh
const b = await createMesh({ bootstrap: a.libp2p.getMultiaddrs().map(String) })
try {
  b.register('tokenize', tokenize)
  b.register('count', async (words: Ref<string[]>) => (await b.get(words)).length)
  b.register('fail', () => { throw new Error('no such page') })

  const tok = a.fn<typeof tokenize>('tokenize')                    // a typed stub
  const text = a.put('The quick brown fox jumps over the lazy dog')  // a Ref to a value a owns
  using words = tok.remote(text)                                   // returns at once; b gets text's value
  using n = a.fn<(w: Ref<string[]>) => number>('count').remote(shared(words)) // b gets the Ref itself
  console.log(await a.get(words))                                  // [ 'the', 'quick', ... ]
  console.log(await a.get(n))                                      // 9

  const { ready } = await a.wait([words, n], { count: 2, timeoutMs: 5_000 })
  console.log(`${ready.length} of 2 ready`)

  using bad = a.fn('fail').options({ timeoutMs: 5_000 }).remote()
  await a.get(bad).catch((err: unknown) => {
    if (err instanceof RemoteError) console.log(`${err.remoteName} on ${err.peer.slice(-6)}: ${err.remoteMessage}`)
  })
  text.release()
} finally {
  await b.stop()
  await a.stop()
}
