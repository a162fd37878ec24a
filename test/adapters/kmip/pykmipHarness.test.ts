/**
 * The PyKMIP test harness itself: servers run side by side in one process with their own PKI, port and
 * database, and stop() really ends the server's whole process group.
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmipClient } from '../../../adapters/kmip/client.js';
import { HsmBridgeError } from '../../../src/errors.js';
import { startPyKmip, type PyKmipServer } from '../../helpers/pykmip.js';

const logger = pino({ level: 'silent' });

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

/** The process group of a pid, from /proc (Linux). */
const pgid = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
};

describe('startPyKmip', () => {
  let a: PyKmipServer;
  let b: PyKmipServer;

  beforeAll(async () => {
    [a, b] = await Promise.all([startPyKmip(), startPyKmip()]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('runs servers side by side, each with its own port, directory, database and CA', async () => {
    expect(a.port).not.toBe(b.port);
    expect(a.dir).not.toBe(b.dir);
    expect(a.databasePath).not.toBe(b.databasePath);
    expect(a.ca.equals(b.ca)).toBe(false);
    for (const s of [a, b]) {
      expect(s.running).toBe(true);
      expect(pgid(s.pid!)).toBe(s.pid); // its own process group, so that kill() reaches its children
      const client = await KmipClient.open(s.clientOptions(), logger);
      await client.close();
    }
    // A's client certificate means nothing to B.
    const crossed = await KmipClient.open(b.clientOptions({ cert: a.clientCert, key: a.clientKey }), logger).catch((e: unknown) => e);
    expect(crossed).toBeInstanceOf(HsmBridgeError);
    expect((crossed as HsmBridgeError).code).toBe('BACKEND_UNAVAILABLE');
  });

  it('gives PyKMIP’s own client the same identity as ours', async () => {
    const uid = (await a.pyClient(`print(json.dumps(client.create(enums.CryptographicAlgorithm.AES, 128)))`)) as string;
    expect(await a.pyClient(`print(json.dumps(len(client.get(args).value)))`, uid)).toBe(16);
  });

  it('kill() ends the process group and restart() brings the same database back on the same port', async () => {
    const uid = (await b.pyClient(`print(json.dumps(client.create(enums.CryptographicAlgorithm.AES, 256, name='harness-restart')))`)) as string;
    const { port } = b;
    const pid = b.pid!;
    await b.kill();
    expect(b.running).toBe(false);
    expect(existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')).toBe(false);
    expect(await accepts(port)).toBe(false);
    await b.restart();
    expect(b.port).toBe(port);
    expect(b.pid).not.toBe(pid);
    expect(await b.pyClient(`print(json.dumps(client.get(args).value.hex()))`, uid)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('stop() ends the server and removes its directory', async () => {
    const c = await startPyKmip();
    const { port, dir } = c;
    const pid = c.pid!;
    await c.stop();
    expect(c.running).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(await accepts(port)).toBe(false);
    expect(existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ')).toBe(false);
  });
});
