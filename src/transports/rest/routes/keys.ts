/** Key lifecycle routes: create, list, get, rotate, enable, disable, destroy. Payment keys show each version's KCV. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { KeyMetadata } from '../../../keys/types.js';
import type { KeyService } from '../../../operations/keyService.js';
import { keyView } from '../../keyView.js';
import { createKeyBody, keyListSchema, keyNameParams, keySchema } from '../schemas.js';

type Named = FastifyRequest<{ Params: { name: string } }>;
type CreateKey = FastifyRequest<{ Body: { name: string; type: string; purpose?: string; exportable?: boolean; keyUsage?: string } }>;

export function keyRoutes(app: FastifyInstance, service: KeyService): void {
  const byName = { params: keyNameParams, response: { 200: keySchema } };
  const view = (meta: KeyMetadata) => keyView(service, meta);

  app.post('/v1/keys', {
    schema: { body: createKeyBody, response: { 201: keySchema } },
    config: { doc: { operationId: 'createKey', summary: 'Create a key (version 1, enabled)', errors: ['UNSUPPORTED_BY_BACKEND', 'INCOMPATIBLE_KEY', 'KEY_ALREADY_EXISTS', 'BACKEND_UNAVAILABLE'] } },
    handler: async (request: CreateKey, reply) => {
      const meta = await service.createKey(request.body);
      return reply.code(201).send(await view(meta));
    },
  });

  app.get('/v1/keys', {
    schema: { response: { 200: keyListSchema } },
    config: { doc: { operationId: 'listKeys', summary: 'List every key', errors: ['BACKEND_UNAVAILABLE'] } },
    handler: async () => ({ keys: await Promise.all((await service.listKeys()).map(view)) }),
  });

  app.get('/v1/keys/:name', {
    schema: byName,
    config: { doc: { operationId: 'getKey', summary: 'Describe a key, with the public key of each version', errors: ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'] } },
    handler: async (request: Named) => view(await service.getKey(request.params.name)),
  });

  app.post('/v1/keys/:name/rotate', {
    schema: byName,
    config: { doc: { operationId: 'rotateKey', summary: 'Create the next version of a key; it becomes primary', errors: ['KEY_NOT_FOUND', 'KEY_DISABLED', 'BACKEND_UNAVAILABLE'] } },
    handler: async (request: Named) => view(await service.rotateKey(request.params.name)),
  });

  app.post('/v1/keys/:name/enable', {
    schema: byName,
    config: { doc: { operationId: 'enableKey', summary: 'Enable a key', errors: ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'] } },
    handler: async (request: Named) => view(await service.enableKey(request.params.name)),
  });

  app.post('/v1/keys/:name/disable', {
    schema: byName,
    config: { doc: { operationId: 'disableKey', summary: 'Disable a key: it can no longer be used until enabled', errors: ['KEY_NOT_FOUND', 'BACKEND_UNAVAILABLE'] } },
    handler: async (request: Named) => view(await service.disableKey(request.params.name)),
  });

  app.delete('/v1/keys/:name', {
    schema: { params: keyNameParams },
    config: {
      doc: {
        operationId: 'destroyKey',
        summary: 'Destroy every version of a disabled key (irreversible)',
        errors: ['KEY_NOT_FOUND', 'KEY_NOT_DISABLED', 'BACKEND_UNAVAILABLE'],
        emptyResponses: { 204: 'Destroyed' },
      },
    },
    handler: async (request: Named, reply) => {
      await service.destroyKey(request.params.name);
      return reply.code(204).send();
    },
  });
}
