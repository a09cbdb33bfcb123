/**
 * The mesh page: join and leave buttons, and what this tab is linked to.
 * Everything a test or a later view needs is on `window.refmesh`
 * (browser/page-api.ts); the mesh itself is made in browser/mesh.ts.
 */
import { createPageApi } from './page-api.ts'
import type { PageApi } from './page-api.ts'

declare global {
  interface Window {
    refmesh: PageApi
  }
}

const api = createPageApi()
window.refmesh = api

const joinButton = document.querySelector<HTMLButtonElement>('#join')
const leaveButton = document.querySelector<HTMLButtonElement>('#leave')
const status = document.querySelector<HTMLElement>('#status')
const linksView = document.querySelector<HTMLElement>('#links')

function show (text: string): void {
  if (status !== null) status.textContent = text
}

function render (): void {
  const mesh = api.mesh
  if (joinButton !== null) joinButton.disabled = mesh !== undefined
  if (leaveButton !== null) leaveButton.disabled = mesh === undefined
  if (linksView === null) return
  if (mesh === undefined) {
    linksView.textContent = ''
    return
  }
  const known = mesh.peers().filter(p => p.liveness === 'alive').length
  show(`Joined as ${mesh.peerId}. ${known} other peer(s) known.`)
  linksView.textContent = mesh.links()
    .map(l => `${l.peer.slice(-8)}  ${l.transport.padEnd(13)} ${l.direct ? 'direct' : 'relayed'}${l.limited ? ' (limited)' : ''}  ${l.direction}`)
    .join('\n')
}

joinButton?.addEventListener('click', () => {
  show('Joining…')
  api.join().then(render, (err: Error) => { show(`Could not join: ${err.message}`) })
})

leaveButton?.addEventListener('click', () => {
  api.leave().then(() => { show('Left the mesh.'); render() }, (err: Error) => { show(`Could not leave cleanly: ${err.message}`) })
})

setInterval(render, 1_000)
