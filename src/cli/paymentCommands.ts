/**
 * `hsmb pin translate`, `hsmb tr31 import|export` and `hsmb ceremony start|enter|status|cancel`. Values that
 * must stay out of shell history and `ps` (a ceremony's clear component) are read from standard input or a
 * file, never from the command line.
 */
import { readFileSync } from 'node:fs';
import type { KeyView } from '../api/keyView.js';
import { apiCommand, UsageError, type ApiContext } from './apiCommand.js';
import type { Command } from './command.js';

const str = (ctx: ApiContext, name: string): string | undefined => ctx.values[name] as string | undefined;
function required(ctx: ApiContext, name: string): string {
  const value = str(ctx, name);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}
function version(ctx: ApiContext, name: string): number | undefined {
  const value = str(ctx, name);
  if (value !== undefined && !/^[1-9]\d{0,8}$/.test(value)) throw new UsageError(`--${name}: a version number (1, 2, ...)`);
  return value === undefined ? undefined : Number(value);
}
/** Only the fields given: the service tells an absent field from an empty one. */
const given = (fields: Record<string, unknown>) => Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
/** One value from --NAME or from --NAME-file (`-`: standard input), trimmed. */
function textOf(ctx: ApiContext, name: string): string {
  const inline = str(ctx, name);
  const file = str(ctx, `${name}-file`);
  if ((inline === undefined) === (file === undefined)) throw new UsageError(`give one of --${name} and --${name}-file FILE (- for standard input)`);
  return inline ?? readFileSync(file === '-' ? 0 : file!, 'utf8').trim();
}

interface KeyUsed { keyName: string; keyVersion: number; keyCheckValue: string }
const used = (k: KeyUsed) => `${k.keyName} v${k.keyVersion} (KCV ${k.keyCheckValue})`;

export const pinCommands: Record<string, Command> = {
  translate: apiCommand({
    usage: '(--pin-block HEX | --pin-block-file FILE) --in-key NAME --in-format F [--in-version V] [--pan PAN] [--ksn KSN] --out-key NAME --out-format F [--out-version V] [--out-pan PAN]',
    summary: 'translate an enciphered PIN block to another key or format, inside the service; prints the new block',
    positionals: 0,
    options: {
      'pin-block': { type: 'string' }, 'pin-block-file': { type: 'string' }, 'in-key': { type: 'string' }, 'in-format': { type: 'string' }, 'in-version': { type: 'string' },
      pan: { type: 'string' }, ksn: { type: 'string' }, 'out-key': { type: 'string' }, 'out-format': { type: 'string' }, 'out-version': { type: 'string' }, 'out-pan': { type: 'string' },
    },
    async run(ctx) {
      const ksn = str(ctx, 'ksn');
      const answer = await ctx.client.call<{ pinBlock: string; incoming: KeyUsed; outgoing: KeyUsed }>('pin.translate', {
        pinBlock: textOf(ctx, 'pin-block'),
        incoming: given({ keyName: required(ctx, 'in-key'), format: required(ctx, 'in-format'), keyVersion: version(ctx, 'in-version'), pan: str(ctx, 'pan'), dukpt: ksn === undefined ? undefined : { ksn } }),
        outgoing: given({ keyName: required(ctx, 'out-key'), format: required(ctx, 'out-format'), keyVersion: version(ctx, 'out-version'), pan: str(ctx, 'out-pan') }),
      });
      ctx.print(answer, () => [answer.pinBlock, `from ${used(answer.incoming)} to ${used(answer.outgoing)}`]);
    },
  }),
};

export const tr31Commands: Record<string, Command> = {
  import: apiCommand({
    usage: 'NAME (--block TEXT | --block-file FILE) --kbpk KEY [--kbpk-version V]',
    summary: 'import a TR-31 key block as a new key; prints its KCV to compare with the sender\'s',
    positionals: 1,
    options: { block: { type: 'string' }, 'block-file': { type: 'string' }, kbpk: { type: 'string' }, 'kbpk-version': { type: 'string' } },
    async run(ctx) {
      const answer = await ctx.client.call<{ key: KeyView; keyCheckValue: string; kbpk: KeyUsed }>('keys.importTr31', {
        name: ctx.positionals[0],
        keyBlock: textOf(ctx, 'block'),
        kbpk: given({ keyName: required(ctx, 'kbpk'), keyVersion: version(ctx, 'kbpk-version') }),
      });
      ctx.print(answer, () => [`imported ${answer.key.name}: ${answer.key.type}, purpose ${answer.key.purpose}, KCV ${answer.keyCheckValue}`, `under ${used(answer.kbpk)}`]);
    },
  }),
  export: apiCommand({
    usage: 'NAME --kbpk KEY [--kbpk-version V] [--key-version V] [--exportability E|N|S]',
    summary: 'export an exportable key in a TR-31 key block under a KBPK; prints the block',
    positionals: 1,
    options: { kbpk: { type: 'string' }, 'kbpk-version': { type: 'string' }, 'key-version': { type: 'string' }, exportability: { type: 'string' } },
    async run(ctx) {
      const answer = await ctx.client.call<{ keyBlock: string; keyName: string; keyVersion: number; keyCheckValue?: string }>('keys.exportTr31', given({
        name: ctx.positionals[0],
        kbpk: given({ keyName: required(ctx, 'kbpk'), keyVersion: version(ctx, 'kbpk-version') }),
        keyVersion: version(ctx, 'key-version'),
        exportability: str(ctx, 'exportability'),
      }));
      ctx.print(answer, () => [answer.keyBlock]);
    },
  }),
};

interface Ceremony { id: string; name: string; type: string; purpose: string; components: number; received: number; expiresAt: string; entries: { number: number; enteredBy: string; enteredAt: string; kcv: string }[] }
const ceremonyLines = (c: Ceremony) => [
  `ceremony ${c.id}: key ${c.name} (${c.type}, purpose ${c.purpose})`,
  `components: ${c.received} of ${c.components} entered; expires ${c.expiresAt}`,
  ...c.entries.map((e) => `  component ${e.number}: KCV ${e.kcv}, entered by ${e.enteredBy} at ${e.enteredAt}`),
];

export const ceremonyCommands: Record<string, Command> = {
  start: apiCommand({
    usage: 'NAME --type TYPE --purpose PURPOSE --components 2|3 [--key-usage U] [--exportable] [--expected-kcv KCV]',
    summary: 'start a key ceremony: the key NAME is formed from components that different custodians enter',
    positionals: 1,
    options: { type: { type: 'string' }, purpose: { type: 'string' }, components: { type: 'string' }, 'key-usage': { type: 'string' }, exportable: { type: 'boolean' }, 'expected-kcv': { type: 'string' } },
    async run(ctx) {
      const components = required(ctx, 'components');
      if (components !== '2' && components !== '3') throw new UsageError('--components: 2 or 3');
      const ceremony = await ctx.client.call<Ceremony>('ceremonies.create', given({
        name: ctx.positionals[0], type: required(ctx, 'type'), purpose: required(ctx, 'purpose'), components: Number(components),
        keyUsage: str(ctx, 'key-usage'), exportable: ctx.values.exportable === true ? true : undefined, expectedKcv: str(ctx, 'expected-kcv'),
      }));
      ctx.print(ceremony, () => ceremonyLines(ceremony));
    },
  }),
  enter: apiCommand({
    usage: 'ID --kcv KCV [--component-file FILE]',
    summary: 'enter your clear component (hex) from standard input or FILE, never from the command line',
    positionals: 1,
    options: { kcv: { type: 'string' }, 'component-file': { type: 'string' } },
    async run(ctx) {
      const file = str(ctx, 'component-file') ?? '-';
      const component = readFileSync(file === '-' ? 0 : file, 'utf8').trim();
      if (component === '') throw new UsageError('no component: give it on standard input or in --component-file');
      const answer = await ctx.client.call<{ received: number; of: number; name?: string; keyCheckValue?: string }>('ceremonies.enterComponent', { id: ctx.positionals[0], component, kcv: required(ctx, 'kcv') });
      ctx.print(answer, () => [answer.keyCheckValue ? `key ${answer.name} made: KCV ${answer.keyCheckValue}` : `component ${answer.received} of ${answer.of} entered`]);
    },
  }),
  status: apiCommand({
    usage: 'ID',
    summary: 'show a ceremony: components entered, by whom, with their KCVs',
    positionals: 1,
    async run(ctx) {
      const ceremony = await ctx.client.call<Ceremony>('ceremonies.get', { id: ctx.positionals[0] });
      ctx.print(ceremony, () => ceremonyLines(ceremony));
    },
  }),
  cancel: apiCommand({
    usage: 'ID',
    summary: 'cancel a ceremony: its staged components are destroyed',
    positionals: 1,
    async run(ctx) {
      await ctx.client.call('ceremonies.cancel', { id: ctx.positionals[0] });
      ctx.print({ cancelled: ctx.positionals[0] }, () => [`cancelled ${ctx.positionals[0]}`]);
    },
  }),
};
