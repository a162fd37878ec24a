/** What every hsmb command is: a function of its arguments and the process's streams that returns the exit code. */

export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  out(line: string): void;
  err(line: string): void;
}

export interface Command {
  readonly usage: string;
  readonly summary: string;
  run(args: string[], io: CliIo): Promise<number>;
}

/** Exit codes: 0 done (for a check: it passed), 1 the check failed, 2 the command could not run. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
