/**
 * The OpenAPI 3.1 document, built from the routes as fastify registers them (onRoute hook): the paths,
 * request and response schemas are the objects fastify validates and serialises with, and each route's
 * error responses list exactly the codes it can return. Nothing here is written by hand twice.
 */
import type { HTTPMethods, RouteOptions } from 'fastify';
import { errorCodes, httpStatusOf, type ErrorCode } from '../../errors.js';
import { operationTags } from '../../api/index.js';
import { namedSchemas } from '../../api/schemas.js';

/** The operations' groups, and the transport's own routes. */
const documentTags: Record<string, string> = { ...operationTags, service: 'Health probes and this document' };

/** What a route adds to its schemas for the document. */
export interface RouteDoc {
  readonly operationId: string;
  readonly tags: readonly string[];
  readonly summary: string;
  readonly description: string;
  /** Error codes specific to this route; those every route can return are added by the document. */
  readonly errors: readonly ErrorCode[];
  /** Who may call (the operation declaration's `access`): 'open' routes need no credential; default: the access policy decides. */
  readonly access?: 'open' | 'authenticated';
  /** Success responses without a body, e.g. { 204: 'Destroyed' }. */
  readonly emptyResponses?: Readonly<Record<number, string>>;
  /** The request body as documented, when the route's own schema checks less (a batch's items are checked one by one). */
  readonly body?: Json;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    doc?: RouteDoc;
  }
}

type Json = Record<string, unknown>;

interface CollectedRoute {
  readonly method: string;
  readonly url: string;
  readonly schema: { params?: Json; body?: Json; response?: Record<string, Json> };
  readonly doc: RouteDoc;
}

const refs = new Map<unknown, string>(Object.entries(namedSchemas).map(([name, schema]) => [schema, `#/components/schemas/${name}`]));

/** A copy of a schema in which the shared objects are $refs to components. */
function publish(value: unknown, top = false): unknown {
  const ref = top ? undefined : refs.get(value);
  if (ref) return { $ref: ref };
  if (Array.isArray(value)) return value.map((v) => publish(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, publish(v)]));
  }
  return value;
}

function errorResponse(codes: readonly ErrorCode[]): Json {
  return {
    description: codes.join(', '),
    content: {
      'application/json': {
        schema: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { type: 'string', enum: [...codes] }, message: { type: 'string' } },
            },
          },
        },
      },
    },
  };
}

/** The codes a route can return: its own, plus those that come from the transport itself. */
function routeErrors(route: CollectedRoute): ErrorCode[] {
  const codes = new Set<ErrorCode>(route.doc.errors);
  if (route.schema.params || route.schema.body) codes.add('INVALID_ARGUMENT');
  if (route.schema.body) {
    codes.add('PAYLOAD_TOO_LARGE');
    codes.add('UNSUPPORTED_MEDIA_TYPE');
  }
  if (route.doc.access !== 'open') codes.add('UNAUTHENTICATED');
  if (route.doc.access === undefined) codes.add('PERMISSION_DENIED');
  codes.add('INTERNAL');
  return errorCodes.filter((c) => codes.has(c));
}

function operation(route: CollectedRoute): Json {
  const responses: Record<string, Json> = {};
  for (const [status, schema] of Object.entries(route.schema.response ?? {})) {
    responses[status] = { description: status.startsWith('2') ? 'Success' : 'See schema', content: { 'application/json': { schema: publish(schema) } } };
  }
  for (const [status, description] of Object.entries(route.doc.emptyResponses ?? {})) responses[status] = { description };
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrors(route)) byStatus.set(httpStatusOf(code), [...(byStatus.get(httpStatusOf(code)) ?? []), code]);
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) responses[String(status)] ??= errorResponse(codes);

  const params = route.schema.params?.properties as Record<string, Json> | undefined;
  return {
    operationId: route.doc.operationId,
    tags: [...route.doc.tags],
    summary: route.doc.summary,
    description: route.doc.description,
    ...(params
      ? { parameters: Object.entries(params).map(([name, schema]) => ({ name, in: 'path', required: true, schema: publish(schema) })) }
      : {}),
    // Open routes override the document's security requirement (a client certificate or a bearer token).
    ...(route.doc.access === 'open' ? { security: [] } : {}),
    ...(route.schema.body
      ? { requestBody: { required: true, content: { 'application/json': { schema: publish(route.doc.body ?? route.schema.body) } } } }
      : {}),
    responses,
  };
}

export class OpenApiCollector {
  private readonly routes: CollectedRoute[] = [];
  private document: Json | undefined;

  /** The onRoute hook: records every documented route. */
  readonly onRoute = (options: RouteOptions): void => {
    const doc = options.config?.doc;
    if (!doc) return;
    const methods: HTTPMethods[] = Array.isArray(options.method) ? options.method : [options.method];
    for (const method of methods) {
      this.routes.push({ method: method.toLowerCase(), url: options.url, schema: (options.schema ?? {}) as CollectedRoute['schema'], doc });
    }
  };

  /** Built on first use, after every route is registered. */
  build(info: { title: string; version: string; description: string; license: { name: string; url: string } }): Json {
    if (this.document) return this.document;
    const paths: Record<string, Record<string, Json>> = {};
    for (const route of this.routes) {
      const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      (paths[path] ??= {})[route.method] = operation(route);
    }
    this.document = {
      openapi: '3.1.0',
      info,
      // Relative: the document describes the server that serves it.
      servers: [{ url: '/', description: 'This hsm-bridge instance' }],
      tags: Object.entries(documentTags).map(([name, description]) => ({ name, description })),
      paths,
      // Either credential identifies the caller; access.policyFile then decides what it may do.
      security: [{ mutualTLS: [] }, { bearerAuth: [] }],
      components: {
        schemas: Object.fromEntries(Object.entries(namedSchemas).map(([name, schema]) => [name, publish(schema, true)])),
        securitySchemes: {
          mutualTLS: { type: 'mutualTLS', description: 'A client certificate issued by a CA in the listener\'s caFile; the caller is its subject CN or a SAN (DNS name, or URI such as a SPIFFE id).' },
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An OAuth 2.0 access token (JWT) from the configured identity provider, checked against access.jwt: JWK Set, issuer, audience, algorithms and expiry.' },
        },
      },
    };
    return this.document;
  }
}
