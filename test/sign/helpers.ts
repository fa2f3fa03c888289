// Shared helpers of the signing tests: temp dirs, running the real minisign, editing .minisig
// lines and base64 payloads.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MINISIGN = '/usr/bin/minisign';

export async function makeTempDir(prefix = 'modelhub-sign-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the real minisign (no shell), resolving with its exit code and output. */
export function minisign(args: readonly string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(MINISIGN, [...args], { cwd, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') {
        reject(new Error(`could not run ${MINISIGN}: ${err.message}`, { cause: err }));
        return;
      }
      resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr });
    });
    child.stdin?.end();
  });
}

export function lines(text: string): string[] {
  return text.split('\n');
}

/** Replace line `index` (0-based) of a text. */
export function withLine(text: string, index: number, replace: (line: string) => string): string {
  const all = lines(text);
  all[index] = replace(all[index] ?? '');
  return all.join('\n');
}

/** Decode a base64 line, let `edit` change the bytes, re-encode it. */
export function editBase64(line: string, edit: (bytes: Uint8Array) => void): string {
  const bytes = new Uint8Array(Buffer.from(line, 'base64'));
  edit(bytes);
  return Buffer.from(bytes).toString('base64');
}

export function flipByte(index: number): (bytes: Uint8Array) => void {
  return (bytes) => {
    bytes[index] = (bytes[index] ?? 0) ^ 0x01;
  };
}
