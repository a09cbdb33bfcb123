/**
 * For tests of volunteers on other hosts (test/volunteers.test.ts, whose hosts are
 * test/nat-topology.ts's namespaces): a test certificate authority that signs a
 * certificate for a host's address, and Chromium started inside a host's
 * namespace, trusting that certificate. Root only.
 */
import { execFile } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { chromium } from 'playwright'
import type { Browser } from 'playwright'

const run = promisify(execFile)

export const CHROMIUM = '/usr/bin/chromium'

export interface Host {
  name: string
  /** its network namespace */
  ns: string
  /** its IPv4 address */
  addr: string
}

export interface TestCertificate {
  /** PEM files, for --tls-cert and --tls-key */
  certFile: string
  keyFile: string
  caFile: string
  /** base64 SHA-256 of the certificate's public key (SPKI), as Chromium's --ignore-certificate-errors-spki-list takes it */
  spki: string
  /** the same for the CA's key */
  caSpki: string
  dir: string
  remove: () => Promise<void>
}

/**
 * A root CA made for this run and a server certificate it signs for `names`
 * (IP addresses and DNS names, as subjectAltName), with openssl. Keys are
 * P-256, valid two days.
 */
export async function createTestCertificate (names: string[]): Promise<TestCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-ca-'))
  try {
    const f = (name: string): string => join(dir, name)
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
    await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=refmesh test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
    await run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${names[0]}`])
    const san = names.map(n => /^[\d.]+$/.test(n) || n.includes(':') ? `IP:${n}` : `DNS:${n}`).join(',')
    await writeFile(f('server.ext'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n`)
    await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f('server.pem'), '-days', '2', '-extfile', f('server.ext')])
    const spkiOf = async (file: string): Promise<string> => {
      const der = new X509Certificate(await readFile(file)).publicKey.export({ type: 'spki', format: 'der' })
      return createHash('sha256').update(der).digest('base64')
    }
    return {
      certFile: f('server.pem'),
      keyFile: f('server.key'),
      caFile: f('ca.pem'),
      spki: await spkiOf(f('server.pem')),
      caSpki: await spkiOf(f('ca.pem')),
      dir,
      remove: async () => { await rm(dir, { recursive: true, force: true }) }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

/**
 * Chromium running inside `host`'s namespace (Playwright talks to it over
 * pipes, which cross namespaces), trusting the certificates whose public keys
 * are in `trustSpki`: for them Chromium accepts the certificate as valid, so
 * an https page from that host is a real secure context and its wss dials pass.
 */
export async function launchChromiumOn (host: Host, options: { trustSpki?: string[] } = {}): Promise<{ browser: Browser, close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'refmesh-chromium-'))
  const wrapper = join(dir, 'chromium')
  await writeFile(wrapper, `#!/bin/sh\nexec ip netns exec ${host.ns} ${CHROMIUM} "$@"\n`)
  await chmod(wrapper, 0o755)
  const args = options.trustSpki === undefined || options.trustSpki.length === 0 ? [] : [`--ignore-certificate-errors-spki-list=${options.trustSpki.join(',')}`]
  try {
    const browser = await chromium.launch({ executablePath: wrapper, args })
    return {
      browser,
      close: async () => {
        await browser.close().catch(() => {})
        await rm(dir, { recursive: true, force: true })
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}
