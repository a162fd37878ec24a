/** Service routes: random bytes, capabilities, liveness, readiness and the OpenAPI document. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { BackendHealth } from '../../../backend/port.js';
import type { KeyService } from '../../../operations/keyService.js';
import { encodeBase64 } from '../base64.js';
import { capabilitiesSchema, liveSchema, randomBody, randomResult, readySchema } from '../schemas.js';

export function systemRoutes(app: FastifyInstance, service: KeyService, openapiDocument: () => object): void {
  app.post('/v1/random', {
    schema: { body: randomBody, response: { 200: randomResult } },
    config: { doc: { operationId: 'generateRandom', summary: "Random bytes from the backend's generator", errors: ['UNSUPPORTED_BY_BACKEND', 'BACKEND_UNAVAILABLE'] } },
    handler: async (request: FastifyRequest<{ Body: { length: number } }>) => {
      const random = await service.randomBytes(request.body.length);
      try {
        return { random: encodeBase64(random) };
      } finally {
        // Callers use random bytes as keys and nonces; this copy is not needed once encoded.
        random.fill(0);
      }
    },
  });

  app.get('/v1/capabilities', {
    schema: { response: { 200: capabilitiesSchema } },
    config: { doc: { operationId: 'getCapabilities', summary: 'Key types and algorithms the configured backend supports', errors: [] } },
    handler: async () => service.capabilities(),
  });

  app.get('/health/live', {
    schema: { response: { 200: liveSchema } },
    config: { doc: { operationId: 'live', summary: 'Liveness: the process serves requests', errors: [] } },
    handler: async () => ({ status: 'ok' }),
  });

  app.get('/health/ready', {
    schema: { response: { 200: readySchema, 503: readySchema } },
    config: { doc: { operationId: 'ready', summary: 'Readiness: the backend can serve operations', errors: [] } },
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
    config: { doc: { operationId: 'openapi', summary: 'This OpenAPI document', errors: [] } },
    handler: async () => openapiDocument(),
  });
}
