/**
 * What every hsmb command that calls the service shares: where the service is and how to authenticate
 * (--url or HSMB_URL; --ca/--cert/--key or HSMB_CA/HSMB_CERT/HSMB_KEY for mTLS; --token or HSMB_TOKEN),
 * --json output, and one mapping of the service's errors to the message on stderr and the exit code.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { HsmBridgeClient, HsmBridgeClientError } from '../client/index.js';
import { errorCodes, httpStatusOf, type ErrorCode } from '../errors.js';
import { EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, type CliIo, type Command } from './command.js';

type Options = NonNullable<ParseArgsConfig['options']>;

const connectionOptions = {
  url: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Options;

export const CONNECTION_USAGE = '[--url URL] [--ca FILE --cert FILE --key FILE | --token T] [--json]';

/** A mistake in the command line: usage on stderr, exit 2. */
export class UsageError extends Error {}

export interface ApiContext {
  readonly client: HsmBridgeClient;
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: string[];
  readonly io: CliIo;
  /** Prints the answer: `json` with --json (Buffers as base64), else the lines given. */
  print(json: unknown, lines: () => string[]): void;
}

export interface ApiCommandSpec {
  readonly usage: string;
  readonly summary: string;
  readonly options?: Options;
  /** How many positional arguments it takes (exactly). */
  readonly positionals: number;
  run(context: ApiContext): Promise<number | void>;
}

/** The exit code for an error the service (or the way to it) gave. */
export function exitCodeOf(error: HsmBridgeClientError): number {
  if (error.transient || error.code === 'AUDIT_UNAVAILABLE') return EXIT_UNAVAILABLE;
  const status = error.status ?? ((errorCodes as readonly string[]).includes(error.code) ? httpStatusOf(error.code as ErrorCode) : 500);
  return status === 400 || status === 413 || status === 415 ? EXIT_USAGE : EXIT_FAILED;
}

const readPem = (path: string | undefined) => (path === undefined ? undefined : readFileSync(path));

function clientFrom(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): HsmBridgeClient {
  const url = (values.url as string | undefined) ?? env.HSMB_URL;
  if (!url) throw new UsageError('no service: give --url or set HSMB_URL (e.g. http://127.0.0.1:8080)');
  const ca = (values.ca as string | undefined) ?? env.HSMB_CA;
  const cert = (values.cert as string | undefined) ?? env.HSMB_CERT;
  const key = (values.key as string | undefined) ?? env.HSMB_KEY;
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key go together');
  const token = (values.token as string | undefined) ?? env.HSMB_TOKEN;
  const tls = ca || cert ? { ca: readPem(ca), cert: readPem(cert), key: readPem(key) } : undefined;
  return new HsmBridgeClient({ url, ...(tls ? { tls } : {}), ...(token ? { token } : {}) });
}

/** JSON for printing: Buffers as base64. */
export const printable = (value: unknown): string => JSON.stringify(value, (_k, v: unknown) => (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data) ? Buffer.from((v as { data: number[] }).data).toString('base64') : v), 2);

export function apiCommand(spec: ApiCommandSpec): Command {
  return {
    usage: `${spec.usage} ${CONNECTION_USAGE}`,
    summary: spec.summary,
    async run(args, io) {
      let client: HsmBridgeClient | undefined;
      let json = false;
      try {
        const { values, positionals } = parseArgs({ args, options: { ...connectionOptions, ...spec.options }, allowPositionals: true, strict: true });
        json = values.json === true;
        if (positionals.length !== spec.positionals) throw new UsageError(`expected ${spec.positionals} argument(s), got ${positionals.length}`);
        client = clientFrom(values, io.env);
        const print = (answer: unknown, lines: () => string[]): void => {
          if (json) io.out(printable(answer));
          else for (const line of lines()) io.out(line);
        };
        return (await spec.run({ client, values, positionals, io, print })) ?? 0;
      } catch (e) {
        if (e instanceof HsmBridgeClientError) {
          io.err(`${e.code}: ${e.message}`);
          if (json) io.out(printable({ error: { code: e.code, message: e.message, ...(e.requestId ? { requestId: e.requestId } : {}) } }));
          return exitCodeOf(e);
        }
        if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
          io.err(`${(e as Error).message}\nusage: ${spec.usage} ${CONNECTION_USAGE}`);
          return EXIT_USAGE;
        }
        throw e;
      } finally {
        client?.close();
      }
    },
  };
}
