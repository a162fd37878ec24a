#!/usr/bin/env node
/** The hsmb command (package.json `bin`): runs ./commands.ts on this process's arguments. */
import { runHsmb } from './commands.js';

runHsmb(process.argv.slice(2), {
  env: process.env,
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
}).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    process.stderr.write(`hsmb: ${String(e)}\n`);
    process.exitCode = 2;
  },
);
