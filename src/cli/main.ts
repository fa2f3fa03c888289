#!/usr/bin/env -S node --max-semi-space-size=2
// The flag: V8's young generation may otherwise grow to 3 × 16 MiB, and a download allocates a
// fresh 64 KiB buffer per socket read, so garbage that a scavenge would free at once sits in
// memory instead; at 2 MiB the installer's peak RSS drops by ~25 MB with no loss of speed
// (measured: `npm run bench install`). `env -S` splits the line on Linux and macOS; npm's
// Windows shims read the same flags from it.
// modelhub: one executable for admins (keygen, pack, sign, publish, hub serve) and nodes
// (install, models, recover, replay…). SPEC §5 is its contract.
import { Command, CommanderError } from 'commander';
import { ModelhubError } from '../errors.js';
import { packageVersion } from '../meta/package.js';
import { Output } from './output.js';
import { EXIT_USAGE } from './run.js';
import { registerAdminCommands } from './commands/admin.js';
import { registerHubCommands } from './commands/hub.js';
import { registerJobCommands } from './commands/jobs.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerNodeCommands } from './commands/node.js';
import { registerRecordsCommands } from './commands/records.js';

export function buildProgram(): Command {
  const program = new Command('modelhub')
    .description('Ship signed ML services and models to a fleet of machines')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--json', 'print JSON lines only: progress events, then one result line')
    .option('--home <dir>', 'the node data directory (default: $MODELHUB_HOME, else the platform app-data folder)')
    .option('--hub <url>', 'the hub (default: $MODELHUB_HUB)')
    .showHelpAfterError()
    .exitOverride();
  registerHubCommands(program);
  registerAdminCommands(program);
  registerKeyCommands(program);
  registerNodeCommands(program);
  registerJobCommands(program);
  registerRecordsCommands(program);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        process.exitCode = 0;
        return;
      }
      const json = argv.includes('--json');
      if (json) new Output(true).failure(new ModelhubError('INVALID_REQUEST', err.message.replace(/^error: /, '')));
      process.exitCode = EXIT_USAGE;
      return;
    }
    throw err;
  }
}

await main(process.argv);
