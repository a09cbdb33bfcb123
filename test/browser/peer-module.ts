/** What Node peers offer in browser tests and benchmarks (`refmesh peer --module`). */
import type { Mesh } from '../../node/index.ts'
import registerFixtures from '../fixtures/functions.ts'
import { registerBenchFunctions } from '../../browser/bench-functions.ts'

export default async function register (mesh: Mesh): Promise<void> {
  registerFixtures(mesh)
  await registerBenchFunctions(mesh)
}
