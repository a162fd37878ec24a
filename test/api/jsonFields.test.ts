import { describe, expect, it } from 'vitest';
import { jsonFieldPaths, valueAt } from '../../src/api/jsonFields.js';
import { encryptJweBody, fspiopSignBody, pinToJweBody, signBody, signJwsBody, verifyJwsBody } from '../../src/api/schemas.js';

describe('jsonFieldPaths', () => {
  it('finds the free-form JSON fields of a request schema, inside closed objects too', () => {
    expect(jsonFieldPaths(signJwsBody)).toEqual(['protectedHeader', 'unprotectedHeader']);
    expect(jsonFieldPaths(verifyJwsBody)).toEqual(['jws']);
    expect(jsonFieldPaths(encryptJweBody)).toEqual(['recipient.jwk', 'protectedHeader']);
    expect(jsonFieldPaths(fspiopSignBody)).toEqual(['body']);
    // Closed objects and maps of strings are not free-form JSON.
    expect(jsonFieldPaths(pinToJweBody)).toEqual([]);
    expect(jsonFieldPaths(signBody)).toEqual([]);
    expect(jsonFieldPaths(undefined)).toEqual([]);
  });

  it('valueAt reads a dot path, and stops at anything that is not an object', () => {
    expect(valueAt({ recipient: { jwk: { kty: 'EC' } } }, 'recipient.jwk')).toEqual({ kty: 'EC' });
    expect(valueAt({ recipient: 'x' }, 'recipient.jwk')).toBeUndefined();
    expect(valueAt(undefined, 'a')).toBeUndefined();
  });
});
