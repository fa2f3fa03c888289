// Serving logic answers with data; server.ts is the only place that writes it to a socket.
import type { Readable } from 'node:stream';
import { httpStatusOf, ModelhubError, type ErrorCode } from '../src/errors.js';

export type Headers = Record<string, string | number>;

export interface HubResponse {
  status: number;
  headers: Headers;
  /** A JSON value, raw bytes, a file stream, or nothing (304, HEAD). */
  body: Readable | Buffer | string | object | null;
}

export function json(status: number, value: object, headers: Headers = {}): HubResponse {
  return { status, headers: { 'Content-Type': 'application/json; charset=utf-8', ...headers }, body: value };
}

export interface ErrorEnvelope {
  success: false;
  error: ErrorCode;
  message: string;
  details: Record<string, unknown>;
  timestamp: string;
}

/** The one error shape of SPEC §4, for every failure including 404s. */
export function envelope(code: ErrorCode, message: string, details: Record<string, unknown> = {}): ErrorEnvelope {
  return { success: false, error: code, message, details, timestamp: new Date().toISOString() };
}

export function errorResponse(err: ModelhubError, status = httpStatusOf(err.code), headers: Headers = {}): HubResponse {
  return json(status, envelope(err.code, err.message, err.details), headers);
}

export function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): HubResponse {
  return errorResponse(new ModelhubError(code, message, { details }));
}
