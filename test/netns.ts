/**
 * Bandwidth-limited hosts on one machine, for benchmarks where links, not this
 * machine's cores, must be the bottleneck (as between volunteer machines).
 *
 * One network namespace per host plus a switch namespace holding a bridge; a
 * veth pair joins each host's eth0 to the bridge; each host gets 10.x.y.(i+1)/24,
 * and a token-bucket filter limits its eth0 egress (and, optionally, the
 * switch side, its downlink). Needs root. Namespaces are named after this
 * process, so a crashed run's leftovers are found and removed by the next one.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)
const PREFIX = 'rmesh'

export interface HostsInit {
  hosts: number
  /** egress limit of each host, in Mbit/s; 0: unlimited */
  rateMbit?: number
  /** per-host egress limits (Mbit/s), overriding rateMbit for the hosts listed (host i: rates[i]) */
  rates?: number[]
  /** limit each host's downlink at the switch as well */
  limitDownlink?: boolean
}

export interface Hosts {
  /** namespace of host i */
  names: string[]
  /** IPv4 address of host i */
  addrs: string[]
  /** a libp2p listen address on host i */
  listen: (i: number) => string
  stop: () => Promise<void>
}

export async function netnsAvailable (): Promise<boolean> {
  if (process.getuid?.() !== 0) return false
  try {
    await run('ip', ['netns', 'list'])
    await run('tc', ['-V'])
    return true
  } catch {
    return false
  }
}

async function ip (...args: string[]): Promise<void> {
  await run('ip', args)
}

async function inNs (ns: string, ...cmd: string[]): Promise<void> {
  await run('ip', ['netns', 'exec', ns, ...cmd])
}

/** Removes namespaces left by runs whose process is gone (test/nat-topology.ts's too). */
export async function removeStaleNamespaces (): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'list'])
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0]
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)
    if (m === null) continue
    let alive = true
    try { process.kill(Number(m[1]), 0) } catch { alive = false }
    if (!alive) await ip('netns', 'del', name).catch(() => {})
  }
}

export async function createHosts (init: HostsInit): Promise<Hosts> {
  const { hosts, rateMbit = 100, limitDownlink = false, rates = [] } = init
  if (hosts < 1 || hosts > 200) throw new RangeError(`hosts must be 1..200, not ${hosts}`)
  await removeStaleNamespaces()
  const tag = `${PREFIX}${process.pid}`
  const sw = `${tag}-sw`
  const names = Array.from({ length: hosts }, (_, i) => `${tag}-h${i}`)
  // A /24 per run, from the pid, so parallel runs do not collide.
  const subnet = `10.${200 + (process.pid % 50)}.${(process.pid >> 6) % 250}`
  const addrs = names.map((_, i) => `${subnet}.${i + 1}`)
  const created: string[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(created.map(async ns => await ip('netns', 'del', ns).catch(() => {})))
    created.length = 0
  }
  try {
    await ip('netns', 'add', sw)
    created.push(sw)
    await inNs(sw, 'ip', 'link', 'add', 'br0', 'type', 'bridge')
    await inNs(sw, 'ip', 'link', 'set', 'br0', 'up')
    const tbf = (dev: string, mbit: number): string[] => ['tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '64kb', 'latency', '50ms']
    for (let i = 0; i < hosts; i++) {
      const ns = names[i]
      await ip('netns', 'add', ns)
      created.push(ns)
      const hostEnd = `rmh${process.pid % 100000}x${i}`.slice(0, 15)
      const switchEnd = `rms${process.pid % 100000}x${i}`.slice(0, 15)
      await ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', switchEnd)
      await ip('link', 'set', hostEnd, 'netns', ns)
      await ip('link', 'set', switchEnd, 'netns', sw)
      await inNs(ns, 'ip', 'link', 'set', hostEnd, 'name', 'eth0')
      await inNs(ns, 'ip', 'addr', 'add', `${addrs[i]}/24`, 'dev', 'eth0')
      await inNs(ns, 'ip', 'link', 'set', 'eth0', 'up')
      await inNs(ns, 'ip', 'link', 'set', 'lo', 'up')
      await inNs(sw, 'ip', 'link', 'set', switchEnd, 'master', 'br0')
      await inNs(sw, 'ip', 'link', 'set', switchEnd, 'up')
      const mbit = rates[i] ?? rateMbit
      if (mbit > 0) {
        await inNs(ns, ...tbf('eth0', mbit))
        if (limitDownlink) await inNs(sw, ...tbf(switchEnd, mbit))
      }
    }
  } catch (err) {
    await stop()
    throw err
  }
  return { names, addrs, listen: i => `/ip4/${addrs[i]}/tcp/0`, stop }
}
