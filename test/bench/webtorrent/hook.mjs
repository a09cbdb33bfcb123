// node --import ./hook.mjs: resolves webrtc-polyfill to the stub, for the WebTorrent baseline.
import { registerHooks } from 'node:module'
const stub = new URL('./stub-webrtc.mjs', import.meta.url).href
registerHooks({
  resolve (specifier, context, next) {
    if (specifier === 'webrtc-polyfill') return { url: stub, shortCircuit: true, format: 'module' }
    return next(specifier, context)
  }
})
