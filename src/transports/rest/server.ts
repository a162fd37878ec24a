/**
 * The REST transport: a route per declared operation (routes.ts), fastify with strict JSON-Schema validation (unknown fields are refused, nothing is
 * coerced), one error envelope for every failure, and one log line per request that never holds a body.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Server as TlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { parseKeyName } from '../../keys/names.js';
import { Pipeline, servedOperations, type PipelineStages, type Services } from '../../api/index.js';
import { isStrictBase64 } from '../../api/base64.js';
import { REQUEST_AJV_OPTIONS } from '../../api/schemaIssues.js';
import type { KeyService } from '../../operations/keyService.js';
import { docsPageRoutes } from './docsPage.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { OpenApiCollector } from './openapi.js';
import { operationRoute, transportRoutes } from './routes.js';
import { httpsServerOptions, type TlsMaterial } from '../tls.js';
import { ReloadingTls, secureContextOptions } from '../tlsReload.js';
import { REQUEST_ID_HEADER, requestIdFrom, TRACEPARENT_HEADER } from '../../ops/requestId.js';

export interface RestServerOptions extends Omit<Services, 'keys'> {
  readonly service: KeyService;
  readonly logger: Logger;
  /** Largest request body; larger ones get 413 PAYLOAD_TOO_LARGE before they are parsed. */
  readonly maxRequestBytes: number;
  /** Serve HTTPS (and with requireClientCert, mutual TLS) instead of plain HTTP; see loadTlsMaterial. ReloadingTls: new files apply without a restart. */
  readonly tls?: TlsMaterial | ReloadingTls;
  /** Identity, policy, audit and metrics (src/api/stages.ts); default: open, recording nothing. */
  readonly stages?: PipelineStages;
}

export const API_INFO = {
  title: 'hsm-bridge',
  version: '1',
  description: 'Sign, verify, encrypt, decrypt and MAC, build JWS/JWE and FSPIOP signatures, and translate PIN blocks, with keys that never leave the HSM. The same operations are served over gRPC (package hsmbridge.v1).',
  license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
} as const;

/** The key a path names (/v1/keys/:name/...), for the log of a request refused before its operation ran. */
function pathKeyName(request: FastifyRequest): string | undefined {
  try {
    return parseKeyName((request.params as { name?: unknown } | undefined)?.name);
  } catch {
    return undefined;
  }
}

function logRequest(request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  request.log.info(
    {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 10) / 10,
      // The pipeline's well-formed names; the path's when the request was refused before it decoded.
      ...(request.pipeline?.keyNames.length ? request.pipeline.logFields() : { keyName: pathKeyName(request) }),
    },
    'request',
  );
  done();
}

/** Builds the server without listening; the caller calls listen({ host, port }). */
export async function buildRestServer(opts: RestServerOptions): Promise<FastifyInstance> {
  const reloading = opts.tls instanceof ReloadingTls ? opts.tls : undefined;
  const tls = reloading ? reloading.material : (opts.tls as TlsMaterial | undefined);
  const app = Fastify({
    ...(tls ? { https: httpsServerOptions(tls) } : {}),
    loggerInstance: opts.logger,
    // fastify's own request lines include headers and URLs; ours (logRequest) has a fixed set of fields.
    logController: new LogController({ disableRequestLogging: true }),
    // request.id (logged as reqId on every line of the request) is the caller's x-request-id or trace id.
    requestIdHeader: false,
    genReqId: (request) => requestIdFrom(request.headers[REQUEST_ID_HEADER], request.headers[TRACEPARENT_HEADER]),
    bodyLimit: opts.maxRequestBytes,
    exposeHeadRoutes: false,
    // Long enough that an over-long key name reaches the core and gets its INVALID_ARGUMENT, not a 404.
    routerOptions: { maxParamLength: 256 },
    // A malformed URL (bad %-escape) is reported here, before routing and the error handler.
    // Its answer passes no route hooks (onSend below): the request id is set here.
    frameworkErrors: (error, request, reply) => void errorHandler(error, request, reply.header(REQUEST_ID_HEADER, request.id)),
    ajv: {
      customOptions: { ...REQUEST_AJV_OPTIONS },
      // After ajv-formats, whose own 'byte' requires padding and accepts non-canonical text.
      onCreate: (ajv) => {
        ajv.addFormat('byte', { type: 'string', validate: isStrictBase64 });
      },
    },
  }) as unknown as FastifyInstance; // typed with pino's Logger; callers need only the plain surface

  // JSON only: fastify also parses text/plain by default.
  app.removeContentTypeParser('text/plain');
  // An empty JSON body counts as no body, so routes without one (rotate, enable...) accept what generic
  // clients send; routes that need a body still refuse it through their schema.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body.length === 0) done(null, undefined);
    else parseJson(request, body as string, done);
  });
  if (reloading) {
    const server = app.server as unknown as TlsServer;
    const stop = reloading.onChange((material) => server.setSecureContext(secureContextOptions(material)));
    app.addHook('onClose', async () => void stop());
  }
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  app.addHook('onResponse', logRequest);
  // Every answer, errors and 404s included, names its request id.
  app.addHook('onSend', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });

  const openapi = new OpenApiCollector();
  app.addHook('onRoute', openapi.onRoute);
  app.decorateRequest('pipeline', null);
  const served = servedOperations({ ...opts, keys: opts.service });
  const pipeline = new Pipeline(served.services, opts.stages);
  for (const op of served.operations) operationRoute(app, op, pipeline);
  transportRoutes(app, opts.service, () => openapi.build(API_INFO));
  docsPageRoutes(app);

  await app.ready();
  return app;
}
