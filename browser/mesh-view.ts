/**
 * The live picture of the mesh on the page: one SVG, redrawn from `mesh.view()`
 * (every peer's last gossiped state) about once a second.
 *
 *   - a peer is a node on a circle: Node peers are squares, tabs are circles,
 *     this tab has a thick outline; a suspect peer is faded;
 *   - under each peer a bar shows its store's fill (memory; the part spilled to
 *     disk or OPFS in a lighter shade beside it), and a badge the calls it is
 *     running (and queued);
 *   - connections are edges: solid for TCP and WebSockets, green for WebRTC
 *     (direct, tab to tab or tab to Node), dashed for relayed;
 *   - transfers in flight are arrows from source to receiver along the edge,
 *     as thick as their throughput (log scale), labelled in MB/s.
 * Everything is drawn from state that peers gossip anyway; the page asks nobody.
 */
import type { Mesh } from '../core/mesh.ts'

type View = ReturnType<Mesh['view']>
type PeerView = View[number]

const SVG = 'http://www.w3.org/2000/svg'
const SIZE = 640
const RADIUS = 220
const NODE = 26

const TRANSPORT_STYLE: Record<string, { stroke: string, dash?: string }> = {
  tcp: { stroke: '#8a8f98' },
  ws: { stroke: '#8a8f98' },
  'webrtc-direct': { stroke: '#2e9d5b' },
  webrtc: { stroke: '#2e9d5b' },
  relay: { stroke: '#b0b4ba', dash: '6 5' }
}

function el<K extends keyof SVGElementTagNameMap> (name: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  if (text !== undefined) node.textContent = text
  return node
}

function mb (bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(bytes >= 1e7 ? 0 : 1)} MB`
}

/** A stable place for each peer: sorted by id, so peers keep their places as others come and go. */
function layout (peers: PeerView[]): Map<string, { x: number, y: number }> {
  const sorted = [...peers].sort((a, b) => (a.self ? -1 : b.self ? 1 : a.peer < b.peer ? -1 : 1))
  const at = new Map<string, { x: number, y: number }>()
  sorted.forEach((p, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, sorted.length)
    at.set(p.peer, { x: SIZE / 2 + RADIUS * Math.cos(angle), y: SIZE / 2 + RADIUS * Math.sin(angle) })
  })
  return at
}

export interface MeshPicture {
  readonly element: SVGSVGElement
  /** redraws from a fresh view; returns what it drew (tests read it) */
  draw: (view: View) => { peers: number, links: number, flows: number }
}

export function createMeshPicture (): MeshPicture {
  const svg = el('svg', { viewBox: `0 0 ${SIZE} ${SIZE}`, width: SIZE, height: SIZE, role: 'img', 'aria-label': 'the mesh', id: 'mesh-picture' })
  const defs = el('defs', {})
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 4, markerHeight: 4, orient: 'auto-start-reverse' })
  marker.append(el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#d9622b' }))
  defs.append(marker)

  const draw = (view: View): { peers: number, links: number, flows: number } => {
    const live = view.filter(p => p.liveness !== 'dead')
    const at = layout(live)
    svg.replaceChildren(defs)
    const edges = el('g', { class: 'links' })
    const arrows = el('g', { class: 'flows' })
    const nodes = el('g', { class: 'peers' })
    svg.append(edges, arrows, nodes)

    // Each connection is reported by both ends, and two tabs may have a
    // relayed connection beside their direct one: one edge per pair, direct first.
    const pairs = new Map<string, { a: string, b: string, transport: string }>()
    for (const p of live) {
      for (const link of p.state?.links ?? []) {
        if (!at.has(p.peer) || !at.has(link.peer)) continue
        const key = [p.peer, link.peer].sort().join(' ')
        const seen = pairs.get(key)
        if (seen === undefined || (seen.transport === 'relay' && link.transport !== 'relay')) pairs.set(key, { a: p.peer, b: link.peer, transport: link.transport })
      }
    }
    for (const { a: from, b: to, transport } of pairs.values()) {
      const a = at.get(from) as { x: number, y: number }
      const b = at.get(to) as { x: number, y: number }
      const style = TRANSPORT_STYLE[transport] ?? TRANSPORT_STYLE.tcp
      const line = el('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y, stroke: style.stroke, 'stroke-width': 1.5, class: `link link-${transport}` })
      if (style.dash !== undefined) line.setAttribute('stroke-dasharray', style.dash)
      line.append(el('title', {}, `${from.slice(-6)} ↔ ${to.slice(-6)}: ${transport}`))
      edges.append(line)
    }

    let flows = 0
    for (const p of live) {
      for (const flow of p.state?.flows ?? []) {
        const from = at.get(flow.from)
        const to = at.get(p.peer)
        if (from === undefined || to === undefined || flow.bytesPerSecond <= 0) continue
        flows++
        // Stop short of the nodes, and sit a little off the edge so both directions show.
        const dx = to.x - from.x
        const dy = to.y - from.y
        const len = Math.hypot(dx, dy)
        const ox = (-dy / len) * 6
        const oy = (dx / len) * 6
        const trim = (NODE + 6) / len
        const width = Math.max(2, Math.min(12, 2 + 2 * Math.log10(1 + flow.bytesPerSecond / 1e5)))
        const x1 = from.x + dx * trim + ox
        const y1 = from.y + dy * trim + oy
        const x2 = to.x - dx * trim + ox
        const y2 = to.y - dy * trim + oy
        const arrow = el('line', { x1, y1, x2, y2, stroke: '#d9622b', 'stroke-width': width, 'stroke-opacity': 0.8, 'marker-end': 'url(#arrow)', class: 'flow' })
        arrow.append(el('title', {}, `${flow.from.slice(-6)} → ${p.peer.slice(-6)}: ${(flow.bytesPerSecond / 1e6).toFixed(1)} MB/s`))
        arrows.append(arrow, el('text', { x: (x1 + x2) / 2 + ox * 2, y: (y1 + y2) / 2 + oy * 2, 'font-size': 11, fill: '#b34d1c', 'text-anchor': 'middle', class: 'flow-label' }, `${(flow.bytesPerSecond / 1e6).toFixed(1)} MB/s`))
      }
    }

    for (const p of live) {
      const { x, y } = at.get(p.peer) as { x: number, y: number }
      const s = p.state
      const g = el('g', { class: `peer ${s?.runtime ?? 'unknown'}${p.self ? ' self' : ''}`, 'data-peer': p.peer, opacity: p.liveness === 'suspect' ? 0.4 : 1 })
      const fill = s?.runtime === 'browser' ? '#e8f0fe' : '#f1f3f4'
      const outline = { stroke: p.self ? '#1a73e8' : '#5f6368', 'stroke-width': p.self ? 4 : 1.5, fill }
      g.append(s?.runtime === 'browser'
        ? el('circle', { cx: x, cy: y, r: NODE, ...outline })
        : el('rect', { x: x - NODE, y: y - NODE, width: 2 * NODE, height: 2 * NODE, rx: 5, ...outline }))
      g.append(el('text', { x, y: y + 4, 'font-size': 11, 'text-anchor': 'middle' }, s?.runtime === 'browser' ? 'tab' : 'node'))
      g.append(el('text', { x, y: y - NODE - 8, 'font-size': 11, 'text-anchor': 'middle', fill: '#3c4043' }, `${p.self ? 'this tab · ' : ''}…${p.peer.slice(-6)}`))

      // The store: memory in use of capacity, and what is spilled beside it.
      const used = s?.storeUsed ?? 0
      const capacity = Math.max(1, s?.storeCapacity ?? 1)
      const barW = 64
      const bx = x - barW / 2
      const by = y + NODE + 8
      const share = Math.min(1, used / capacity)
      g.append(el('rect', { x: bx, y: by, width: barW, height: 8, fill: '#fff', stroke: '#9aa0a6', class: 'store' }))
      g.append(el('rect', { x: bx, y: by, width: barW * share, height: 8, fill: share > 0.8 ? '#d93025' : share > 0.6 ? '#f29900' : '#1e8e3e', class: 'store-fill' }))
      if ((s?.spilledBytes ?? 0) > 0) g.append(el('rect', { x: bx + barW + 2, y: by, width: Math.min(30, 4 + 4 * Math.log10(1 + (s?.spilledBytes ?? 0) / 1e6)), height: 8, fill: '#c5a3e0', class: 'spilled' }))
      g.append(el('text', { x, y: by + 20, 'font-size': 10, 'text-anchor': 'middle', fill: '#5f6368' }, `${mb(used)} / ${mb(capacity)}${(s?.spilledBytes ?? 0) > 0 ? ` · ${mb(s?.spilledBytes ?? 0)} spilled` : ''}`))

      // Calls: running (and queued) as a badge on the node's corner.
      const running = s?.running ?? 0
      const queued = s?.queued ?? 0
      if (running + queued > 0) {
        g.append(el('circle', { cx: x + NODE, cy: y - NODE, r: 11, fill: '#1a73e8', class: 'running' }))
        g.append(el('text', { x: x + NODE, y: y - NODE + 4, 'font-size': 11, 'text-anchor': 'middle', fill: '#fff' }, queued > 0 ? `${running}+${queued}` : String(running)))
      }
      g.append(el('title', {}, `${p.peer}\n${s?.runtime ?? '?'} peer, ${p.liveness}\nstore ${mb(used)} of ${mb(capacity)}, ${mb(s?.spilledBytes ?? 0)} spilled\n${running} running, ${queued} queued, ${s?.slots ?? 0} slots\noffers ${(s?.functions ?? []).join(', ')}`))
      nodes.append(g)
    }

    svg.append(legend())
    return { peers: live.length, links: pairs.size, flows }
  }
  return { element: svg, draw }
}

function legend (): SVGGElement {
  const g = el('g', { class: 'legend', 'font-size': 10, fill: '#3c4043' })
  const rows: Array<[string, (y: number) => SVGElement]> = [
    ['Node peer', y => el('rect', { x: 4, y: y - 8, width: 10, height: 10, fill: '#f1f3f4', stroke: '#5f6368' })],
    ['tab', y => el('circle', { cx: 9, cy: y - 3, r: 5, fill: '#e8f0fe', stroke: '#5f6368' })],
    ['TCP / WebSockets', y => el('line', { x1: 2, y1: y - 3, x2: 16, y2: y - 3, stroke: TRANSPORT_STYLE.tcp.stroke, 'stroke-width': 2 })],
    ['WebRTC (direct)', y => el('line', { x1: 2, y1: y - 3, x2: 16, y2: y - 3, stroke: TRANSPORT_STYLE.webrtc.stroke, 'stroke-width': 2 })],
    ['relayed', y => el('line', { x1: 2, y1: y - 3, x2: 16, y2: y - 3, stroke: TRANSPORT_STYLE.relay.stroke, 'stroke-dasharray': '4 3', 'stroke-width': 2 })],
    ['transfer (MB/s)', y => el('line', { x1: 2, y1: y - 3, x2: 16, y2: y - 3, stroke: '#d9622b', 'stroke-width': 4 })],
    ['store fill', y => el('rect', { x: 2, y: y - 7, width: 14, height: 6, fill: '#1e8e3e' })],
    ['calls running', y => el('circle', { cx: 9, cy: y - 3, r: 5, fill: '#1a73e8' })]
  ]
  rows.forEach(([label, icon], i) => {
    const y = 14 + i * 14
    g.append(icon(y), el('text', { x: 22, y }, label))
  })
  return g
}
