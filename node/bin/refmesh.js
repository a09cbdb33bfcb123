#!/usr/bin/env node
// The refmesh command. In a clone it runs node/cli.ts under type stripping (npm scripts put
// node_modules/.bin, with the pinned Node 24, first on PATH); the package runs it compiled,
// as dist/node/bin/refmesh.js (scripts/build.mjs), on the user's Node.
//
// Loading the command takes a second, and many on a busy machine; a SIGINT or SIGTERM
// meanwhile (a service stopped as it starts) ends it with status 0, as nothing has started.
const early = () => process.exit(0)
process.once('SIGINT', early)
process.once('SIGTERM', early)
const { main } = await import('../cli.ts')
process.removeListener('SIGINT', early)
process.removeListener('SIGTERM', early)

const code = await main(process.argv.slice(2))
if (code >= 0) process.exit(code)
