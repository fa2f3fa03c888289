// The `modelhub` executable as one bundle (dist/cli/), built from tsc's output after every build.
//
// Why: Node 20 loads ES modules one file at a time (resolve, stat, read, compile, link), and an
// install loaded ~270 of them (zod alone is 95) before its first event: ~480 ms from spawn. The
// bundle starts in ~340 ms (test/bench: `install`). Code split at the CLI's dynamic imports, so
// a command loads only what it runs.
//
// Left outside (imported from node_modules at run time): native addons (better-sqlite3, pg),
// what finds its own files by path (libsodium's loader, pino's transports under fastify), and
// the hub's server stack, which no node command loads. The bundle lives in dist/cli/, two
// levels below the package root like dist/src/*, so the paths our modules derive from
// import.meta.url (the prestage worker, the supervisor, the page's assets, the migrations)
// resolve as they do from dist/src/.
import { build } from 'esbuild';
import { chmodSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * zod's `z.locales` and `z.core.locales` carry its error messages in ~50 languages (340 KB, half
 * of zod); we use none of them (English, the default, zod imports on its own), so these keep
 * English only. Should zod move these files, nothing matches and all of them are bundled.
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]v4[\\/](classic|core)[\\/]/.test(args.importer) ? { path: 'zod-locales', namespace: 'zod-english-only', pluginData: args.resolveDir } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({ contents: 'export { default as en } from "../locales/en.js";', resolveDir: args.pluginData }));
  },
};

const EXTERNAL = [
  ...['better-sqlite3', 'pg', 'pg-native', 'libsodium-wrappers', 'libsodium', 'fastify', '@fastify/*', 'pino', 'pino-*'],
  // node-fetch's fetch-blob requires it only where the global ReadableStream is missing, never
  // on Node 20; bundled, its 184 KB would be parsed at every start.
  'web-streams-polyfill',
];

// From empty: chunk names change with their contents, and the package ships every file here.
rmSync(new URL('../dist/cli', import.meta.url), { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: { modelhub: 'dist/src/cli/main.js' },
  outdir: 'dist/cli',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  // CommonJS dependencies call require() for Node's built-ins; an ES module has none of its own.
  banner: { js: "import { createRequire as __modelhubRequire } from 'node:module'; const require = __modelhubRequire(import.meta.url);" },
  chunkNames: 'chunk-[hash]', // flat: every chunk two levels below the root
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [zodEnglishOnly],
});
chmodSync(new URL('../dist/cli/modelhub.js', import.meta.url), 0o755);
