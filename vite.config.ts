// Builds the browser page (browser/index.html). The page is served with
// COOP/COEP headers so it is crossOriginIsolated (SharedArrayBuffer, OPFS workers).
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import { webrtcInitPatch } from './browser/vite-plugin-webrtc-init.ts'

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp'
}

export default defineConfig({
  root: fileURLToPath(new URL('./browser', import.meta.url)),
  plugins: [webrtcInitPatch({ helperModule: fileURLToPath(new URL('./browser/webrtc-init.ts', import.meta.url)) })],
  // Pre-bundled dependencies skip plugins: the dev server must serve
  // @libp2p/webrtc as it is, so the patch applies there too.
  optimizeDeps: { exclude: ['@libp2p/webrtc'] },
  // libp2p alone is ~700 kB minified; one bundle is fine for this page.
  build: { outDir: fileURLToPath(new URL('./dist/page', import.meta.url)), emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 2048 },
  server: { host: '127.0.0.1', headers: isolation },
  preview: { host: '127.0.0.1', headers: isolation }
})
