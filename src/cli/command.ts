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

/**
 * Exit codes: 0 done (for a check: it passed); 1 the check failed, or the service refused the call or
 * did not find what it names; 2 bad usage (of the command, or a request the service found malformed);
 * 3 the service or its HSM was unavailable.
 */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNAVAILABLE = 3;
