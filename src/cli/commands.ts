/**
 * hsmb, the project's command-line tool: `hsmb <group> <command> [args]`. Each command is one entry of
 * `commands`, a function of its arguments and the process's streams that returns the exit code; the
 * entry point (./hsmb.ts) only runs `runHsmb` on the process. Add a command by adding an entry.
 */
import { ConfigError } from '../config/load.js';
import { auditVerify } from './auditVerify.js';
import { EXIT_USAGE, type CliIo, type Command } from './command.js';

export const commands: Record<string, Record<string, Command>> = {
  audit: { verify: auditVerify },
};

function usage(io: CliIo): number {
  io.err('usage: hsmb <command> [options]');
  for (const [group, entries] of Object.entries(commands)) {
    for (const [name, command] of Object.entries(entries)) io.err(`  hsmb ${group} ${name} ${command.usage}\n      ${command.summary}`);
  }
  return EXIT_USAGE;
}

export async function runHsmb(argv: string[], io: CliIo): Promise<number> {
  const [group, name, ...args] = argv;
  const command = group === undefined || name === undefined ? undefined : commands[group]?.[name];
  if (!command) return usage(io);
  try {
    return await command.run(args, io);
  } catch (e) {
    // Config and backend errors name the problem, never a secret (as at service start).
    io.err(`hsmb ${group} ${name}: ${e instanceof ConfigError || e instanceof Error ? e.message : String(e)}`);
    return EXIT_USAGE;
  }
}
