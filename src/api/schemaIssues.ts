/**
 * ajv's findings on a request turned into one readable sentence that names the field and never quotes a
 * value (it may be a PIN block or a PAN): for fastify's request validation (src/transports/rest/errors.ts)
 * and for the items of a batch, which are checked one by one (./batch.ts).
 */
import { excerpt } from '../errors.js';
import { patternMeanings } from './schemas.js';

/** How requests are checked against their schemas, by fastify and for a batch's items alike: nothing coerced, added or removed; the first issue only. */
export const REQUEST_AJV_OPTIONS = { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } as const;

export interface SchemaIssue {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** A caller-chosen name, echoed back at a bounded length with control characters escaped. */
const shown = (value: unknown): string => excerpt(value);

const fieldName = (issue: SchemaIssue): string => issue.instancePath.replace(/^\//, '').replaceAll('/', '.');

/**
 * A field that may take one of several types (oneOf: a JWS as a string or an object) fails every branch
 * before the oneOf itself; naming only the first branch's type would mislead, so all of them are named.
 */
function describeAlternatives(issues: readonly SchemaIssue[]): string | undefined {
  const oneOf = issues.find((i) => i.keyword === 'oneOf');
  if (!oneOf) return undefined;
  const types = issues.filter((i) => i.keyword === 'type' && i.instancePath === oneOf.instancePath).map((i) => String(i.params.type));
  if (types.length === 0) return undefined;
  const field = fieldName(oneOf);
  return `${field === '' ? 'request body' : field} must be of type ${types.join(' or ')}`;
}

/** One readable sentence naming the field, from the first ajv issue (fastify runs ajv with allErrors off). */
export function describeSchemaIssue(context: string | undefined, issues: readonly SchemaIssue[]): string {
  const where = context === 'params' ? 'path parameter' : 'field';
  const issue = issues[0];
  if (!issue) return 'request is invalid';
  const alternatives = describeAlternatives(issues);
  if (alternatives) return alternatives;
  const field = fieldName(issue);
  switch (issue.keyword) {
    case 'required':
      return `missing ${where} ${shown(issue.params.missingProperty)}`;
    case 'additionalProperties':
      return `unknown ${where} ${shown(issue.params.additionalProperty)}`;
    case 'format':
      if (issue.params.format === 'byte') return `${field} must be base64 (standard alphabet, padding optional)`;
      break;
    case 'pattern': {
      // Never ajv's text, which quotes the expression; and never the value, which may be a PIN block or PAN.
      const meaning = patternMeanings[String(issue.params.pattern)];
      return `${field} must be ${meaning ?? 'in the documented format'}`;
    }
    case 'type':
      if (field === '') return 'request body must be a JSON object';
      return `${field} must be of type ${String(issue.params.type)}`;
  }
  return field === '' ? `request ${issue.message ?? 'is invalid'}` : `${field} ${issue.message ?? 'is invalid'}`;
}
