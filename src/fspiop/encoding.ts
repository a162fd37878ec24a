/** base64url helpers. Node decodes base64url leniently, so strings from the wire are checked first. */
const BASE64URL = /^[A-Za-z0-9_-]*$/;

export function isBase64Url(value: unknown): value is string {
  return typeof value === 'string' && BASE64URL.test(value) && value.length % 4 !== 1;
}

export function toBase64Url(data: Buffer | string): string {
  return (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('base64url');
}

export function fromBase64Url(value: string): Buffer {
  return Buffer.from(value, 'base64url');
}
