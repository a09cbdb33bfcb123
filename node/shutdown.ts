/**
 * How a long-running refmesh process (peer, share, demo) is asked to stop.
 *
 * - SIGINT and SIGTERM, whatever stdin is: under systemd, `docker run`
 *   without -i, cron, nohup or a script's `&`, stdin is /dev/null, closed or
 *   unreadable, and must neither stop the process nor crash it.
 * - The end of stdin only when asked (`stdin: true`, `--stop-on-stdin-end`): a
 *   parent that spawned the process with a pipe stops it by closing the pipe,
 *   and the pipe closes too when that parent dies, even by kill -9.
 * - The parent's exit when asked (`parent: true`): npm passes signals on only
 *   to a script's shell, which exits and leaves its child to pid 1; a child
 *   that watches its parent id notices.
 * - A second signal while stopping exits at once; so does a stop that runs
 *   past its deadline (a peer must never hang its service manager).
 */

export interface StopRequestInit {
  /** the end of stdin (or an error reading it) asks to stop; default false */
  stdin?: boolean
  /** the parent process exiting asks to stop (polled); default false */
  parent?: boolean
  /** how often the parent is checked */
  parentPollMs?: number
  /** runs on a second signal, just before the process exits with status 1 (e.g. kill children) */
  onForce?: () => void
}

export const SHUTDOWN_DEFAULTS = {
  parentPollMs: 500,
  /** how long a peer may take to stop before it exits anyway; systemd waits 90 s by default */
  deadlineMs: 10_000,
  /** how long a stop asked for while the peer starts waits for the start (a bootstrap can take 15 s) */
  startGraceMs: 2_000
} as const

/** `promise`'s value, or undefined once `ms` have passed. */
export async function within<T> (promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Calls `stop(reason)` once, at the first request to stop; a second signal
 * then exits the process. Returns a function that stops listening.
 */
export function onStopRequest (stop: (reason: string) => void, init: StopRequestInit = {}): () => void {
  let requested = false
  const request = (reason: string): void => {
    if (requested) return
    requested = true
    stop(reason)
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!requested) { request(sig); return }
    process.stderr.write(`refmesh: ${sig} again: exiting without finishing the stop\n`)
    init.onForce?.()
    process.exit(1)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const cleanups = [(): void => { process.removeListener('SIGINT', onSignal); process.removeListener('SIGTERM', onSignal) }]

  if (init.stdin === true) {
    const onEnd = (): void => request('end of stdin')
    // EBADF (nohup's write-only /dev/null) or a pipe torn down: the parent is gone all the same.
    const onError = (): void => request('stdin unreadable')
    process.stdin.on('end', onEnd).on('error', onError).resume()
    cleanups.push(() => { process.stdin.removeListener('end', onEnd).removeListener('error', onError).pause() })
  }

  if (init.parent === true) {
    const parent = process.ppid
    // Started by pid 1 (a container's init, systemd): there is no parent to outlive.
    if (parent > 1) {
      const timer = setInterval(() => {
        if (process.ppid !== parent) request(`parent process ${parent} exited`)
      }, init.parentPollMs ?? SHUTDOWN_DEFAULTS.parentPollMs)
      timer.unref()
      cleanups.push(() => clearInterval(timer))
    }
  }
  return () => { for (const cleanup of cleanups) cleanup() }
}

export interface ServeInit extends StopRequestInit {
  /** exit with status 1 if the stop takes longer than this */
  deadlineMs?: number
}

/**
 * Keeps a service (refmesh peer, refmesh share) up until it is asked to stop,
 * then runs `stop` and exits: 0 when it stopped cleanly, 1 when it failed or
 * ran past its deadline, or at a second signal.
 */
export function serveUntilStopped (stop: (reason: string) => Promise<void>, init: ServeInit = {}): () => void {
  return onStopRequest(reason => {
    process.stderr.write(`refmesh: ${reason}: stopping (a second SIGINT or SIGTERM exits at once)\n`)
    const deadlineMs = init.deadlineMs ?? SHUTDOWN_DEFAULTS.deadlineMs
    setTimeout(() => {
      process.stderr.write(`refmesh: stopping took over ${deadlineMs / 1000} s; exiting anyway\n`)
      process.exit(1)
    }, deadlineMs).unref()
    stop(reason).then(() => process.exit(0), (err: Error) => {
      process.stderr.write(`refmesh: stopping failed: ${err.message}\n`)
      process.exit(1)
    })
  }, init)
}
