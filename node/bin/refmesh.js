#!/usr/bin/env node
// The refmesh command. In a clone it runs node/cli.ts under type stripping (npm scripts put
// node_modules/.bin, with the pinned Node 24, first on PATH); the package runs it compiled,
// as dist/node/bin/refmesh.js (scripts/build.mjs), on the user's Node.
import { main } from '../cli.ts'

const code = await main(process.argv.slice(2))
if (code >= 0) process.exit(code)
