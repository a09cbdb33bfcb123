/**
 * The functions this peer offers, and running them. Only functions registered
 * here can run here: the wire names a function, it never carries code.
 */
import { FunctionNotFoundError } from './errors.ts'

export type AnyFunction = (...args: any[]) => unknown

export class Executor {
  private readonly functions = new Map<string, AnyFunction>()
  executed = 0
  running = 0

  register (name: string, fn: AnyFunction): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw new TypeError('a function name must be a non-empty string of at most 256 characters')
    if (typeof fn !== 'function') throw new TypeError(`register("${name}") needs a function`)
    this.functions.set(name, fn)
  }

  unregister (name: string): boolean {
    return this.functions.delete(name)
  }

  offers (name: string): boolean {
    return this.functions.has(name)
  }

  names (): string[] {
    return [...this.functions.keys()]
  }

  async run (name: string, args: unknown[]): Promise<unknown> {
    const fn = this.functions.get(name)
    if (fn === undefined) throw new FunctionNotFoundError(name)
    this.running++
    try {
      return await fn(...args)
    } finally {
      this.running--
      this.executed++
    }
  }
}
