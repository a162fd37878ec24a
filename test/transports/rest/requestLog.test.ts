/**
 * Request logging: one line per request with method, route pattern, status, duration and key name, and
 * nothing from the body — no plaintext, message, ciphertext, signature or random bytes, in any form.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, freshName, keyServiceTargets, startRest, type RestFixture } from './restFixture.js';

describe.each(keyServiceTargets)('REST request log on the $label backend', (target) => {
  let rest: RestFixture;

  beforeAll(async () => {
    rest = await startRest(target);
  });
  afterAll(async () => {
    await rest?.close();
  });

  it('logs one line per request with the fixed fields, never a body', async () => {
    const caps = rest.service.capabilities();
    // EC where the backend has it, else RSA (KMIP); a backend without random refuses it (400), and that
    // line must carry no body either.
    const signerType = caps.keyTypes.includes('EC_P256') ? 'EC_P256' : 'RSA_2048';
    const aes = freshName('log-aes');
    const signer = freshName('log-signer');
    const secret = Buffer.from('PAN 5555555551234567 PIN 1234 secret-marker');
    const message = Buffer.from('message-marker to be signed');
    const before = rest.logs.length;

    await rest.call('POST', '/v1/keys', { name: aes, type: 'AES_256' });
    await rest.call('POST', '/v1/keys', { name: signer, type: signerType });
    const e = await rest.call('POST', `/v1/keys/${aes}/encrypt`, { plaintext: b64(secret), aad: b64('aad-marker') });
    const d = await rest.call('POST', `/v1/keys/${aes}/decrypt`, { ciphertext: e.body.ciphertext, aad: b64('aad-marker') });
    expect(Buffer.from(d.body.plaintext, 'base64')).toEqual(secret);
    const s = await rest.call('POST', `/v1/keys/${signer}/sign`, { message: b64(message) });
    const random = await rest.call('POST', '/v1/random', { length: 48 });
    // Refused requests must not echo their input into the log either.
    await rest.call('POST', `/v1/keys/${aes}/encrypt`, { plaintext: `${b64(secret)}!` });
    await rest.send('POST', `/v1/keys/${aes}/encrypt`, `{"plaintext":"${b64(secret)}"`, { 'content-type': 'application/json' });
    await rest.call('GET', '/no/such/route');

    const lines = rest.logs.slice(before).filter((l) => l.msg === 'request');
    expect(lines).toHaveLength(9);
    expect(lines.map((l) => [l.method, l.route, l.status, l.keyName])).toEqual([
      ['POST', '/v1/keys', 201, aes],
      ['POST', '/v1/keys', 201, signer],
      ['POST', '/v1/keys/:name/encrypt', 200, aes],
      ['POST', '/v1/keys/:name/decrypt', 200, aes],
      ['POST', '/v1/keys/:name/sign', 200, signer],
      ['POST', '/v1/random', caps.random ? 200 : 400, undefined],
      ['POST', '/v1/keys/:name/encrypt', 400, aes],
      ['POST', '/v1/keys/:name/encrypt', 400, aes],
      ['GET', 'unmatched', 404, undefined],
    ]);
    for (const line of lines) {
      expect(line.durationMs).toBeTypeOf('number');
      expect(Object.keys(line).sort()).toEqual(['durationMs', 'hostname', 'keyName', 'level', 'method', 'msg', 'pid', 'reqId', 'route', 'status', 'time'].filter((k) => k !== 'keyName' || line.keyName !== undefined));
    }
    const text = rest.logText();
    for (const forbidden of [
      secret.toString(),
      b64(secret),
      'secret-marker',
      'aad-marker',
      b64('aad-marker'),
      message.toString(),
      b64(message),
      e.body.ciphertext,
      d.body.plaintext,
      s.body.signature,
      ...(caps.random ? [random.body.random] : []),
    ]) {
      expect(text).not.toContain(forbidden);
    }
  });
});
