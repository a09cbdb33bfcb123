/**
 * CPU accounting for benchmarks, from /proc (process.threadCpuUsage()
 * under-reports on this VM): a process's CPU over all its threads, and the
 * machine's idle share between two readings.
 */
import { readdirSync, readFileSync } from 'node:fs'

/** USER_HZ: /proc counts CPU time in ticks of 1/100 s on Linux */
const TICKS_PER_S = 100

/** CPU seconds (user + system, all threads) process `pid` has used; 0 once it is gone */
export function processCpuS (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S
  } catch {
    return 0
  }
}

export interface MachineCpu { idle: number, total: number }

/** the machine's CPU ticks so far, idle (idle + iowait) and in all */
export function machineCpu (): MachineCpu {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  return { idle: f[3] + f[4], total: f.slice(0, 8).reduce((a, b) => a + b, 0) }
}

/** the share of the machine's CPU time that was idle between two readings */
export function idleShare (a: MachineCpu, b: MachineCpu): number {
  const total = b.total - a.total
  return total > 0 ? (b.idle - a.idle) / total : 0
}

export interface ThreadCpu { tid: number, name: string, cpuS: number }

/**
 * CPU seconds of each thread of process `pid` (from /proc/<pid>/task/<tid>/stat), with
 * the thread's name (its comm: 'node' for the main thread, 'WorkerThread' or the name a
 * worker was given, 'libuv-worker', 'V8Worker'...); [] once the process is gone.
 */
export function threadCpuS (pid: number): ThreadCpu[] {
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return []
  }
  const threads: ThreadCpu[] = []
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      threads.push({ tid: Number(tid), name, cpuS: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S })
    } catch { /* the thread ended between the listing and the read */ }
  }
  return threads
}

/**
 * CPU seconds each thread of `pids` used between two readings (threadCpuS), by thread
 * name over all the processes; a thread that started in between counts from zero.
 */
export function threadCpuDelta (before: Map<number, ThreadCpu[]>, after: Map<number, ThreadCpu[]>): Record<string, number> {
  const byName: Record<string, number> = {}
  for (const [pid, threads] of after) {
    const was = new Map((before.get(pid) ?? []).map(t => [t.tid, t.cpuS]))
    for (const t of threads) byName[t.name] = (byName[t.name] ?? 0) + t.cpuS - (was.get(t.tid) ?? 0)
  }
  return byName
}

/**
 * Waits until the machine is quiet: a second in which at least `minIdle` of its CPU time
 * was idle (at most `maxMs`), so a measurement does not start under the tail of the last
 * one's processes and torn-down namespaces. Returns that second's idle share.
 */
export async function untilQuiet (minIdle = 0.9, maxMs = 30_000): Promise<number> {
  const deadline = performance.now() + maxMs
  let idle = 0
  do {
    const before = machineCpu()
    await new Promise(resolve => setTimeout(resolve, 1000))
    idle = idleShare(before, machineCpu())
  } while (idle < minIdle && performance.now() < deadline)
  return idle
}
