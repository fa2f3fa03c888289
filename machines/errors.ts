// Errors as they live in machine context and in the event log: plain JSON, so that a replay
// from an exported log sees exactly what the live run saw.
import { isErrorCode, type ErrorCode } from '../src/errors.js';

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

/** Pure: accepts a live Error (from an effect) or its logged JSON form. */
export function errorInfoOf(error: unknown): ErrorInfo {
  if (typeof error === 'object' && error !== null) {
    const e = error as { code?: unknown; message?: unknown; retryable?: unknown };
    const code = isErrorCode(e.code) ? e.code : 'INTERNAL';
    const message = typeof e.message === 'string' ? e.message : JSON.stringify(error);
    return { code, message, retryable: e.retryable === true };
  }
  return { code: 'INTERNAL', message: String(error), retryable: false };
}
