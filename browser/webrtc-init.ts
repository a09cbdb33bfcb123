/**
 * The fix for a race in @libp2p/webrtc 6.0.33's WebRTC dialer
 * (`initiateConnection` in dist/src/private-to-private/initiate-connection.js).
 *
 * The dialer creates a data channel labelled `init` only so the peer
 * connection gathers candidates. The answering side closes that channel as
 * soon as it sees it. Once ICE reports `connected`, the dialer waits for
 * `init` to fire `open`, closes it and waits for `close`. In Chromium the
 * channel can open AND be closed by the other side before `connected` is
 * reported; `open` has then already fired, so the dialer waits for it forever
 * (until the dial times out: about one in eight dials when two tabs dial each
 * other at once, as they do when they meet).
 *
 * `settleInitChannel` replaces those waits and accepts the events in any order:
 * it waits for `open` only while the channel is still connecting, closes it only
 * if it is open, and waits for `close` only if it has not closed yet. The
 * original's purpose is kept: the dial goes on only once both sides have seen
 * `init` closed, so its channel id is not reused too early.
 *
 * browser/vite-plugin-webrtc-init.ts swaps it into the bundle at build time and
 * fails the build if the code it replaces has changed. test/browser/
 * webrtc-init.test.ts checks both, and dials tab to tab repeatedly.
 */
import { logger } from '@libp2p/logger'
import { abortReason } from '../core/signals.ts'

const log = logger('refmesh:webrtc-init')

/** The part of RTCDataChannel this needs (a fake in unit tests). */
export interface InitChannel extends EventTarget {
  readonly readyState: 'connecting' | 'open' | 'closing' | 'closed'
  close: () => void
}

/** How often each path was taken in this page: `late` counts the race the original hangs on. */
export const webrtcInitStats = { settled: 0, late: 0 }

/** Waits until the dialer's `init` channel has opened and closed, whatever order its events came in. */
export async function settleInitChannel (channel: InitChannel, signal?: AbortSignal): Promise<void> {
  if (channel.readyState === 'closing' || channel.readyState === 'closed') {
    webrtcInitStats.late++
    log('init channel already %s when the peer connection reported connected', channel.readyState)
  }
  if (channel.readyState === 'connecting') await nextEvent(channel, ['open', 'close'], signal)
  // The other side's close may have landed while we waited for `open`.
  if (channel.readyState === 'open') channel.close()
  if (channel.readyState !== 'closed') await nextEvent(channel, ['close'], signal)
  webrtcInitStats.settled++
}

/** Resolves at the first of `events` on `target`; rejects with a typed error when `signal` fires first. */
async function nextEvent (target: EventTarget, events: string[], signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted === true) throw abortReason(signal, 'WebRTC init channel')
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      for (const e of events) target.removeEventListener(e, onEvent)
      signal?.removeEventListener('abort', onAbort)
    }
    const onEvent = (): void => { done(); resolve() }
    const onAbort = (): void => { done(); reject(abortReason(signal as AbortSignal, 'WebRTC init channel')) }
    for (const e of events) target.addEventListener(e, onEvent)
    signal?.addEventListener('abort', onAbort)
  })
}
