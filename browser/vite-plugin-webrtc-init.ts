/**
 * A Vite plugin that maintains our patch of @libp2p/webrtc 6.0.33's dialer
 * (see browser/webrtc-init.ts for the race it fixes). At build time it swaps
 * the dialer's wait for the `init` channel's `open` and `close` events for a
 * call to `settleInitChannel`, and fails the build if the code it replaces is
 * not there exactly once, or if @libp2p/webrtc was bundled without the patch:
 * an upgrade of @libp2p/webrtc must be looked at, never silently unpatched.
 */
import type { Plugin } from 'vite'

/** The module the patch applies to, as its id ends. */
export const PATCHED_MODULE = '/@libp2p/webrtc/dist/src/private-to-private/initiate-connection.js'

/** The original statements, compared with runs of whitespace collapsed. */
const ORIGINAL = `
        if (channel.readyState !== 'open') {
            log.trace('wait for init channel to open');
            await pEvent(channel, 'open', {
                signal
            });
        }
        log.trace('closing init channel');
        channel.close();
        // wait for init channel to close before proceeding, otherwise the channel
        // id can be reused before both sides have seen the channel close
        log.trace('waiting for init channel to close');
        await pEvent(channel, 'close', {
            signal
        });`

const HELPER = '__refmeshSettleInitChannel'

function escapeRegExp (s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** The original statements as a pattern that tolerates any whitespace between tokens. */
const ORIGINAL_PATTERN = new RegExp(ORIGINAL.trim().split(/\s+/).map(escapeRegExp).join('\\s+'), 'g')

/** Applies the patch to the source of initiate-connection.js; throws if it does not apply exactly once. */
export function patchInitiateConnection (code: string, helperModule: string): string {
  const matches = code.match(ORIGINAL_PATTERN) ?? []
  if (matches.length !== 1) {
    throw new Error(`@libp2p/webrtc changed: found the init channel wait ${matches.length} times in initiate-connection.js (expected once); revisit browser/webrtc-init.ts`)
  }
  const call = `await ${HELPER}(channel, signal); // refmesh: browser/webrtc-init.ts`
  return `import { settleInitChannel as ${HELPER} } from ${JSON.stringify(helperModule)};\n` + code.replace(ORIGINAL_PATTERN, call)
}

export interface WebrtcInitPluginInit {
  /** the absolute path of browser/webrtc-init.ts */
  helperModule: string
}

export function webrtcInitPatch (init: WebrtcInitPluginInit): Plugin {
  let sawWebrtc = false
  let patched = false
  return {
    name: 'refmesh:webrtc-init-patch',
    enforce: 'pre',
    buildStart () {
      sawWebrtc = false
      patched = false
    },
    transform (code, id) {
      const path = id.split('?')[0].replaceAll('\\', '/')
      if (path.includes('/@libp2p/webrtc/')) sawWebrtc = true
      if (!path.endsWith(PATCHED_MODULE)) return null
      patched = true
      return { code: patchInitiateConnection(code, init.helperModule), map: null }
    },
    buildEnd (err) {
      if (err === undefined && sawWebrtc && !patched) {
        this.error(`@libp2p/webrtc was bundled but ${PATCHED_MODULE} was not: the WebRTC init race patch did not apply (browser/webrtc-init.ts)`)
      }
    }
  }
}
