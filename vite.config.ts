// Builds the browser page (browser/index.html). The page is served with
// COOP/COEP headers so it is crossOriginIsolated (SharedArrayBuffer, OPFS workers).
import { defineConfig } from 'vite'

const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp'
}

export default defineConfig({
  root: 'browser',
  build: { outDir: '../dist/browser', emptyOutDir: true, target: 'es2022' },
  server: { host: '127.0.0.1', headers: isolation },
  preview: { host: '127.0.0.1', headers: isolation }
})
