/** grpc.health.v1 messages as @grpc/proto-loader decodes them (see protos.ts). */
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
export interface HealthCheckRequest { service: string }
export interface HealthCheckResponse { status: ServingStatus }
