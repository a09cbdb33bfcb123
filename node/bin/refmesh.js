#!/usr/bin/env node
// The refmesh command. npm puts node_modules/.bin (with the pinned Node 24) first on PATH.
import { main } from '../cli.ts'

const code = await main(process.argv.slice(2))
if (code >= 0) process.exit(code)
