/**
 * Issue 6, test 4: the page draws the mesh. With two Node peers and two tabs,
 * the picture shows four peers (two tabs as circles, two Node peers as
 * squares) and the connections between them, and an arrow for a transfer in
 * flight. The screenshot goes to test/artifacts/mesh.png (ignored by git).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { startBrowserCluster, withCluster } from './harness.ts'

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
const MiB = 2 ** 20

declare global {
  interface Window {
    /** the transfer loop the test starts in tab A */
    flows?: { stop: boolean, done: Promise<number>, errors: string[] }
  }
}

test('the page draws the mesh: four peers, their connections, and a transfer in flight', { timeout: 180_000 }, async t => {
  const c = await startBrowserCluster({ tabs: 2, nodes: 2 })
  await withCluster(c, async () => {
    const [a, b] = c.tabs
    await a.page.setViewportSize({ width: 1280, height: 860 })

    // Every peer and every connection: 4 peers are 6 pairs, each connected.
    const picture = async (): Promise<{ browser: number, node: number, links: number, self: string | null, transports: string[], shapes: string[] }> =>
      await a.page.evaluate(() => {
        const svg = document.querySelector('#picture svg')!
        return {
          browser: svg.querySelectorAll('.peer.browser').length,
          node: svg.querySelectorAll('.peer.node').length,
          links: svg.querySelectorAll('.link').length,
          self: svg.querySelector('.peer.self')?.getAttribute('data-peer') ?? null,
          transports: Array.from(svg.querySelectorAll('.link'), l => Array.from(l.classList).find(k => k.startsWith('link-'))?.slice(5) ?? '?').sort(),
          shapes: Array.from(svg.querySelectorAll('.peer'), g => `${g.classList.contains('browser') ? 'browser' : 'node'} ${g.firstElementChild?.tagName ?? '?'}`).sort()
        }
      })
    await a.page.waitForFunction(() => {
      const svg = document.querySelector('#picture svg')
      return svg !== null && svg.querySelectorAll('.peer.browser').length === 2 && svg.querySelectorAll('.peer.node').length === 2 &&
        svg.querySelectorAll('.link').length === 6 && svg.querySelector('.link-relay') === null
    }, undefined, { timeout: 30_000 }).catch(async (err: Error) => { throw new Error(`${err.message}; the picture: ${JSON.stringify(await picture())}`) })
    const drawn = await picture()
    t.diagnostic(`links: ${drawn.transports.join(', ')}`)
    assert.equal(drawn.self, a.peer, 'this tab is marked as itself')
    assert.deepEqual(drawn.transports, ['tcp', 'webrtc', 'ws', 'ws', 'ws', 'ws'], 'Node to Node over TCP, tabs to Node over WebSockets, tab to tab over WebRTC')
    assert.deepEqual(drawn.shapes, ['browser circle', 'browser circle', 'node rect', 'node rect'], 'tabs are circles, Node peers squares')

    // Transfers in flight: tab B pulls 32 MiB objects from tab A, one after
    // another, until the test has seen and photographed the arrow. A transfer
    // that fails is counted and the next one goes on: the picture is what is
    // tested here (transfer.test.ts tests the transfers).
    await a.page.evaluate(({ peer, size }) => {
      const r = window.refmesh
      const mesh = r.mesh!
      const flows: NonNullable<Window['flows']> = { stop: false, done: Promise.resolve(0), errors: [] }
      flows.done = (async () => {
        let n = 0
        while (!flows.stop) {
          const x = mesh.put(r.pattern(size, n))
          // Shared: timedGet takes the Ref itself, and reads it there.
          const got = mesh.fn<(x: unknown) => { bytes: number }>('bench.timedGet').options({ peer, timeoutMs: 60_000 }).remote(r.shared(x))
          try {
            const { bytes } = await mesh.get(got, { timeoutMs: 60_000 })
            if (bytes !== size) throw new Error(`tab B read ${bytes} bytes of ${size}`)
            n++
          } catch (err) {
            flows.errors.push(`${(err as Error).name}: ${(err as Error).message}`)
            if (flows.errors.length >= 3) throw err
          } finally {
            got.release()
            x.release()
          }
        }
        return n
      })()
      flows.done.catch(() => {})
      window.flows = flows
    }, { peer: b.peer, size: 32 * MiB })
    const stopFlows = async (): Promise<{ moved: number, errors: string[] }> => await a.page.evaluate(async () => {
      const flows = window.flows!
      flows.stop = true
      const moved = await flows.done.catch(() => -1)
      return { moved, errors: flows.errors }
    })
    let stopped: { moved: number, errors: string[] } | undefined
    try {
      // The receiver tells the mesh what flows into it; both tabs draw it.
      for (const tab of [b, a]) {
        await tab.page.waitForSelector('#picture svg .flow', { state: 'attached', timeout: 30_000 })
      }
      const arrow = await a.page.evaluate(() => {
        const flow = document.querySelector('#picture svg .flow')
        return { title: flow?.querySelector('title')?.textContent ?? '', label: document.querySelector('#picture svg .flow-label')?.textContent ?? '' }
      })
      t.diagnostic(`the arrow: ${arrow.title}`)
      assert.ok(arrow.title.startsWith(`${a.peer.slice(-6)} → ${b.peer.slice(-6)}`), `from tab A to tab B: ${arrow.title}`)
      assert.match(arrow.label, /^\d+\.\d MB\/s$/)
      assert.match(await a.page.textContent('#status') ?? '', /3 other peer\(s\), 6 connection\(s\)/)
      await mkdir(ARTIFACTS, { recursive: true })
      await a.page.screenshot({ path: `${ARTIFACTS}mesh.png` })
      stopped = await stopFlows()
    } finally {
      stopped ??= await stopFlows().catch(() => undefined)
      t.diagnostic(`${stopped?.moved ?? '?'} objects of 32 MiB went from tab A to tab B${(stopped?.errors.length ?? 0) > 0 ? `; failed: ${stopped?.errors.join('; ')}` : ''}`)
    }
    assert.ok(stopped !== undefined && stopped.moved >= 1, 'at least one transfer went through')

    // Left, the tab draws nothing.
    await a.page.click('#leave')
    await a.page.waitForSelector('#picture svg', { state: 'detached', timeout: 10_000 })
  })
})
