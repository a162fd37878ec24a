/**
 * The REST routes: one per declared operation (src/api), with the schemas fastify validates requests and
 * serialises answers with, and a handler that runs the request pipeline; plus the routes of the transport
 * itself (health probes and this OpenAPI document), which name no key and are not operations.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import { operationId, RequestContext, type Credentials, type Operation, type Pipeline } from '../../api/index.js';
import { liveSchema, readySchema } from '../../api/schemas.js';
import type { BackendHealth } from '../../backend/port.js';
import type { KeyService } from '../../operations/keyService.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The pipeline's view of the request, once its operation's handler has started. */
    pipeline: RequestContext | null;
  }
}

/** What the connection and headers say of the caller; the identity stage judges them. */
function credentialsOf(request: FastifyRequest): Credentials {
  const socket = request.raw.socket as Partial<TLSSocket>;
  const certificate = socket.authorized && typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
  const authorization = request.headers.authorization;
  const bearer = typeof authorization === 'string' && /^Bearer /i.test(authorization) ? authorization.slice(7).trim() : undefined;
  return {
    transport: 'rest',
    ...(request.ip ? { remoteAddress: request.ip } : {}),
    ...(certificate && Object.keys(certificate).length > 0 ? { peerCertificate: certificate } : {}),
    ...(bearer ? { bearerToken: bearer } : {}),
  };
}

export function operationRoute(app: FastifyInstance, op: Operation, pipeline: Pipeline): void {
  const { rest } = op;
  const status = rest.status ?? 200;
  app.route({
    method: rest.method,
    url: rest.path,
    schema: {
      ...(rest.params ? { params: rest.params } : {}),
      ...(rest.body ? { body: rest.body } : {}),
      ...(rest.response ? { response: { [status]: rest.response } } : {}),
    },
    config: {
      doc: {
        operationId: operationId(op),
        tags: [op.tag],
        summary: op.summary,
        description: op.description,
        // A state change is refused while the audit trail cannot be written.
        errors: op.changesState ? [...op.errors, 'AUDIT_UNAVAILABLE'] : op.errors,
        ...(op.access === undefined ? {} : { access: op.access }),
        ...(status === 204 ? { emptyResponses: { 204: 'Done' } } : {}),
        ...(rest.documentedBody ? { body: rest.documentedBody } : {}),
      },
    },
    // The caller is established first, before the body is read or checked.
    onRequest: async (request: FastifyRequest) => {
      const context = new RequestContext(op, 'rest', request.id);
      request.pipeline = context;
      await pipeline.identify(context, credentialsOf(request));
    },
    handler: async (request: FastifyRequest, reply) => {
      const answer = await pipeline.run(op, request.pipeline!, { params: request.params, body: request.body }, rest.decode, rest.encode);
      reply.code(status);
      return status === 204 ? reply.send() : answer;
    },
  });
}

export function transportRoutes(app: FastifyInstance, service: KeyService, openapiDocument: () => object): void {
  app.get('/health/live', {
    schema: { response: { 200: liveSchema } },
    config: { doc: { operationId: 'live', tags: ['service'], summary: 'Liveness: the process serves requests', description: 'Always 200 while the process answers.', errors: [], access: 'open' } },
    handler: async () => ({ status: 'ok' }),
  });

  app.get('/health/ready', {
    schema: { response: { 200: readySchema, 503: readySchema } },
    config: { doc: { operationId: 'ready', tags: ['service'], summary: 'Readiness: the backend can serve operations', description: '503 while the HSM or key manager cannot be reached or is not logged in.', errors: [], access: 'open' } },
    handler: async (request, reply) => {
      let health: BackendHealth;
      try {
        health = await service.health();
      } catch (e) {
        request.log.warn({ err: e }, 'backend health check failed');
        health = { ready: false, detail: 'backend health check failed' };
      }
      if (health.ready) return { status: 'ready' };
      return reply.code(503).send({ status: 'unavailable', detail: health.detail ?? 'backend is not ready' });
    },
  });

  app.get('/openapi.json', {
    schema: { response: { 200: { type: 'object', additionalProperties: true, description: 'An OpenAPI 3.0 document.' } } },
    config: { doc: { operationId: 'openapi', tags: ['service'], summary: 'This OpenAPI document', description: 'Generated from the operation declarations and the schemas the server validates with.', errors: [], access: 'open' } },
    handler: async () => openapiDocument(),
  });
}
