/** `hsmb keys list|get|create|rotate|enable|disable|destroy`: the key lifecycle. */
import type { KeyView } from '../api/keyView.js';
import type { CreateKeyInput } from '../client/index.js';
import { apiCommand, UsageError, type ApiContext } from './apiCommand.js';
import type { Command } from './command.js';

/** Columns padded to their widest cell. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)];
}

function describe(key: KeyView): string[] {
  const lines = [
    `name: ${key.name}`,
    `type: ${key.type}`,
    `purpose: ${key.purpose}`,
    `state: ${key.state}`,
    `primary version: ${key.primaryVersion}`,
    ...(key.minDecryptionVersion !== undefined ? [`min decryption version: ${key.minDecryptionVersion}`] : []),
    ...(key.keyUsage ? [`key usage: ${key.keyUsage}`] : []),
    `exportable: ${key.exportable}`,
    `created: ${key.createdAt}`,
  ];
  const rows = key.versions.map((v) => [String(v.version), v.createdAt, v.keyCheckValue ?? (v.publicKeyPem ? 'public key: --json' : '')]);
  return [...lines, ...table(['VERSION', 'CREATED', 'KCV / PUBLIC KEY'], rows)];
}

const showKey = (ctx: ApiContext, key: KeyView): void => ctx.print(key, () => describe(key));

/** A command on one key by name whose answer is the key. */
const onKey = (summary: string, call: (ctx: ApiContext, name: string) => Promise<KeyView>): Command =>
  apiCommand({ usage: 'NAME', summary, positionals: 1, run: async (ctx) => showKey(ctx, await call(ctx, ctx.positionals[0]!)) });

export const keyCommands: Record<string, Command> = {
  list: apiCommand({
    usage: '',
    summary: 'list the keys: name, type, purpose, state, primary version',
    positionals: 0,
    async run(ctx) {
      const { keys } = await ctx.client.listKeys();
      ctx.print({ keys }, () => table(['NAME', 'TYPE', 'PURPOSE', 'STATE', 'PRIMARY'], keys.map((k) => [k.name, k.type, k.purpose, k.state, String(k.primaryVersion)])));
    },
  }),
  get: onKey('describe a key and its versions', (ctx, name) => ctx.client.getKey(name)),
  create: apiCommand({
    usage: 'NAME --type TYPE [--purpose PURPOSE] [--exportable] [--key-usage U]',
    summary: 'create a key in the HSM (generated there, never extractable)',
    positionals: 1,
    options: { type: { type: 'string' }, purpose: { type: 'string' }, exportable: { type: 'boolean' }, 'key-usage': { type: 'string' } },
    async run(ctx) {
      const { type, purpose, exportable, 'key-usage': keyUsage } = ctx.values as { type?: string; purpose?: string; exportable?: boolean; 'key-usage'?: string };
      if (!type) throw new UsageError('--type is required (e.g. EC_P256, RSA_2048, AES_256, HMAC_256)');
      showKey(ctx, await ctx.client.createKey({ name: ctx.positionals[0]!, type, ...(purpose ? { purpose } : {}), ...(exportable ? { exportable } : {}), ...(keyUsage ? { keyUsage: keyUsage as CreateKeyInput['keyUsage'] } : {}) }));
    },
  }),
  rotate: onKey('add a new primary version', (ctx, name) => ctx.client.rotateKey(name)),
  enable: onKey('enable a disabled key', (ctx, name) => ctx.client.enableKey(name)),
  disable: onKey('disable a key: it does nothing until enabled again', (ctx, name) => ctx.client.disableKey(name)),
  destroy: apiCommand({
    usage: 'NAME',
    summary: 'destroy a disabled key and every version of it, for good',
    positionals: 1,
    async run(ctx) {
      await ctx.client.destroyKey(ctx.positionals[0]!);
      ctx.print({ destroyed: ctx.positionals[0] }, () => [`destroyed ${ctx.positionals[0]}`]);
    },
  }),
};
