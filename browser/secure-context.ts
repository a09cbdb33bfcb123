/**
 * A tab is a full peer only in a secure context: browsers give a page loaded
 * over plain http from any host but this machine's loopback no crypto.subtle
 * (chunk hashes, the mesh secret), no OPFS (spilling objects to disk), no Web
 * Locks (one tab per identity) and no cross-origin isolation (shared memory
 * for workers). Without this check a Join fails deep inside with a TypeError
 * ("Cannot read properties of undefined (reading 'request')"); with it the
 * volunteer reads what is missing and how to get it.
 */
import { RefmeshError } from '../core/errors.ts'

export class InsecureContextError extends RefmeshError {
  override name = 'InsecureContextError'
  /** the features this page lacks, e.g. ['crypto.subtle', 'Web Locks'] */
  readonly missing: string[]

  constructor (message: string, missing: string[]) {
    super(message)
    this.missing = missing
  }
}

export interface SecureContextCheck {
  secure: boolean
  /** what a peer needs and this page lacks, as a volunteer would read it */
  missing: Array<{ feature: string, for: string }>
}

/** What this page has of what a mesh peer needs. */
export function checkSecureContext (scope: typeof globalThis = globalThis): SecureContextCheck {
  const missing: SecureContextCheck['missing'] = []
  if (scope.crypto?.subtle === undefined) missing.push({ feature: 'crypto.subtle', for: 'to check every chunk it receives' })
  if (typeof scope.navigator?.storage?.getDirectory !== 'function') missing.push({ feature: 'the origin private file system (OPFS)', for: 'to keep large objects on disk' })
  if (typeof scope.navigator?.locks?.request !== 'function') missing.push({ feature: 'Web Locks', for: 'to keep one tab per identity' })
  if (scope.crossOriginIsolated !== true) missing.push({ feature: 'cross-origin isolation', for: 'to share memory with its workers' })
  return { secure: scope.isSecureContext === true, missing }
}

/**
 * The words a volunteer reads when the page cannot be a peer, or undefined
 * when it can. `location` is the page's address (to name the host and to
 * write the ssh tunnel out).
 */
export function insecureContextMessage (check: SecureContextCheck, location: { protocol: string, host: string, hostname: string, port: string }): string | undefined {
  const required = check.missing.filter(m => m.feature !== 'cross-origin isolation')
  if (check.secure && required.length === 0) return undefined
  const what = check.missing.map(m => `• ${m.feature}, ${m.for};`).join('\n')
  if (check.secure) return `This browser lacks what a mesh peer needs:\n${what}\nA current Chromium, Firefox or Safari has all of it.`
  const port = location.port === '' ? (location.protocol === 'https:' ? '443' : '80') : location.port
  return [
    `This tab cannot join the mesh. The page came over plain ${location.protocol.replace(':', '')} from ${location.host}, ` +
      'which the browser does not count as a secure connection, so it withholds what a peer needs:',
    what,
    'Ways to fix it:',
    `• whoever runs the mesh serves the page over HTTPS: refmesh peer (or refmesh demo --serve) --tls-cert cert.pem --tls-key key.pem, with a certificate that names ${location.hostname}; then open the https:// address it prints;`,
    '• or puts a web server with HTTPS (Caddy, nginx) in front of it, as the README shows;',
    `• or you open the page as localhost, which browsers trust without a certificate: ssh -L ${port}:${location.hostname}:${port} you@${location.hostname}, then http://localhost:${port}/ (the mesh's peers must still be reachable from this machine).`
  ].join('\n')
}

/** Throws InsecureContextError with the message above when this page cannot be a peer. */
export function assertSecureContext (scope: typeof globalThis = globalThis): void {
  const check = checkSecureContext(scope)
  const location = scope.location ?? { protocol: 'unknown:', host: 'an unknown host', hostname: 'the host', port: '' }
  const message = insecureContextMessage(check, location)
  if (message !== undefined) throw new InsecureContextError(message, check.missing.map(m => m.feature))
}
