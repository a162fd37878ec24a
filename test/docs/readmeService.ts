/**
 * A service on the software backend for running a README example as written: REST on a free port (the
 * example's localhost:8080 is replaced by its address), no gRPC or ops listener, a temporary folder of
 * the test's own. Call from beforeAll, close from afterAll.
 */
import { writeFileSync } from 'node:fs';
import { startApp, type RunningApp } from '../../src/app.js';
import { loadServiceConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { createSoftwareBackendConfig } from '../helpers/software.js';
import { tempDir } from '../identity/accessSupport.js';

export interface ReadmeService {
  readonly app: RunningApp;
  readonly dir: ReturnType<typeof tempDir>;
  /** The example with localhost:8080 replaced by this service's address. */
  pointedHere(script: string): string;
  close(): Promise<void>;
}

export async function startReadmeService(): Promise<ReadmeService> {
  const dir = tempDir();
  const harness = await createSoftwareBackendConfig();
  writeFileSync(dir.at('config.json'), JSON.stringify({ rest: { port: 0 }, grpc: { enabled: false }, ops: { enabled: false }, backend: { type: 'software', software: harness.config } }));
  const app = await startApp(loadServiceConfig({ file: dir.at('config.json'), env: {} }), createLogger('silent'));
  return {
    app,
    dir,
    pointedHere: (script) => script.replaceAll('localhost:8080', new URL(app.restUrl!).host),
    async close() {
      await app.close();
      await harness.cleanup();
      dir.remove();
    },
  };
}
