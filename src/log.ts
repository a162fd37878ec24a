import { pino, type Logger } from 'pino';

/**
 * The service logger. Request bodies are never logged; the redact list is a second line of defence for
 * fields that could carry secrets if someone logs an object carelessly. By default it writes to stdout
 * in blocks of about 15 KB, and at least every 100 ms: a write(2) per line cost a fifth of the service's
 * CPU under load (bench/keys.bench.ts). pino flushes what is pending when the process exits; a process
 * killed outright (SIGKILL, a crash in native code) loses at most the last 100 ms. Lines are dropped, not
 * held, once 16 MB wait for a stdout that does not drain.
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
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 15 * 1024, periodicFlush: 100, maxLength: 16 * 1024 * 1024 }),
  );
}

export type { Logger };
