/**
 * The executor backend of a Node peer: a worker_threads pool, one worker per
 * core by default, each importing the peer's function modules (every exported
 * function is offered under its export name). Values reach workers by
 * structured clone: store objects live in SharedArrayBuffers where possible, so
 * large binary arguments are shared, not copied; whole binary results are
 * transferred back.
 */
import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { resolve } from 'node:path'
import { logger } from '@libp2p/logger'
import type { ExecutorBackend } from '../core/executor.ts'
import { RefmeshError } from '../core/errors.ts'
import { raceSignal } from '../core/signals.ts'

const log = logger('refmesh:workers')
const ENTRY = new URL('./worker-entry.ts', import.meta.url)

export class WorkerCrashedError extends RefmeshError {
  override name = 'WorkerCrashedError'
}

export interface WorkerPoolInit {
  /** ESM modules whose exported functions the pool offers */
  modules: string[]
  /** workers; default: one per core */
  size?: number
}

interface Job {
  name: string
  args: unknown[]
  resolve: (value: unknown) => void
  reject: (err: Error) => void
}

interface Slot {
  worker: Worker
  ready: boolean
  job?: Job & { id: number }
}

export class WorkerPool implements ExecutorBackend {
  readonly size: number
  private readonly modules: string[]
  private readonly slots: Slot[] = []
  private readonly queue: Job[] = []
  private functionNames: string[] = []
  private nextId = 1
  private closed = false

  constructor (init: WorkerPoolInit) {
    this.modules = init.modules.map(m => resolve(m))
    this.size = Math.max(1, init.size ?? availableParallelism())
  }

  /** Starts the workers; resolves with the functions they offer. */
  async start (): Promise<string[]> {
    const names = await Promise.all(Array.from({ length: this.size }, async () => await this.spawn()))
    this.functionNames = names[0]
    return this.functionNames
  }

  names (): string[] {
    return this.functionNames
  }

  /** calls running now */
  get busy (): number {
    return this.slots.filter(s => s.job !== undefined).length
  }

  async run (name: string, args: unknown[], options: { signal?: AbortSignal } = {}): Promise<unknown> {
    if (this.closed) throw new WorkerCrashedError('the worker pool is closed')
    const done = new Promise<unknown>((resolve, reject) => {
      this.queue.push({ name, args, resolve, reject })
    })
    this.dispatch()
    return await raceSignal(done, options.signal, `call of ${name}`)
  }

  async close (): Promise<void> {
    this.closed = true
    for (const job of this.queue.splice(0)) job.reject(new WorkerCrashedError('the worker pool closed'))
    await Promise.all(this.slots.map(async s => await s.worker.terminate()))
  }

  private async spawn (): Promise<string[]> {
    const worker = new Worker(ENTRY, { workerData: { modules: this.modules } })
    const slot: Slot = { worker, ready: false }
    // Listed at once, so close() terminates workers that are still starting.
    this.slots.push(slot)
    const names = await new Promise<string[]>((resolve, reject) => {
      worker.once('message', (msg: { ready?: string[], loadError?: { message: string } }) => {
        if (msg.ready !== undefined) resolve(msg.ready)
        else reject(new Error(`cannot load function modules: ${msg.loadError?.message}`))
      })
      worker.once('error', reject)
    })
    worker.on('message', (msg: { id: number, value?: unknown, error?: { name: string, message: string, stack: string } }) => {
      const job = slot.job
      if (job === undefined || job.id !== msg.id) return
      slot.job = undefined
      if (msg.error !== undefined) {
        const err = new Error(msg.error.message)
        err.name = msg.error.name
        err.stack = msg.error.stack
        job.reject(err)
      } else {
        job.resolve(msg.value)
      }
      this.dispatch()
    })
    worker.on('error', (err) => { log.error('worker error: %e', err) })
    worker.on('exit', (code) => {
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots.splice(i, 1)
      slot.job?.reject(new WorkerCrashedError(`the worker running ${slot.job.name} exited with code ${code}`))
      slot.job = undefined
      if (!this.closed) {
        log('replacing a worker that exited with %d', code)
        this.spawn().then(() => { this.dispatch() }, (err: Error) => { log.error('cannot replace a worker: %e', err) })
      }
    })
    slot.ready = true
    return names
  }

  private dispatch (): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return
      if (slot.job !== undefined || !slot.ready) continue
      const job = this.queue.shift()!
      slot.job = { ...job, id: this.nextId++ }
      try {
        slot.worker.postMessage({ id: slot.job.id, name: job.name, args: job.args })
      } catch (err) {
        slot.job = undefined
        job.reject(err as Error)
      }
    }
  }
}
