/** A FIFO counting semaphore whose waits honour an AbortSignal. */
import { raceSignal } from './signals.ts'

export class Semaphore {
  private available: number
  private readonly waiting: Array<() => void> = []

  constructor (permits: number) {
    this.available = permits
  }

  get queued (): number {
    return this.waiting.length
  }

  /** Waits for a permit; returns its release (idempotent). */
  async acquire (signal?: AbortSignal, what = 'a permit'): Promise<() => void> {
    if (this.available > 0 && this.waiting.length === 0) {
      this.available--
    } else {
      let ready!: () => void
      const turn = new Promise<void>(resolve => { ready = resolve })
      this.waiting.push(ready)
      try {
        await raceSignal(turn, signal, `waiting for ${what}`)
      } catch (err) {
        const i = this.waiting.indexOf(ready)
        if (i >= 0) this.waiting.splice(i, 1)
        else this.release()
        throw err
      }
    }
    let released = false
    return () => {
      if (released) return
      released = true
      this.release()
    }
  }

  private release (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.available++
  }
}
