import { pino, type Logger } from 'pino';

/**
 * The service logger. Request bodies are never logged; the redact list is a second line of defence for
 * fields that could carry secrets if someone logs an object carelessly.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'hsm-bridge' },
      redact: {
        paths: ['pin', '*.pin', 'body', '*.body', 'plaintext', '*.plaintext', 'key', '*.key', 'req.headers.authorization'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

export type { Logger };
