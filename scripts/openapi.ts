// Writes docs/openapi.json from the hub's zod schemas (hub/openapi/). `node dist/scripts/openapi.js`
// writes it; `--check` exits 1 when the checked-in copy differs from what the code generates.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot, packageVersion } from '../src/meta/package.js';
import { openApiText } from '../hub/openapi/text.js';

export function openApiFile(): string {
  return path.join(packageRoot(), 'docs', 'openapi.json');
}

async function main(): Promise<void> {
  const file = openApiFile();
  const text = openApiText(packageVersion());
  if (process.argv.includes('--check')) {
    const onDisk = await readFile(file, 'utf8').catch(() => null);
    if (onDisk === text) {
      process.stdout.write(`${file} is up to date\n`);
      return;
    }
    process.stderr.write(
      `${file} is ${onDisk === null ? 'missing' : 'stale'}: the hub's schemas or routes changed.\n` +
        'Regenerate it with `npm run build && node dist/scripts/openapi.js` and commit the result.\n',
    );
    process.exitCode = 1;
    return;
  }
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  process.stdout.write(`wrote ${file}\n`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main();
