/**
 * Every error refmesh raises is one of these classes, so callers can branch on
 * `instanceof` or on `name` (names survive the wire; classes do not).
 */

export class RefmeshError extends Error {
  override name = 'RefmeshError'
}

/** The remote function threw. Carries the remote error's name, message and stack. */
export class RemoteError extends RefmeshError {
  override name = 'RemoteError'
  readonly remoteName: string
  readonly remoteMessage: string
  readonly remoteStack: string
  readonly peer: string
  readonly fn: string

  constructor (init: { remoteName: string, remoteMessage: string, remoteStack: string, peer: string, fn: string }) {
    super(`${init.fn} on ${init.peer} threw ${init.remoteName}: ${init.remoteMessage}`)
    this.remoteName = init.remoteName
    this.remoteMessage = init.remoteMessage
    this.remoteStack = init.remoteStack
    this.peer = init.peer
    this.fn = init.fn
    this.stack = `${this.name}: ${this.message}\n--- remote stack (${init.peer}) ---\n${init.remoteStack}`
  }
}

/** No peer in the mesh offers the function. */
export class FunctionNotFoundError extends RefmeshError {
  override name = 'FunctionNotFoundError'
  readonly fn: string
  constructor (fn: string, peer?: string) {
    super(peer === undefined ? `no peer in the mesh offers the function "${fn}"` : `peer ${peer} does not offer the function "${fn}"`)
    this.fn = fn
  }
}

/** Every copy of the object is gone and it cannot be rebuilt. */
export class ObjectLostError extends RefmeshError {
  override name = 'ObjectLostError'
}

/**
 * An executor could not fetch an argument of a call: every holder it was told of
 * died before it got the bytes. The argument's owner computes it again (lineage),
 * so the caller sends the call again (one of its retries) rather than failing it.
 */
export class ArgumentLostError extends ObjectLostError {
  override name = 'ArgumentLostError'
}

/** The owner of the object died, so the object died with it. */
export class OwnerDiedError extends RefmeshError {
  override name = 'OwnerDiedError'
}

/** The peer running a call, or serving an object, went away. */
export class PeerDiedError extends RefmeshError {
  override name = 'PeerDiedError'
}

export class TimeoutError extends RefmeshError {
  override name = 'TimeoutError'
}

export class AbortError extends RefmeshError {
  override name = 'AbortError'
}

/** Raised only when no progress is possible: the value cannot fit even after spilling. */
export class OutOfMemoryError extends RefmeshError {
  override name = 'OutOfMemoryError'
}

/** The Ref was released (or freed by its owner) before it was used. */
export class ReleasedRefError extends RefmeshError {
  override name = 'ReleasedRefError'
}

/** A frame on the wire could not be decoded. The stream it came on is closed. */
export class MalformedFrameError extends RefmeshError {
  override name = 'MalformedFrameError'
}

/** A frame on the wire was larger than its protocol allows. The stream it came on is closed. */
export class FrameTooLargeError extends RefmeshError {
  override name = 'FrameTooLargeError'
}

/** A chunk did not match the SHA-256 in the owner's manifest, from every holder tried. */
export class ChunkIntegrityError extends RefmeshError {
  override name = 'ChunkIntegrityError'
}

/** A value that refmesh cannot encode (a function, a symbol, a Ref of another mesh...). */
export class EncodeError extends RefmeshError {
  override name = 'EncodeError'
}

/** A request the remote peer understood but refused (unknown object, bad request). */
export class ProtocolError extends RefmeshError {
  override name = 'ProtocolError'
}

/** A replicated call's results did not agree: `votes` lists each peer and the digest of what it returned. */
export class QuorumError extends RefmeshError {
  override name = 'QuorumError'
  readonly votes: Array<{ peer: string, digest: string, error?: string }>
  constructor (message: string, votes: Array<{ peer: string, digest: string, error?: string }> = []) {
    super(message)
    this.votes = votes
  }
}

/** A peer asked more of this one than its quota allows (calls queued, chunks in flight, bytes stored for it); ask again later. */
export class QuotaExceededError extends RefmeshError {
  override name = 'QuotaExceededError'
}

/** No peer publishes the name that was looked up (within the lookup's time). */
export class NameNotFoundError extends RefmeshError {
  override name = 'NameNotFoundError'
}

/** An actor's method was called on an instance that is gone (stopped, or its peer restarted). */
export class ActorNotFoundError extends RefmeshError {
  override name = 'ActorNotFoundError'
}

/** A call made with `returns: n` returned something other than n values; each of its n Refs fails with this. */
export class ReturnCountError extends RefmeshError {
  override name = 'ReturnCountError'
}

/**
 * An actor's peer died and the actor is not coming back for this call: it may
 * not restart (`maxRestarts` used up, or no other peer offers its class), or the
 * call used up its `maxTaskRetries`.
 */
export class ActorDiedError extends RefmeshError {
  override name = 'ActorDiedError'
}

const byName: Record<string, new (message: string) => RefmeshError> = {
  FunctionNotFoundError: FunctionNotFoundError as unknown as new (message: string) => RefmeshError,
  ObjectLostError,
  ArgumentLostError,
  OwnerDiedError,
  PeerDiedError,
  TimeoutError,
  AbortError,
  OutOfMemoryError,
  ReleasedRefError,
  MalformedFrameError,
  FrameTooLargeError,
  ChunkIntegrityError,
  EncodeError,
  ProtocolError,
  ActorNotFoundError,
  ActorDiedError,
  NameNotFoundError,
  QuotaExceededError,
  ReturnCountError,
  QuorumError: QuorumError as unknown as new (message: string) => RefmeshError
}

export interface ErrorInfo {
  name: string
  message: string
  stack: string
  /** the peer where the error first happened */
  peer: string
  /** the function that threw, when a user function threw */
  fn: string
  /** true when the user's function threw (as opposed to refmesh failing) */
  remote: boolean
}

export function errorToInfo (err: unknown, peer: string, fn = ''): ErrorInfo {
  if (err instanceof RemoteError) {
    return { name: err.remoteName, message: err.remoteMessage, stack: err.remoteStack, peer: err.peer, fn: err.fn, remote: true }
  }
  const e = err instanceof Error ? err : new Error(String(err))
  return { name: e.name, message: e.message, stack: e.stack ?? '', peer, fn, remote: !(e instanceof RefmeshError) }
}

/** Rebuild a typed error from its wire form. */
export function infoToError (info: ErrorInfo): Error {
  if (info.remote) {
    return new RemoteError({ remoteName: info.name, remoteMessage: info.message, remoteStack: info.stack, peer: info.peer, fn: info.fn })
  }
  if (info.name === 'FunctionNotFoundError') return new FunctionNotFoundError(info.fn || info.message)
  const Ctor = byName[info.name] ?? RefmeshError
  return new Ctor(info.message)
}
