/**
 * Loads the .proto files into grpc-js service definitions, with two changes to the generated codecs:
 * a request that does not decode becomes a marker the handlers answer with INVALID_ARGUMENT (grpc-js
 * would say INTERNAL, blaming the server for a client's bytes), and fields that hold secrets are wiped
 * as soon as the response is encoded.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { load, type Options, type PackageDefinition } from '@grpc/proto-loader';
import { grpcServices, type GrpcServiceName } from '../../api/index.js';
import { zeroFields } from '../../api/secretFields.js';

const KEY_SERVICE_PROTO = 'hsmbridge/v1/key_service.proto';
const JOSE_SERVICE_PROTO = 'hsmbridge/v1/jose_service.proto';
const FSPIOP_SERVICE_PROTO = 'hsmbridge/v1/fspiop_service.proto';
const PAYMENT_SERVICE_PROTO = 'hsmbridge/v1/payment_service.proto';
const HEALTH_PROTO = 'grpc/health/v1/health.proto';
export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

const loaderOptions: Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

/**
 * The `proto/` folder: the first one found walking up from this module, so that it is found from
 * src/transports/grpc (tests, tsx) and from dist/src/transports/grpc (the build) alike.
 */
export function findProtoRoot(start: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, KEY_SERVICE_PROTO))) return candidate;
    if (dirname(dir) === dir) throw new Error(`cannot find proto/${KEY_SERVICE_PROTO} in ${start} or any folder above it`);
  }
}

const MALFORMED = Symbol('malformed request');

/** What a request that failed to decode turns into. */
export interface MalformedRequest {
  readonly [MALFORMED]: true;
}

export function isMalformed(request: unknown): request is MalformedRequest {
  return typeof request === 'object' && request !== null && MALFORMED in request;
}

/** Per method name, the response fields (Buffers, by path: ../../api/secretFields.ts) to zero once the response has been encoded. */
export type SecretResponseFields = Readonly<Record<string, readonly string[]>>;

type AnyMethod = MethodDefinition<unknown, unknown>;

function hardenMethod(method: AnyMethod, secretFields: readonly string[]): AnyMethod {
  return {
    ...method,
    requestDeserialize: (bytes: Buffer) => {
      try {
        return method.requestDeserialize(bytes);
      } catch {
        return { [MALFORMED]: true } satisfies MalformedRequest;
      }
    },
    responseSerialize: (value: unknown) => {
      const encoded = method.responseSerialize(value);
      zeroFields(value, secretFields);
      return encoded;
    },
  };
}

function harden(definition: ServiceDefinition, secrets: SecretResponseFields): ServiceDefinition {
  const methods = Object.entries(definition as Record<string, AnyMethod>).map(
    ([name, method]) => [name, hardenMethod(method, secrets[name] ?? [])] as const,
  );
  return Object.fromEntries(methods) as ServiceDefinition;
}

/** The hsmbridge.v1 services by short name (see src/api/declaration.ts), and grpc.health.v1.Health. */
export type LoadedServices = Readonly<Record<GrpcServiceName | 'Health', ServiceDefinition<UntypedServiceImplementation>>>;

/** The secret response fields of each hsmbridge.v1 service (method names repeat across services: Sign). */
export type ServiceSecrets = Partial<Record<GrpcServiceName, SecretResponseFields>>;

/** The contract's .proto files, parsed once: the services below are built from it, and reflection describes it. */
export function loadProtos(protoRoot: string = findProtoRoot()): Promise<PackageDefinition> {
  return load([KEY_SERVICE_PROTO, JOSE_SERVICE_PROTO, FSPIOP_SERVICE_PROTO, PAYMENT_SERVICE_PROTO, HEALTH_PROTO], { ...loaderOptions, includeDirs: [protoRoot] });
}

export function serviceDefinitions(definitions: PackageDefinition, secrets: ServiceSecrets): LoadedServices {
  const service = (name: string, secretFields: SecretResponseFields = {}): ServiceDefinition => {
    const definition = definitions[name];
    // Message and enum types carry a `format`; services do not.
    if (!definition || 'format' in definition) throw new Error(`${name} is not a service in the .proto files`);
    return harden(definition as ServiceDefinition, secretFields);
  };
  const hsmbridge = Object.entries(grpcServices).map(([short, full]) => [short, service(full, secrets[short as GrpcServiceName])] as const);
  return { ...Object.fromEntries(hsmbridge), Health: service(HEALTH_SERVICE_NAME) } as LoadedServices;
}
