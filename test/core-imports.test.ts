/** core/ stays a tree of parts: no import cycles, the facade small, no file too large (see core/context.ts). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const CORE = resolve(dirname(fileURLToPath(import.meta.url)), '../core')

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sources(path)
    return name.endsWith('.ts') ? [path] : []
  })
}

/** Relative imports of each core/ file (type-only ones too: a cycle of types is still a cycle of concepts). */
function importGraph (): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const file of sources(CORE)) {
    const text = readFileSync(file, 'utf8')
    const targets = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm)].map(m => resolve(dirname(file), m[1]))
    graph.set(file, targets.filter(t => t.startsWith(CORE)))
  }
  return graph
}

/** A cycle as a list of files, or undefined. */
export function findCycle (graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node]
    state.set(node, 'open')
    path.push(node)
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next)
      if (cycle !== undefined) return cycle
    }
    path.pop()
    state.set(node, 'done')
    return undefined
  }
  for (const node of graph.keys()) {
    const cycle = visit(node)
    if (cycle !== undefined) return cycle
  }
  return undefined
}

test('the cycle finder finds a cycle, and passes a tree', () => {
  assert.deepEqual(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]])), ['a', 'b', 'c', 'a'])
  assert.equal(findCycle(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), undefined)
})

test('core/ has no import cycles', () => {
  const graph = importGraph()
  assert.ok(graph.size > 20, `read ${graph.size} files of core/`)
  assert.ok((graph.get(join(CORE, 'mesh.ts')) ?? []).length > 10, 'the imports of mesh.ts were read')
  const cycle = findCycle(graph)
  assert.equal(cycle, undefined, `import cycle: ${cycle?.map(f => relative(CORE, f)).join(' -> ')}`)
})

test('core/mesh.ts is the facade (at most 500 lines) and no core/ file passes 700 lines', () => {
  for (const file of sources(CORE)) {
    const lines = readFileSync(file, 'utf8').split('\n').length - 1
    const limit = file === join(CORE, 'mesh.ts') ? 500 : 700
    assert.ok(lines <= limit, `${relative(CORE, file)} has ${lines} lines (limit ${limit})`)
  }
})
