/** Hash functions used by the algorithms, with their output length and, for PKCS#1 v1.5, the DigestInfo DER prefix (RFC 8017 §9.2 note 1). */
export const hashes = {
  sha256: { length: 32, digestInfoPrefix: Buffer.from('3031300d060960864801650304020105000420', 'hex') },
  sha384: { length: 48, digestInfoPrefix: Buffer.from('3041300d060960864801650304020205000430', 'hex') },
  sha512: { length: 64, digestInfoPrefix: Buffer.from('3051300d060960864801650304020305000440', 'hex') },
} as const;

export type HashName = keyof typeof hashes;
