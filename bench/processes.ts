/** The processes a bench runs besides its own: the service on a SoftHSM token, and the raw pkcs11js baseline (rawPkcs11.ts). */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SoftHsmToken } from '../test/helpers/softhsm.js';
import { SECONDS } from './measure.js';
import type { RawResult, RawTask } from './rawPkcs11.js';

const RAW = fileURLToPath(new URL('./rawPkcs11.js', import.meta.url));

/** The service's environment for every listener on a port the system picks. */
export const anyPortsEnv: Readonly<Record<string, string>> = { HSMB_REST__PORT: '0', HSMB_GRPC__PORT: '0', HSMB_OPS__PORT: '0' };

/** The service's environment for the pkcs11 backend on `token`, every listener on a port the system picks. */
export function softHsmServiceEnv(token: SoftHsmToken): Record<string, string> {
  return {
    HSMB_BACKEND__TYPE: 'pkcs11',
    HSMB_BACKEND__PKCS11__LIBRARY: token.library,
    HSMB_BACKEND__PKCS11__TOKEN_LABEL: token.tokenLabel,
    HSMB_BACKEND__PKCS11__PIN_ENV: token.pinEnv,
    ...anyPortsEnv,
  };
}

/** Runs rawPkcs11.js with `task`, within a bound that grows with BENCH_SECONDS. */
export function runRaw(task: RawTask): Promise<RawResult> {
  const timeoutMs = 30_000 + task.keys.length * (SECONDS + 1) * 2000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RAW], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`raw pkcs11js process: ${signal === 'SIGKILL' ? `killed after ${timeoutMs} ms` : `exited with ${code ?? signal}`}`));
      else resolve(JSON.parse(out) as RawResult);
    });
    child.stdin.end(JSON.stringify(task));
  });
}
