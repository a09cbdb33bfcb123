/**
 * The mesh page: join and leave, the live picture of the mesh in the middle
 * (browser/mesh-view.ts), and the MapReduce word count run from this tab.
 * Everything a test needs is on `window.refmesh` (browser/page-api.ts); the
 * mesh itself is made in browser/mesh.ts.
 */
import { createPageApi } from './page-api.ts'
import type { MapReduceRun, PageApi } from './page-api.ts'
import { createMeshPicture } from './mesh-view.ts'
import { checkSecureContext, insecureContextMessage } from './secure-context.ts'

declare global {
  interface Window {
    refmesh: PageApi
  }
}

export const PAGE_DEFAULTS = {
  /** peers gossip their state about once a second: redrawing faster shows nothing new */
  redrawMs: 1_000
} as const

const api = createPageApi()
window.refmesh = api

const $ = <T extends HTMLElement>(selector: string): T => {
  const found = document.querySelector<T>(selector)
  if (found === null) throw new Error(`the page has no ${selector}`)
  return found
}

const secretInput = $<HTMLInputElement>('#secret')
const joinButton = $<HTMLButtonElement>('#join')
const leaveButton = $<HTMLButtonElement>('#leave')
const status = $<HTMLElement>('#status')
const pictureBox = $<HTMLElement>('#picture')
const linksView = $<HTMLElement>('#links')
const form = $<HTMLFormElement>('#mapreduce')
const runButton = $<HTMLButtonElement>('#mr-run')
const stopButton = $<HTMLButtonElement>('#mr-stop')
const resultView = $<HTMLElement>('#mr-result')

// Said at once, in words, rather than as a TypeError after pressing Join.
const insecure = insecureContextMessage(checkSecureContext(), location)

const picture = createMeshPicture()
const placeholder = pictureBox.firstElementChild
const short = (peer: string): string => `…${peer.slice(-6)}`

function show (text: string): void {
  status.textContent = text
}

function render (): void {
  const mesh = api.mesh
  joinButton.disabled = mesh !== undefined || insecure !== undefined
  secretInput.disabled = mesh !== undefined
  leaveButton.disabled = mesh === undefined
  renderRun(api.mapReduce)
  if (mesh === undefined) {
    if (picture.element.isConnected) pictureBox.replaceChildren(...placeholder === null ? [] : [placeholder])
    linksView.textContent = ''
    return
  }
  if (!picture.element.isConnected) pictureBox.replaceChildren(picture.element)
  const drawn = picture.draw(mesh.view())
  show(`Joined as ${short(mesh.peerId)}: ${drawn.peers - 1} other peer(s), ${drawn.links} connection(s)${drawn.flows > 0 ? `, ${drawn.flows} transfer(s) in flight` : ''}.`)
  linksView.textContent = mesh.links()
    .map(l => `${short(l.peer)}  ${l.transport.padEnd(13)} ${l.direct ? 'direct' : 'relayed'}${l.limited ? ' (limited)' : ''}  ${l.direction}`)
    .join('\n')
}

function stage (name: 'map' | 'reduce', progress: [number, number] | undefined): void {
  const bar = $<HTMLProgressElement>(`#mr-${name}`)
  const text = $<HTMLElement>(`#mr-${name}-text`)
  bar.max = Math.max(1, progress?.[1] ?? 1)
  bar.value = progress?.[0] ?? 0
  text.textContent = progress === undefined ? '–' : `${progress[0]}/${progress[1]}`
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`
const count = (n: number): string => n.toLocaleString('en-US')

function renderRun (run: MapReduceRun | undefined): void {
  const running = run?.state === 'running' || run?.state === 'checking'
  runButton.disabled = api.mesh === undefined || running
  stopButton.disabled = !running
  stage('map', run?.progress.map)
  stage('reduce', run?.progress.reduce)
  resultView.dataset.state = run?.state ?? ''
  if (run === undefined) {
    resultView.replaceChildren()
    return
  }
  if (run.state === 'running') {
    resultView.textContent = 'Running…'
    return
  }
  if (run.state === 'checking') {
    resultView.textContent = 'The mesh has answered; counting the words in this tab to check it…'
    return
  }
  if (run.state === 'failed' || run.result === undefined) {
    const error = document.createElement('p')
    error.id = 'mr-error'
    error.textContent = `The run failed: ${run.error ?? 'no reason given'}`
    resultView.replaceChildren(error)
    return
  }
  const r = run.result
  if (resultView.dataset.shown === r.digest + String(r.elapsedMs)) return
  resultView.dataset.shown = r.digest + String(r.elapsedMs)
  const summary = document.createElement('p')
  summary.textContent = `${count(r.totalWords)} words (${count(r.distinctWords)} distinct) in ${seconds(r.elapsedMs)}; maps done at ${seconds(r.mapMs)}.`
  const table = document.createElement('table')
  table.id = 'mr-top'
  table.createCaption().textContent = 'top words'
  r.top.forEach(([word, n], i) => {
    const row = table.insertRow()
    row.insertCell().textContent = `${i + 1}.`
    row.insertCell().textContent = word
    const c = row.insertCell()
    c.className = 'n'
    c.textContent = count(n)
    const share = row.insertCell()
    share.className = 'n'
    share.textContent = `${(100 * n / r.totalWords).toFixed(2)}%`
  })
  const self = api.mesh?.peerId
  const placed = document.createElement('p')
  placed.textContent = 'maps ran on: ' + Object.entries(r.mapsPlaced)
    .sort((a, b) => b[1] - a[1])
    .map(([peer, n]) => `${peer === self ? 'this tab' : short(peer)} ${n}`).join(', ')
  const check = document.createElement('p')
  check.id = 'mr-check'
  check.className = r.matches ? 'ok' : 'bad'
  check.dataset.matches = String(r.matches)
  check.textContent = r.matches
    ? `✓ matches a count made in this tab (every word's count, digest ${r.digest}; ${seconds(r.checkMs)}).`
    : `✗ differs from a count made in this tab: digest ${r.digest} vs ${r.expected.digest}, ${count(r.totalWords)} vs ${count(r.expected.totalWords)} words.`
  resultView.replaceChildren(summary, table, placed, check)
}

function join (): void {
  show('Joining…')
  joinButton.disabled = true
  // The secret stays in this tab: it proves itself to each peer, it never sends the secret.
  const secret = secretInput.value
  api.join(secret === '' ? {} : { secret }).then(render, (err: Error) => { show(`Could not join: ${err.message}`); render() })
}

if (insecure !== undefined) {
  const box = $<HTMLElement>('#insecure')
  box.textContent = insecure
  box.hidden = false
  joinButton.disabled = true
  show('This tab cannot join from this address (see above).')
}

joinButton.addEventListener('click', join)
secretInput.addEventListener('keydown', event => { if (event.key === 'Enter' && api.mesh === undefined) join() })

// A private mesh: the page asks for the secret (the server that sent the page does not know it).
api.info().then(info => {
  if (!info.private || api.mesh !== undefined) return
  secretInput.hidden = false
  show('This mesh is private: enter its secret to join.')
}, () => {})

leaveButton.addEventListener('click', () => {
  api.leave().then(() => { render(); show('Left the mesh.') }, (err: Error) => { render(); show(`Could not leave cleanly: ${err.message}`) })
})

form.addEventListener('submit', event => {
  event.preventDefault()
  const value = (id: string): number => Number($<HTMLInputElement | HTMLSelectElement>(id).value)
  api.runMapReduce({
    maps: value('#mr-maps'),
    reduces: value('#mr-reduces'),
    shardBytes: value('#mr-shard'),
    seed: value('#mr-seed'),
    spread: $<HTMLInputElement>('#mr-spread').checked,
    onProgress: () => { renderRun(api.mapReduce) }
  }).catch(() => {}).finally(() => { renderRun(api.mapReduce) })
  renderRun(api.mapReduce)
})

stopButton.addEventListener('click', () => { api.stopMapReduce() })

setInterval(render, PAGE_DEFAULTS.redrawMs)
