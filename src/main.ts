#!/usr/bin/env node
/**
 * Starts hsm-bridge: `node dist/src/main.js [--config path]` (or HSMB_CONFIG=path). Without a config file
 * it runs on the embedded software backend with defaults: REST 127.0.0.1:8080, gRPC 127.0.0.1:50051.
 */
import { parseArgs } from 'node:util';
import { startApp } from './app.js';
import { ConfigError, loadServiceConfig } from './config/load.js';
import { createLogger } from './log.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } }, strict: true });
  const file = values.config ?? process.env.HSMB_CONFIG;
  const config = loadServiceConfig({ file, env: process.env });
  const logger = createLogger(config.log.level);
  const app = await startApp(config, logger);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  // Startup errors (bad config, wrong PIN, missing token) are written plainly: they name the problem, never a secret.
  const message = e instanceof ConfigError || e instanceof Error ? e.message : String(e);
  process.stderr.write(`hsm-bridge: ${message}\n`);
  process.exit(1);
});
