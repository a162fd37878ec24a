/** `hsmb sign|verify|random|whoami`: key operations and the caller's identity, for ceremonies and checks by hand. */
import { readFileSync, writeFileSync } from 'node:fs';
import { apiCommand, UsageError, type ApiContext } from './apiCommand.js';
import { EXIT_FAILED, type Command } from './command.js';

/** A file's bytes; `-` is standard input. */
const readInput = (path: string): Buffer => readFileSync(path === '-' ? 0 : path);

/** The message or digest to sign or verify: exactly one of --message-file and --digest-file. */
function signInput(ctx: ApiContext): { message: Buffer } | { digest: Buffer } {
  const { 'message-file': message, 'digest-file': digest } = ctx.values as Record<string, string | undefined>;
  if ((message === undefined) === (digest === undefined)) throw new UsageError('give one of --message-file FILE and --digest-file FILE (- for standard input)');
  return message !== undefined ? { message: readInput(message) } : { digest: readInput(digest!) };
}

const inputOptions = { 'message-file': { type: 'string' }, 'digest-file': { type: 'string' }, algorithm: { type: 'string' } } as const;
const algorithmOf = (ctx: ApiContext) => (ctx.values.algorithm as string | undefined) ?? undefined;

export const sign: Command = apiCommand({
  usage: 'NAME (--message-file FILE | --digest-file FILE) [--algorithm ALG] [--out FILE]',
  summary: 'sign with the primary version of a key; prints the signature in base64 (--out: the raw bytes to FILE)',
  positionals: 1,
  options: { ...inputOptions, out: { type: 'string' } },
  async run(ctx) {
    const algorithm = algorithmOf(ctx);
    const result = await ctx.client.sign(ctx.positionals[0]!, { ...signInput(ctx), ...(algorithm ? { algorithm } : {}) });
    if (ctx.values.out) writeFileSync(ctx.values.out as string, result.signature);
    ctx.print(result, () => [`signature: ${result.signature.toString('base64')}`, `key version: ${result.keyVersion}`, `algorithm: ${result.algorithm}`]);
  },
});

export const verify: Command = apiCommand({
  usage: 'NAME (--message-file FILE | --digest-file FILE) (--signature-file FILE | --signature BASE64) [--algorithm ALG] [--key-version V]',
  summary: 'verify a signature; exit 0 when valid, 1 when not',
  positionals: 1,
  options: { ...inputOptions, 'signature-file': { type: 'string' }, signature: { type: 'string' }, 'key-version': { type: 'string' } },
  async run(ctx) {
    const { 'signature-file': file, signature: text, 'key-version': version } = ctx.values as Record<string, string | undefined>;
    if ((file === undefined) === (text === undefined)) throw new UsageError('give one of --signature-file FILE and --signature BASE64');
    if (version !== undefined && !/^[1-9]\d{0,8}$/.test(version)) throw new UsageError('--key-version: a version number (1, 2, ...)');
    const algorithm = algorithmOf(ctx);
    const signature = file !== undefined ? readInput(file) : Buffer.from(text!, 'base64');
    const result = await ctx.client.verify(ctx.positionals[0]!, { ...signInput(ctx), signature, ...(algorithm ? { algorithm } : {}), ...(version ? { keyVersion: Number(version) } : {}) });
    ctx.print(result, () => [`${result.valid ? 'valid' : 'INVALID'}: key version ${result.keyVersion}, ${result.algorithm}`]);
    return result.valid ? 0 : EXIT_FAILED;
  },
});

export const random: Command = apiCommand({
  usage: 'N [--encoding hex|base64] [--out FILE]',
  summary: "N random bytes from the HSM's generator, printed in hex (or base64); --out: the raw bytes to FILE",
  positionals: 1,
  options: { encoding: { type: 'string' }, out: { type: 'string' } },
  async run(ctx) {
    const n = ctx.positionals[0]!;
    if (!/^[1-9]\d{0,5}$/.test(n)) throw new UsageError('N: a number of bytes, 1 or more');
    const encoding = (ctx.values.encoding as string | undefined) ?? 'hex';
    if (encoding !== 'hex' && encoding !== 'base64') throw new UsageError('--encoding: hex or base64');
    const bytes = (await ctx.client.random({ length: Number(n) })).random;
    try {
      if (ctx.values.out) writeFileSync(ctx.values.out as string, bytes, { mode: 0o600 });
      ctx.print({ random: bytes }, () => [bytes.toString(encoding)]);
    } finally {
      bytes.fill(0);
    }
  },
});

export const whoami: Command = apiCommand({
  usage: '',
  summary: 'who the service takes you for, and what the access policy lets you do',
  positionals: 0,
  async run(ctx) {
    const me = await ctx.client.whoami();
    const rules = (me.rules as { principal: string; allow: string[]; keys: string[] }[] | undefined) ?? [];
    ctx.print(me, () => [
      `id: ${me.id} (authenticated by ${me.authenticatedBy})`,
      `policy: ${me.policy ? 'in force' : 'none: every caller may do everything'}`,
      ...(me.principals?.length ? [`principals: ${me.principals.join(', ')}`] : []),
      ...rules.map((r) => `  ${r.principal}: ${r.allow.join(', ')} on keys ${r.keys.join(', ') || '(none)'}`),
    ]);
  },
});
