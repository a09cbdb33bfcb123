/**
 * Where the package's files are, whether this code runs from source (node/*.ts
 * under type stripping, in a clone) or compiled (dist/node/*.js, as installed
 * from npm). The two sit at different depths below the package root.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** true when running the compiled JavaScript of dist/ */
export const COMPILED = !import.meta.url.endsWith('.ts')

/** The folder holding package.json. */
export const PACKAGE_ROOT = fileURLToPath(new URL(COMPILED ? '../..' : '..', import.meta.url))

/** The built mesh page the CLI serves (shipped in the package; rebuilt from source in a clone). */
export const PAGE_DIR = join(PACKAGE_ROOT, 'dist', 'page')
