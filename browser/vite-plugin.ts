/**
 * refmesh/vite: what a web app of one's own needs from Vite to run
 * `refmesh/browser`. Use it as `plugins: [refmesh()]` in vite.config.
 *
 * - applies the WebRTC init-race patch to @libp2p/webrtc (browser/webrtc-init.ts;
 *   the build fails if the patch no longer fits that package);
 * - keeps @libp2p/webrtc and refmesh out of the dev server's dependency
 *   pre-bundling, which skips plugins (the patch would not apply) and breaks
 *   refmesh's module-worker URLs;
 * - serves the app crossOriginIsolated (COOP/COEP) in `vite dev` and
 *   `vite preview`, as the refmesh page is: shared memory between the tab and
 *   its workers needs it.
 */
import { fileURLToPath } from 'node:url'
import type { Plugin } from 'vite'
import { webrtcInitPatch } from './vite-plugin-webrtc-init.ts'

export { webrtcInitPatch, patchInitiateConnection, PATCHED_MODULE } from './vite-plugin-webrtc-init.ts'
export type { WebrtcInitPluginInit } from './vite-plugin-webrtc-init.ts'

export interface RefmeshVitePluginInit {
  /** send COOP/COEP headers from `vite dev` and `vite preview`; default true */
  crossOriginIsolation?: boolean
}

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp'
}

/** browser/webrtc-init next to this module: .ts in a clone, .js in the installed package. */
export const WEBRTC_INIT_HELPER = fileURLToPath(new URL(`./webrtc-init${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url))

export function refmesh (init: RefmeshVitePluginInit = {}): Plugin[] {
  const isolate = init.crossOriginIsolation ?? true
  const config: Plugin = {
    name: 'refmesh:config',
    config () {
      const headers = isolate ? ISOLATION_HEADERS : undefined
      return {
        optimizeDeps: { exclude: ['@libp2p/webrtc', 'refmesh'] },
        server: { headers },
        preview: { headers }
      }
    }
  }
  return [webrtcInitPatch({ helperModule: WEBRTC_INIT_HELPER }), config]
}
