/**
 * The page's check of a MapReduce run (page-mapreduce.ts): the same word
 * count in this worker, one shard at a time, off the tab's main thread.
 */
import { wordCountLocal } from '../examples/mapreduce.ts'
import type { MapReduceOptions } from '../examples/mapreduce.ts'

type Request = Pick<MapReduceOptions, 'maps' | 'shardBytes' | 'seed'>

const scope = globalThis as unknown as {
  postMessage: (message: unknown) => void
  addEventListener: (type: 'message', listener: (event: MessageEvent<Request>) => void) => void
}

scope.addEventListener('message', event => {
  try {
    scope.postMessage({ count: wordCountLocal(event.data) })
  } catch (err) {
    scope.postMessage({ error: (err as Error).message })
  }
})
