// Every command runs through here: one result line, exit 0 on success, 1 on failure,
// 2 on bad usage (INVALID_REQUEST raised while reading options).
import type { Command } from 'commander';
import { ModelhubError } from '../errors.js';
import { Output } from './output.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export class UsageError extends ModelhubError {
  constructor(message: string) {
    super('INVALID_REQUEST', message);
  }
}

export interface GlobalOptions {
  json: boolean;
  home?: string;
  hub?: string;
}

export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ json?: boolean; home?: string; hub?: string }>();
  return { json: o.json === true, home: o.home, hub: o.hub };
}

/**
 * Wraps a command action. The action gets the Output and the command; what it returns decides
 * the exit status (a failing result it already printed can return EXIT_FAILED).
 */
export function action<A extends unknown[]>(
  body: (out: Output, cmd: Command, ...args: A) => Promise<number | void>,
): (...args: [...A, Record<string, unknown>, Command]) => Promise<void> {
  return async (...all) => {
    const cmd = all[all.length - 1] as Command;
    const args = all.slice(0, -2) as unknown as A;
    const out = new Output(globalsOf(cmd).json);
    try {
      const code = await body(out, cmd, ...args);
      process.exitCode = code ?? EXIT_OK;
    } catch (err) {
      out.failure(err);
      process.exitCode = err instanceof UsageError ? EXIT_USAGE : EXIT_FAILED;
    }
  };
}
