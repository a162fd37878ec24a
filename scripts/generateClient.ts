/**
 * Writes src/client/operations.generated.ts: a typed method of HsmBridgeClient for every declared
 * operation, its input and answer types read from the operation's REST schemas (the shapes both of the
 * client's channels take and give; base64 fields as Buffers). Run `npm run generate:client` after
 * declaring or changing an operation; test/client/generated.test.ts fails while the file is stale.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { JsonSchema, Operation } from '../src/api/declaration.js';
import { operationId, operations } from '../src/api/index.js';

export const GENERATED_PATH = fileURLToPath(new URL('../src/client/operations.generated.ts', import.meta.url));

/** Method names where the operationId says more than a caller types (`mac`, as the issue and jose say it). */
const methodNames: Readonly<Record<string, string>> = {
  generateMac: 'mac',
  generateMacBatch: 'macBatch',
  generateRandom: 'random',
  getCapabilities: 'capabilities',
  whoAmI: 'whoami',
};

const pascal = (s: string) => s[0]!.toUpperCase() + s.slice(1);
const comment = (text: unknown, indent: string) => (typeof text === 'string' && text ? `${indent}/** ${text.replace(/\*\//g, '*\\/').replace(/\s*\n\s*/g, ' ')} */\n` : '');
const literal = (v: unknown) => JSON.stringify(v);

/** A TypeScript type for a JSON Schema, as the client sees values: `format: byte` strings are Buffers. */
export function typeOf(schema: JsonSchema | undefined, indent = '', named: Named = new Map()): string {
  if (!schema) return 'unknown';
  const name = named.get(schema);
  if (name) return name;
  const alternatives = (schema.oneOf ?? schema.anyOf) as JsonSchema[] | undefined;
  // Branches that only say which fields are required refine the object; branches with a shape of their own are a union.
  if (alternatives?.some((a) => a.type !== undefined || a.properties !== undefined)) {
    return alternatives.map((a) => typeOf({ ...stripAlternatives(schema), ...a, properties: { ...(schema.properties as object), ...(a.properties as object) } }, indent, named)).join(' | ');
  }
  if (Array.isArray(schema.enum)) return schema.enum.map(literal).join(' | ');
  switch (schema.type) {
    case 'string':
      return schema.format === 'byte' ? 'Buffer' : 'string';
    case 'integer':
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array':
      return `Array<${typeOf(schema.items as JsonSchema | undefined, indent, named)}>`;
    case 'object':
    case undefined:
      return schema.properties || schema.additionalProperties !== undefined || schema.type === 'object' ? objectType(schema, indent, named) : 'unknown';
    default:
      return 'unknown';
  }
}

function stripAlternatives(schema: JsonSchema): JsonSchema {
  const { oneOf: _o, anyOf: _a, ...rest } = schema;
  return rest;
}

function objectType(schema: JsonSchema, indent: string, named: Named): string {
  const properties = Object.entries((schema.properties ?? {}) as Record<string, JsonSchema>);
  const required = new Set((schema.required ?? []) as string[]);
  const extra = schema.additionalProperties;
  if (properties.length === 0) return typeof extra === 'object' && extra !== null ? `Record<string, ${typeOf(extra as JsonSchema, indent, named)}>` : 'Record<string, unknown>';
  const inner = `${indent}  `;
  const lines = properties.map(([name, s]) => `${comment(s.description, inner)}${inner}${/^[A-Za-z_$][\w$]*$/.test(name) ? name : literal(name)}${required.has(name) ? '' : '?'}: ${typeOf(s, inner, named)};\n`);
  if (typeof extra === 'object' && extra !== null) lines.push(`${inner}[field: string]: unknown;\n`);
  return `{\n${lines.join('')}${indent}}`;
}

const paramsOf = (op: Operation) => [...op.rest.path.matchAll(/:(\w+)/g)].map((m) => m[1]!);

/** Schemas already written as a named type: where one is used again (a key inside a key list), its name stands. */
type Named = Map<unknown, string>;

function declare(name: string, schema: JsonSchema, doc: string, named: Named): string {
  const text = typeOf(schema, '', named);
  if (!named.has(schema)) named.set(schema, name);
  return `${comment(doc, '')}export type ${name} = ${text};\n`;
}

function method(op: Operation, named: Named): { types: string; method: string } {
  const id = operationId(op);
  const name = methodNames[id] ?? id;
  const type = pascal(name);
  const params = paramsOf(op);
  const body = op.rest.body;
  const bodyRequired = ((body?.required ?? []) as string[]).length > 0;
  const answer = op.rest.status === 204 || !op.rest.response ? 'void' : `${type}Answer`;
  const types = [
    body ? declare(`${type}Input`, body, `The body of ${op.name}: ${op.summary}`, named) : '',
    answer !== 'void' ? declare(`${type}Answer`, op.rest.response!, `The answer of ${op.name}.`, named) : '',
  ].join('');
  const args = [...params.map((p) => `${p}: string`), ...(body ? [`input${bodyRequired ? '' : '?'}: ${type}Input`] : []), 'options?: CallOptions'];
  const fields = [...params, ...(body ? ['...input'] : [])].join(', ');
  const call = `this.call<${answer === 'void' ? 'unknown' : answer}>(${literal(op.name)}, { ${fields} }, options)`;
  return {
    types,
    method: `${comment(`${op.summary} (${op.name}: ${op.rest.method} ${op.rest.path}, ${op.grpc.service}/${op.grpc.method})`, '  ')}  ${answer === 'void' ? 'async ' : ''}${name}(${args.join(', ')}): Promise<${answer}> {\n    ${answer === 'void' ? `await ${call};` : `return ${call};`}\n  }\n`,
  };
}

export function generateClientOperations(): string {
  const named: Named = new Map();
  const generated = operations.map((op) => method(op, named));
  return `/**
 * Generated by scripts/generateClient.ts from the operation declarations (src/api/operations): do not
 * edit. A typed method for every operation, its input and answer types from the operation's REST schemas.
 */
/* eslint-disable */
import type { CallOptions } from './channel.js';

${generated.map((g) => g.types).filter(Boolean).join('\n')}
/** The operation table of the client, one method per declared operation; HsmBridgeClient supplies \`call\`. */
export abstract class ClientOperations {
  abstract call<T = unknown>(operation: string, input?: Record<string, unknown>, options?: CallOptions): Promise<T>;

${generated.map((g) => g.method).join('\n')}}

/** Which method calls which operation. */
export const operationMethods: Readonly<Record<string, keyof ClientOperations>> = {
${operations.map((op) => `  ${literal(op.name)}: ${literal(methodNames[operationId(op)] ?? operationId(op))},`).join('\n')}
};
`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(GENERATED_PATH, generateClientOperations());
  console.log(`wrote ${GENERATED_PATH}`);
}
