/**
 * Node's CallContext (core/executor.ts): AsyncLocalStorage follows a running
 * call through every await, so a `get` or `wait` anywhere in it lends the
 * call's share of the peer, not only in its synchronous part.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { CallContext, CallShare } from '../core/executor.ts'

export class AsyncCallContext implements CallContext {
  private readonly storage = new AsyncLocalStorage<CallShare>()

  run <T>(share: CallShare, fn: () => T): T {
    return this.storage.run(share, fn)
  }

  current (): CallShare | undefined {
    return this.storage.getStore()
  }
}
