/**
 * Typed errors. Every failure of sd-native reaches JavaScript as an {@link SdError} subclass
 * with a stable `code`; the message names the file, field or argument at fault.
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';

/** The stable error codes. */
export type SdErrorCode =
  | 'E_MODEL_NOT_FOUND'
  | 'E_BAD_CHECKPOINT'
  | 'E_BAD_CONFIG'
  | 'E_UNSUPPORTED_MODEL'
  | 'E_INVALID_ARGUMENT'
  | 'E_OUT_OF_MEMORY'
  | 'E_ABORTED'
  | 'E_DEVICE_UNAVAILABLE'
  | 'E_NUMERICAL'
  | 'E_DISPOSED'
  | 'E_NATIVE_LOAD'
  | 'E_UNAUTHORIZED'
  | 'E_IO'
  | 'E_UNAVAILABLE'
  | 'E_INTERNAL';

/** Base class of every error sd-native throws. */
export class SdError extends Error {
  readonly code: SdErrorCode;
  constructor(code: SdErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A model folder, file or component is missing (`E_MODEL_NOT_FOUND`). */
export class ModelNotFoundError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_MODEL_NOT_FOUND', message, options); }
}
/** A checkpoint is corrupt, lies about its contents, is a pickle, or misses/mis-shapes weights (`E_BAD_CHECKPOINT`). */
export class BadCheckpointError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_BAD_CHECKPOINT', message, options); }
}
/** A config.json is malformed or lacks a required field (`E_BAD_CONFIG`). */
export class BadConfigError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_BAD_CONFIG', message, options); }
}
/** A model family, scheduler or option sd-native does not run (`E_UNSUPPORTED_MODEL`). */
export class UnsupportedModelError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_UNSUPPORTED_MODEL', message, options); }
}
/** A call argument is out of range or of the wrong type (`E_INVALID_ARGUMENT`). */
export class InvalidArgumentError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_INVALID_ARGUMENT', message, options); }
}
/**
 * The device ran out of memory, or (CPU pipelines) the call's estimated peak memory does not fit the
 * memory available and it was refused before running (`setMemoryLimit`, `SD_NATIVE_MEMORY_LIMIT`,
 * cgroup, MemAvailable; the message gives the estimate, the limit and what to change); a smaller
 * call afterwards works (`E_OUT_OF_MEMORY`).
 */
export class OutOfMemoryError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_OUT_OF_MEMORY', message, options); }
}
/** The call was aborted through its AbortSignal (`E_ABORTED`). */
export class AbortError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_ABORTED', message, options); }
}
/** The requested device (e.g. CUDA) is not available in this build or machine (`E_DEVICE_UNAVAILABLE`). */
export class DeviceUnavailableError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_DEVICE_UNAVAILABLE', message, options); }
}
/** NaN or infinity appeared where an image should be (`E_NUMERICAL`). */
export class NumericalError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_NUMERICAL', message, options); }
}
/** The object was disposed (`E_DISPOSED`). */
export class DisposedError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_DISPOSED', message, options); }
}
/** The native addon could not be loaded (`E_NATIVE_LOAD`). */
export class NativeLoadError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_NATIVE_LOAD', message, options); }
}
/**
 * The Hugging Face Hub refused access to a model (HTTP 401/403: a gated or private repo, or a
 * token without read access); the message names the repo (`E_UNAUTHORIZED`).
 */
export class UnauthorizedError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_UNAUTHORIZED', message, options); }
}
/**
 * An output file or folder cannot be written (`E_IO`): the folder is read-only, a parent is not a
 * folder, the disk is full (ENOSPC)…; the message names the path and the reason (with the system
 * error code, e.g. `EACCES`, `ENOSPC`).
 */
export class IoError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_IO', message, options); }
}
/**
 * A server cannot take the request now (`E_UNAVAILABLE`): it is draining or closed, or its job
 * queue (Redis) cannot be reached; the same request later may succeed.
 */
export class UnavailableError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_UNAVAILABLE', message, options); }
}
/** An unexpected native failure (`E_INTERNAL`). */
export class InternalError extends SdError {
  constructor(message: string, options?: { cause?: unknown }) { super('E_INTERNAL', message, options); }
}

const byCode: Record<string, new (message: string, options?: { cause?: unknown }) => SdError> = {
  E_MODEL_NOT_FOUND: ModelNotFoundError,
  E_BAD_CHECKPOINT: BadCheckpointError,
  E_BAD_CONFIG: BadConfigError,
  E_UNSUPPORTED_MODEL: UnsupportedModelError,
  E_INVALID_ARGUMENT: InvalidArgumentError,
  E_OUT_OF_MEMORY: OutOfMemoryError,
  E_ABORTED: AbortError,
  E_DEVICE_UNAVAILABLE: DeviceUnavailableError,
  E_NUMERICAL: NumericalError,
  E_DISPOSED: DisposedError,
  E_NATIVE_LOAD: NativeLoadError,
  E_UNAUTHORIZED: UnauthorizedError,
  E_IO: IoError,
  E_UNAVAILABLE: UnavailableError,
  E_INTERNAL: InternalError,
};

/** Creates the SdError subclass for `code`. */
export function makeError(code: string, message: string, cause?: unknown): SdError {
  const Ctor = byCode[code] ?? InternalError;
  return new Ctor(message, cause === undefined ? undefined : { cause });
}

/**
 * Converts anything thrown by the addon (a JS Error with `.code`) into an SdError subclass.
 * SdErrors pass through unchanged.
 */
export function toSdError(e: unknown): SdError {
  if (e instanceof SdError) return e;
  if (e instanceof Error) {
    const code = (e as Error & { code?: unknown }).code;
    return makeError(typeof code === 'string' ? code : 'E_INTERNAL', e.message, e);
  }
  return new InternalError(String(e));
}

/** Awaits a native promise, rethrowing its failure as an SdError. */
export async function native<T>(p: Promise<T> | (() => Promise<T>)): Promise<T> {
  try {
    return await (typeof p === 'function' ? p() : p);
  } catch (e) {
    throw toSdError(e);
  }
}

/** Calls a synchronous native function, rethrowing its failure as an SdError. */
export function nativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toSdError(e);
  }
}

/** Short, readable rendering of a received value for error messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'boolean' || typeof v === 'symbol') return String(v);
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of length ${(v as unknown as ArrayLike<unknown>).length}`;
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    const s = JSON.stringify(v, (_k, x) => (typeof x === 'number' && Number.isNaN(x) ? 'NaN' : x));
    return s !== undefined && s.length <= 60 ? s : `an array of length ${v.length}`;
  }
  if (typeof AbortSignal !== 'undefined' && v instanceof AbortSignal) return 'an AbortSignal';
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return `a ${proto?.constructor?.name ?? 'object'}`;
  const keys = Object.keys(v as object);
  return keys.length ? `an object with keys {${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', ...' : ''}}` : '{}';
}

/**
 * What a path that exists but is not a regular file is ('a named pipe (FIFO)', 'a socket',
 * 'a device', 'a directory'), from its stat; undefined for a regular file. A FIFO would block
 * a read forever, so readers refuse these before opening (stat never opens the path).
 */
/**
 * Stats `file` and refuses a FIFO, socket or device up front (a read would block or never end):
 * `onNonRegular(kind)` builds the error to throw. Returns the stat (undefined when the path does
 * not exist); a directory is left for the caller to report as it does a missing file.
 */
export async function statRefusingSpecial(file: string, onNonRegular: (kind: string) => Error): Promise<Stats | undefined> {
  const st = await stat(file).catch(() => undefined);
  const kind = st && nonRegularKind(st);
  if (kind && kind !== 'a directory') throw onNonRegular(kind);
  return st;
}

export function nonRegularKind(st: { isFile(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string | undefined {
  if (st.isFile()) return undefined;
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}
