/**
 * hsmb, the project's command-line tool: `hsmb <command> [args]` or `hsmb <group> <command> [args]`. Each
 * command is one entry of `commands`, a function of its arguments and the process's streams that returns
 * the exit code; the entry point (./hsmb.ts) only runs `runHsmb` on the process. Add a command by adding
 * an entry. The commands that call the service share ./apiCommand.ts (where it is, credentials, --json,
 * exit codes).
 */
import { ConfigError } from '../config/load.js';
import { auditVerify } from './auditVerify.js';
import { EXIT_USAGE, type CliIo, type Command } from './command.js';
import { conformance } from './conformanceCommand.js';
import { random, sign, verify, whoami } from './cryptoCommands.js';
import { keyCommands } from './keyCommands.js';
import { ceremonyCommands, pinCommands, tr31Commands } from './paymentCommands.js';

export const commands: Record<string, Command | Record<string, Command>> = {
  keys: keyCommands,
  sign,
  verify,
  random,
  pin: pinCommands,
  tr31: tr31Commands,
  ceremony: ceremonyCommands,
  whoami,
  audit: { verify: auditVerify },
  conformance,
};

const isCommand = (entry: Command | Record<string, Command> | undefined): entry is Command => typeof (entry as Command | undefined)?.run === 'function';

function usage(io: CliIo): number {
  io.err('usage: hsmb <command> [options]   (exit codes: 0 ok, 1 refused, not found or check failed, 2 bad usage, 3 unavailable)');
  for (const [group, entry] of Object.entries(commands)) {
    const entries: [string, Command][] = isCommand(entry) ? [[group, entry]] : Object.entries(entry).map(([name, c]) => [`${group} ${name}`, c]);
    for (const [name, command] of entries) io.err(`  hsmb ${name} ${command.usage}\n      ${command.summary}`);
  }
  return EXIT_USAGE;
}

export async function runHsmb(argv: string[], io: CliIo): Promise<number> {
  const [first, second, ...rest] = argv;
  const entry = first !== undefined && Object.hasOwn(commands, first) ? commands[first] : undefined;
  const [command, name, args] = isCommand(entry)
    ? [entry, first!, argv.slice(1)]
    : [entry && second !== undefined && Object.hasOwn(entry, second) ? entry[second] : undefined, `${first} ${second}`, rest];
  if (!command) return usage(io);
  try {
    return await command.run(args, io);
  } catch (e) {
    // Config and backend errors name the problem, never a secret (as at service start).
    io.err(`hsmb ${name}: ${e instanceof ConfigError || e instanceof Error ? e.message : String(e)}`);
    return EXIT_USAGE;
  }
}
