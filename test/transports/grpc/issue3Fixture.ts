/**
 * The gRPC server with all four hsmbridge.v1 services (KeyService, JoseService, FspiopService, PaymentService) on the
 * real services and a real backend (the REST fixture's targets: software, and SoftHSM through PKCS#11),
 * a real grpc-js client, and the log lines the server writes.
 */
import { Writable } from 'node:stream';
import type { ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { FspiopService, ParticipantRegistry } from '../../../src/fspiop/index.js';
import { JoseService } from '../../../src/jose/joseService.js';
import { KeyService } from '../../../src/operations/keyService.js';
import { createPaymentServices } from '../../../src/payment/index.js';
import { startGrpcServer, type RunningGrpcServer } from '../../../src/transports/grpc/server.js';
import type { RestTarget } from '../rest/restFixture.js';
import type { PipelineStages } from '../../../src/api/stages.js';
import { connect, type TestClients } from './grpcClient.js';

export interface GrpcFixture {
  readonly client: TestClients;
  readonly service: KeyService;
  readonly participants: ParticipantRegistry;
  /** payment.otpIncomingKeys as the service sees it: push the names of the keys a test feeds to the OTP flow. */
  readonly otpIncomingKeys: string[];
  readonly server: RunningGrpcServer;
  /** Every log line, raw, to search for what must never be logged. */
  logText(): string;
  logs(): Array<Record<string, unknown>>;
  /** grpc.health.v1.Health/Check for one service name. */
  health(service: string): Promise<{ status: string }>;
  close(): Promise<void>;
}

export async function startGrpc(target: RestTarget, maxMessageBytes = 64 * 1024, stages?: PipelineStages): Promise<GrpcFixture> {
  const { backend, cleanup } = await target.open();
  let raw = '';
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        raw += chunk.toString();
        done();
      },
    }),
  );
  const service = new KeyService(backend, { limits: { maxDataBytes: 16 * 1024, maxRandomBytes: 256 }, metadataCacheTtlMs: 1000 });
  const participants = await ParticipantRegistry.open({ logger });
  const fspiop = new FspiopService({ keyService: service, registry: participants });
  const jose = new JoseService(service);
  const otpIncomingKeys: string[] = [];
  const server = await startGrpcServer({
    service,
    jose,
    fspiop: { service: fspiop, participants },
    payment: createPaymentServices(service, jose, { participants, otpIncomingKeys, logger }),
    logger,
    host: '127.0.0.1',
    port: 0,
    maxMessageBytes,
    ...(stages ? { stages } : {}),
  });
  const client = connect(server.port);
  return {
    client,
    service,
    participants,
    otpIncomingKeys,
    server,
    logText: () => raw,
    logs: () => raw.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
    health: (name) =>
      new Promise((resolve, reject) =>
        client.health.Check({ service: name }, (e: ServiceError | null, r: { status: string }) => (e ? reject(e) : resolve(r))),
      ),
    async close() {
      client.close();
      await server.close();
      await participants.close();
      await backend.close();
      await cleanup();
    },
  };
}
