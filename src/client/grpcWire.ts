/**
 * The client's REST-shaped values on the gRPC wire, derived, not written per operation: a request is laid
 * onto the rpc's message type field by field (read from the .proto descriptors), and an answer is read
 * back into the shape the REST answer's schema gives. The few places where the two contracts differ on
 * purpose (test/api/declarations.test.ts lists them) follow from two rules: REST nests in an object what
 * gRPC puts at the top in a oneof (`recipient`), and REST's `xHex` is the hex form of gRPC's bytes `x`.
 * JSON values that gRPC carries as strings (a JWK, a header) are stringified and parsed back.
 */
import type { JsonSchema } from '../api/declaration.js';
import { branches } from './wire.js';

/** A message type as @grpc/proto-loader describes it (field names camelCase, as the client uses them). */
export interface MessageDescriptor {
  readonly field: readonly { readonly name: string; readonly type: string; readonly label: string; readonly typeName?: string }[];
}
/** A message type by the name a field gives; undefined for a map's entry type, whose keys are free. */
export type TypeLookup = (typeName: string) => MessageDescriptor | undefined;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/**
 * The one difference the two rules do not cover: pin.toJwe's REST recipient {key, keyVersion} or
 * {participant, keyId} is gRPC's oneof of a PaymentKeyRef and a ParticipantRecipient.
 */
const requestAdapters: Readonly<Record<string, (input: Record<string, unknown>) => Record<string, unknown>>> = {
  'pin.toJwe': ({ recipient, ...rest }) => {
    const r = (recipient ?? {}) as { key?: string; keyVersion?: number; participant?: string; keyId?: string };
    if (r.key !== undefined) return { ...rest, key: { keyName: r.key, keyVersion: r.keyVersion } };
    return { ...rest, ...(r.participant !== undefined ? { participant: { participant: r.participant, keyId: r.keyId } } : {}) };
  },
};

/** The rpc's request message for `input`; a field the rpc has no place for is refused (gRPC would drop it silently). */
export function toGrpcRequest(operation: string, input: Record<string, unknown>, type: MessageDescriptor, lookup: TypeLookup): Record<string, unknown> {
  return toMessage(operation, '', requestAdapters[operation]?.(input) ?? input, type, lookup);
}

/** A message type's fields by name, built once per type: the client's every call lays its input onto one. */
const fieldMaps = new WeakMap<MessageDescriptor, ReadonlyMap<string, MessageDescriptor['field'][number]>>();
function fieldsOf(type: MessageDescriptor): ReadonlyMap<string, MessageDescriptor['field'][number]> {
  let fields = fieldMaps.get(type);
  if (!fields) fieldMaps.set(type, (fields = new Map(type.field.map((f) => [f.name, f]))));
  return fields;
}

function toMessage(operation: string, at: string, input: Record<string, unknown>, type: MessageDescriptor, lookup: TypeLookup): Record<string, unknown> {
  const fields = fieldsOf(type);
  const pending: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) {
    if (v === undefined) continue;
    if (!fields.has(k) && isPlainObject(v)) Object.assign(pending, v); // REST's nesting of a gRPC oneof
    else if (!fields.has(k) && k.endsWith('Hex') && fields.get(k.slice(0, -3))?.type === 'TYPE_BYTES' && typeof v === 'string') pending[k.slice(0, -3)] = Buffer.from(v, 'hex');
    else pending[k] = v;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(pending)) {
    const field = fields.get(k);
    if (!field) throw new TypeError(`${operation}: ${at}${k} is not a field of the request`);
    const one = (value: unknown, path: string): unknown => {
      switch (field.type) {
        case 'TYPE_MESSAGE': {
          const type = isPlainObject(value) ? lookup(field.typeName!) : undefined;
          return type ? toMessage(operation, `${path}.`, value as Record<string, unknown>, type, lookup) : value;
        }
        case 'TYPE_BYTES':
          return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
        case 'TYPE_STRING':
          return isPlainObject(value) || Array.isArray(value) ? JSON.stringify(value) : value;
        default:
          return value;
      }
    };
    out[k] = field.label === 'LABEL_REPEATED' && Array.isArray(v) ? v.map((item, i) => one(item, `${at}${k}[${i}]`)) : one(v, `${at}${k}`);
  }
  return out;
}

const typesOf = (options: JsonSchema[]) => new Set(options.flatMap((s) => (Array.isArray(s.type) ? (s.type as string[]) : s.type ? [s.type as string] : [])));

/** The gRPC answer in the REST answer's shape, as `schema` (the REST response schema) describes it. */
export function fromGrpcAnswer(value: unknown, schema: JsonSchema | undefined): unknown {
  if (schema === undefined) return value;
  const options = branches(schema);
  const types = typesOf(options);
  if (value instanceof Uint8Array) return types.has('string') && !options.some((s) => s.format === 'byte') ? Buffer.from(value).toString('utf8') : value;
  if (typeof value === 'string' && !types.has('string') && (types.has('object') || types.has('array'))) {
    return value === '' ? undefined : (JSON.parse(value) as unknown);
  }
  if (Array.isArray(value)) {
    const items = options.map((s) => s.items as JsonSchema | undefined).find((s) => s !== undefined);
    return value.map((v) => fromGrpcAnswer(v, items));
  }
  if (!isPlainObject(value)) return value;
  const properties: Record<string, JsonSchema> = Object.assign({}, ...options.map((s) => (s.properties as Record<string, JsonSchema> | undefined) ?? {}));
  // proto-loader names the member a oneof holds in a field of the oneof's name; REST has no such field.
  const members = Object.entries(value).filter(([k, v]) => !(typeof v === 'string' && v !== k && Object.hasOwn(value, v) && !properties[k]));
  if (members.length === 1 && !properties[members[0]![0]]) {
    const [, only] = members[0]!;
    // A oneof member where REST has the bare value (a token, or an error object: REST's alternatives).
    if (!types.has('object') || !isPlainObject(only)) {
      // The REST document itself, which gRPC carries as JSON text (GetJwks).
      if (typeof only === 'string' && types.has('object') && only.startsWith('{')) return fromGrpcAnswer(JSON.parse(only) as unknown, schema);
      return fromGrpcAnswer(only, schema);
    }
  }
  const required = new Set(options.flatMap((s) => (Array.isArray(s.required) ? (s.required as string[]) : [])));
  const additional = options.map((s) => s.additionalProperties).find((s): s is JsonSchema => typeof s === 'object' && s !== null);
  // An object REST leaves open (a JWK): its members as they are.
  if (Object.keys(properties).length === 0 && !additional && !options.some((s) => s.additionalProperties === false)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of members) {
    if (v === undefined || v === null) continue;
    const field = properties[k];
    if (field) {
      const shaped = fromGrpcAnswer(v, field);
      // proto3 has no "absent" for a plain field: its zero value stands for what REST leaves out.
      if (!required.has(k) && (shaped === '' || shaped === undefined)) continue;
      out[k] = shaped;
    } else if (additional) out[k] = fromGrpcAnswer(v, additional);
    else if (isPlainObject(v)) Object.assign(out, fromGrpcAnswer(v, schema)); // a gRPC oneof member that REST has at the top
  }
  for (const k of Object.keys(properties)) {
    const bytes = out[k.slice(0, -3)];
    if (k.endsWith('Hex') && out[k] === undefined && Buffer.isBuffer(bytes)) out[k] = bytes.toString('hex').toUpperCase(); // REST's macHex
  }
  return out;
}
