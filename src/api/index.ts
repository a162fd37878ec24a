/** The API: every operation declared once, and the request pipeline they all run through. */
export { grpcServices, operationId, operationTags, type FspiopServices, type GrpcServiceName, type Operation, type Services, type ServicesFor } from './declaration.js';
export { operations } from './operations/index.js';
export { Pipeline, RequestContext, logLevelOf } from './pipeline.js';
export { ANONYMOUS, openStages, type Caller, type Credentials, type Outcome, type PipelineStages, type Transport } from './stages.js';

import type { Operation, Services, ServicesFor } from './declaration.js';
import { operations } from './operations/index.js';

/** The operations the given services can serve (those whose `needs` is there), with the services typed for them. */
export function servedOperations(services: Services): { operations: readonly Operation[]; services: ServicesFor } {
  return { operations: operations.filter((op) => op.needs === undefined || services[op.needs] !== undefined), services: services as ServicesFor };
}
