/**
 * Home networks behind NAT routers, on one machine, for tests and benchmarks of
 * peers on other machines (NAT traversal, tabs on another host).
 *
 * An "internet" namespace holds a bridge; public hosts (a bootstrap peer P) and
 * the WAN side of each router sit on it with addresses from a public range
 * (libp2p treats 10/8, 192.168/16 and the documentation ranges as private, and
 * AutoNAT ignores private observed addresses, so the internet must look public).
 * Each home is a namespace with one host behind its own router namespace, which
 * forwards and masquerades (nftables): endpoint-independent by default (Linux
 * keeps the source port when it can), or with `random` port mapping, where
 * hole punching cannot work. Homes use different private subnets. Routers answer
 * nothing themselves and have no route to the homes of others.
 *
 * Needs root. Namespaces are named rmesh<pid>-..., so test/netns.ts's clean-up of a
 * crashed run's leftovers removes these too.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { removeStaleNamespaces } from './netns.ts'

const run = promisify(execFile)

export type NatKind = 'endpoint-independent' | 'random'

export interface HomeInit {
  name: string
  nat: NatKind
}

export interface Home {
  name: string
  /** namespace of the host inside the home */
  ns: string
  /** namespace of its router */
  router: string
  /** the host's private address */
  addr: string
  /** the router's public address (what the internet sees) */
  publicAddr: string
  nat: NatKind
}

export interface PublicHost {
  name: string
  ns: string
  addr: string
}

export interface NatTopology {
  /** namespace of the internet bridge */
  internet: string
  publicHosts: PublicHost[]
  homes: Home[]
  home: (name: string) => Home
  publicHost: (name: string) => PublicHost
  /** bytes received and sent on a public host's or home host's interface, from the kernel's counters */
  interfaceBytes: (ns: string) => Promise<{ rx: number, tx: number }>
  stop: () => Promise<void>
}

export interface NatTopologyInit {
  /** hosts on the internet itself, e.g. ['P'] */
  publicHosts: string[]
  homes: HomeInit[]
}

export async function natAvailable (): Promise<boolean> {
  if (process.getuid?.() !== 0) return false
  try {
    await run('ip', ['netns', 'list'])
    await run('nft', ['--version'])
    return true
  } catch {
    return false
  }
}

async function ip (...args: string[]): Promise<void> {
  await run('ip', args)
}

async function inNs (ns: string, ...cmd: string[]): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, ...cmd])
  return stdout
}

export async function createNatTopology (init: NatTopologyInit): Promise<NatTopology> {
  const total = init.publicHosts.length + init.homes.length
  if (total < 1 || total > 200) throw new RangeError(`1..200 hosts and homes, not ${total}`)
  await removeStaleNamespaces()
  const tag = `rmesh${process.pid}-n`
  // A public /24 per run, from the pid, so parallel runs do not collide (11/8 is public to libp2p).
  const wan = `11.${process.pid % 250}.${(process.pid >> 8) % 250}`
  const created: string[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(created.map(async ns => await ip('netns', 'del', ns).catch(() => {})))
    created.length = 0
  }
  const addNs = async (ns: string): Promise<void> => {
    await ip('netns', 'add', ns)
    created.push(ns)
    await inNs(ns, 'ip', 'link', 'set', 'lo', 'up')
  }
  let link = 0
  /** a veth pair from namespace `a` (named `aName` there) to `b` (named `bName`) */
  const veth = async (a: string, aName: string, b: string, bName: string): Promise<void> => {
    const tmpA = `rmn${process.pid % 100000}a${link}`.slice(0, 15)
    const tmpB = `rmn${process.pid % 100000}b${link}`.slice(0, 15)
    link++
    await ip('link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB)
    await ip('link', 'set', tmpA, 'netns', a)
    await ip('link', 'set', tmpB, 'netns', b)
    await inNs(a, 'ip', 'link', 'set', tmpA, 'name', aName)
    await inNs(b, 'ip', 'link', 'set', tmpB, 'name', bName)
    await inNs(a, 'ip', 'link', 'set', aName, 'up')
    await inNs(b, 'ip', 'link', 'set', bName, 'up')
  }
  const internet = `${tag}-inet`
  const publicHosts: PublicHost[] = []
  const homes: Home[] = []
  try {
    await addNs(internet)
    await inNs(internet, 'ip', 'link', 'add', 'br0', 'type', 'bridge')
    await inNs(internet, 'ip', 'link', 'set', 'br0', 'up')
    let next = 2
    for (const [i, name] of init.publicHosts.entries()) {
      const ns = `${tag}-${name}`
      await addNs(ns)
      await veth(ns, 'eth0', internet, `p${i}`)
      await inNs(internet, 'ip', 'link', 'set', `p${i}`, 'master', 'br0')
      const addr = `${wan}.${next++}`
      await inNs(ns, 'ip', 'addr', 'add', `${addr}/24`, 'dev', 'eth0')
      publicHosts.push({ name, ns, addr })
    }
    for (const [i, h] of init.homes.entries()) {
      const ns = `${tag}-${h.name}`
      const router = `${tag}-${h.name}r`
      await addNs(router)
      await addNs(ns)
      await veth(router, 'wan0', internet, `r${i}`)
      await inNs(internet, 'ip', 'link', 'set', `r${i}`, 'master', 'br0')
      const publicAddr = `${wan}.${next++}`
      await inNs(router, 'ip', 'addr', 'add', `${publicAddr}/24`, 'dev', 'wan0')
      await veth(router, 'lan0', ns, 'eth0')
      const lan = `192.168.${i + 1}`
      await inNs(router, 'ip', 'addr', 'add', `${lan}.1/24`, 'dev', 'lan0')
      await inNs(ns, 'ip', 'addr', 'add', `${lan}.2/24`, 'dev', 'eth0')
      await inNs(ns, 'ip', 'route', 'add', 'default', 'via', `${lan}.1`)
      await inNs(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
      // Masquerade out of the WAN side; nothing unsolicited in (a home router's firewall:
      // inbound packets pass only as replies to what went out, and the router itself
      // answers nothing, so a hole-punching SYN or probe that comes early is dropped, not reset).
      const rules = [
        'add table ip nat',
        "add chain ip nat post { type nat hook postrouting priority 100 ; }",
        `add rule ip nat post oifname "wan0" masquerade${h.nat === 'random' ? ' random' : ''}`,
        'add table ip filter',
        "add chain ip filter forwarding { type filter hook forward priority 0 ; policy drop ; }",
        'add rule ip filter forwarding iifname "lan0" accept',
        'add rule ip filter forwarding ct state established,related accept',
        "add chain ip filter inbound { type filter hook input priority 0 ; policy drop ; }",
        'add rule ip filter inbound iifname "lo" accept',
        'add rule ip filter inbound ct state established,related accept'
      ]
      for (const rule of rules) await inNs(router, 'nft', ...splitRule(rule))
      homes.push({ name: h.name, ns, router, addr: `${lan}.2`, publicAddr, nat: h.nat })
    }
  } catch (err) {
    await stop()
    throw err
  }
  const interfaceBytes = async (ns: string): Promise<{ rx: number, tx: number }> => {
    const rx = Number((await inNs(ns, 'cat', '/sys/class/net/eth0/statistics/rx_bytes')).trim())
    const tx = Number((await inNs(ns, 'cat', '/sys/class/net/eth0/statistics/tx_bytes')).trim())
    return { rx, tx }
  }
  return {
    internet,
    publicHosts,
    homes,
    home: (name) => {
      const h = homes.find(x => x.name === name)
      if (h === undefined) throw new RangeError(`no home ${name}`)
      return h
    },
    publicHost: (name) => {
      const p = publicHosts.find(x => x.name === name)
      if (p === undefined) throw new RangeError(`no public host ${name}`)
      return p
    },
    interfaceBytes,
    stop
  }
}

/** nft takes a rule as separate words; braces and quoted names stay words of their own. */
function splitRule (rule: string): string[] {
  return rule.split(' ').map(w => w.replace(/^"(.*)"$/, '$1'))
}
