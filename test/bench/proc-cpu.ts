/**
 * CPU accounting for benchmarks, from /proc (process.threadCpuUsage()
 * under-reports on this VM): a process's CPU over all its threads, and the
 * machine's idle share between two readings.
 */
import { readFileSync } from 'node:fs'

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
