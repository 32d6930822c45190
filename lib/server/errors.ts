/**
 * HTTP errors of `sd-native serve`: every error answer is `{ error: { code, message } }` (plus
 * `param`, the field at fault, where one is known, as OpenAI's error object has it). The status
 * follows the code: bad input 400, unknown model or route 404, body over the limit 413, out of
 * memory (a device OOM or the memory guard's up-front refusal: the request cannot run now; a smaller
 * one, or the same once memory frees up, can) / shutting down / queue full 503, a cancelled job 409,
 * anything else 500. Past `--max-pixels` is a 400 (app.ts).
 */

/** An error with an HTTP status and an error code. */
export class HttpError extends Error {
  constructor(readonly statusCode: number, readonly code: string, message: string, readonly param?: string) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The HTTP status of an error code (SdError codes, backend codes, the server's own). */
export function statusOfCode(code: string): number {
  switch (code) {
    case 'E_INVALID_ARGUMENT': case 'E_UNSUPPORTED_MODEL': return 400;
    case 'E_MODEL_NOT_FOUND': case 'E_NOT_FOUND': return 404;
    case 'E_ABORTED': return 409;
    case 'E_TOO_LARGE': return 413;
    case 'E_OUT_OF_MEMORY': case 'E_UNAVAILABLE': case 'E_QUEUE_FULL': case 'E_DISPOSED': case 'E_DEVICE_UNAVAILABLE': return 503;
    default: return 500;
  }
}

/** The body of an error answer. */
export function errorBody(code: string, message: string, param?: string): { error: { code: string; message: string; param?: string } } {
  return { error: param === undefined ? { code, message } : { code, message, param } };
}

/**
 * The HTTP status, code and message of anything thrown while handling a request: HttpError,
 * SdError (or any error with an `E_…` code), fastify's own errors (body too large, bad JSON,
 * unsupported content type, multipart limits), or an unexpected error (500, E_INTERNAL).
 */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  const err = e as { code?: unknown; statusCode?: unknown; message?: unknown; validation?: unknown; param?: unknown };
  const message = typeof err?.message === 'string' ? err.message : String(e);
  const code = typeof err?.code === 'string' ? err.code : '';
  if (code.startsWith('E_')) return new HttpError(statusOfCode(code), code, message, typeof err.param === 'string' ? err.param : undefined);
  const status = typeof err?.statusCode === 'number' ? err.statusCode : 500;
  if (status === 413 || code === 'FST_REQ_FILE_TOO_LARGE' || code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return new HttpError(413, 'E_TOO_LARGE', message);
  }
  if (status === 415) return new HttpError(415, 'E_INVALID_ARGUMENT', message);
  if (status >= 400 && status < 500) return new HttpError(status === 404 ? 404 : 400, status === 404 ? 'E_NOT_FOUND' : 'E_INVALID_ARGUMENT', message);
  return new HttpError(500, 'E_INTERNAL', message);
}
