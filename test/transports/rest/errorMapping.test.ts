/**
 * How thrown errors become our envelope (pure logic): our errors pass through, framework errors get our
 * codes, anything else is INTERNAL with a generic message that never repeats the original text.
 */
import { describe, expect, it } from 'vitest';
import { HsmBridgeError } from '../../../src/errors.js';
import { toRestError } from '../../../src/transports/rest/errors.js';

const fastifyError = (code: string, statusCode: number, message = 'framework detail') => Object.assign(new Error(message), { code, statusCode });

describe('toRestError', () => {
  it('passes our own errors through', () => {
    const e = new HsmBridgeError('KEY_DISABLED', 'key k is disabled');
    expect(toRestError(e)).toBe(e);
  });

  it('replaces the message of an INTERNAL error and of anything unknown', () => {
    for (const thrown of [new Error('PIN 1234 refused by slot 7'), new HsmBridgeError('INTERNAL', 'CKR_GENERAL_ERROR in slot 7'), 'a string', undefined]) {
      const mapped = toRestError(thrown);
      expect([mapped.code, mapped.httpStatus, mapped.message]).toEqual(['INTERNAL', 500, 'internal error']);
    }
  });

  it.each([
    ['FST_ERR_CTP_BODY_TOO_LARGE', 413, 'PAYLOAD_TOO_LARGE'],
    ['FST_ERR_CTP_INVALID_MEDIA_TYPE', 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['FST_ERR_CTP_EMPTY_JSON_BODY', 400, 'INVALID_ARGUMENT'],
    ['FST_ERR_CTP_INVALID_CONTENT_LENGTH', 400, 'INVALID_ARGUMENT'],
    ['FST_ERR_BAD_URL', 400, 'INVALID_ARGUMENT'],
    ['FST_ERR_SOMETHING_NEW', 400, 'INVALID_ARGUMENT'],
    ['FST_ERR_SOMETHING_NEW', 413, 'PAYLOAD_TOO_LARGE'],
    ['FST_ERR_SOMETHING_NEW', 500, 'INTERNAL'],
  ])('%s (%i) -> %s, without the framework text', (code, status, ours) => {
    const mapped = toRestError(fastifyError(code, status));
    expect(mapped.code).toBe(ours);
    expect(mapped.message).not.toContain('framework detail');
  });

  it('does not repeat a JSON syntax error, which can quote the body', () => {
    const mapped = toRestError(Object.assign(new SyntaxError('Unexpected token in "{"plaintext":"c2VjcmV0" x"'), { statusCode: 400 }));
    expect([mapped.code, mapped.message]).toEqual(['INVALID_ARGUMENT', 'request body is not valid JSON']);
  });

  it('names the field of a schema error', () => {
    const validation = (keyword: string, instancePath: string, params: Record<string, unknown>) =>
      toRestError(Object.assign(new Error('x'), { validation: [{ keyword, instancePath, params, message: 'must be something' }], validationContext: 'body' })).message;
    expect(validation('required', '', { missingProperty: 'plaintext' })).toBe('missing field plaintext');
    expect(validation('additionalProperties', '', { additionalProperty: 'hash' })).toBe('unknown field hash');
    expect(validation('format', '/aad', { format: 'byte' })).toBe('aad must be base64 (standard alphabet, padding optional)');
    expect(validation('type', '/keyVersion', { type: 'integer' })).toBe('keyVersion must be of type integer');
    expect(validation('minimum', '/keyVersion', { limit: 1 })).toBe('keyVersion must be something');
  });
});
