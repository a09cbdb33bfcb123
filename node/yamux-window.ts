/**
 * A maintained patch of one function of @chainsafe/libp2p-yamux 8.0.1:
 * `YamuxStream.sendWindowUpdate` sends a window update after every data frame
 * it receives, so every small message costs the receiver one more encrypted
 * frame and two more syscalls, on the critical path of a request/response.
 * Like rust-yamux and go-yamux, we send the update only once half the receive
 * window is used (or when the original must send flags, or is paused). Bulk
 * transfers keep a full pipeline: half a window is always granted ahead.
 *
 * test/yamux-window.test.ts checks the patch is installed, skips updates for
 * small messages, and that bulk transfers still run.
 */
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

interface WindowState {
  state: number
  recvWindow: number
  recvWindowCapacity: number
}

export const yamuxWindowPatch = { installed: false, skipped: 0 }

const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: WindowState) => void }
const original = proto.sendWindowUpdate
if (typeof original !== 'function') {
  throw new Error('@chainsafe/libp2p-yamux changed: YamuxStream.sendWindowUpdate is gone; revisit node/yamux-window.ts')
}
proto.sendWindowUpdate = function (this: WindowState): void {
  if (this.state === StreamState.Established && this.recvWindowCapacity * 2 >= this.recvWindow) {
    yamuxWindowPatch.skipped++
    return
  }
  original.call(this)
}
yamuxWindowPatch.installed = true
