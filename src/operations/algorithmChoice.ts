/**
 * Which algorithm an operation runs with: the requested one or the key's default, checked against the
 * key's type, purpose and X9.143 usage, and against what the backend offers.
 */
import { algorithmsFor, defaultAlgorithm, parseMacAlgorithm, type MacAlgorithm } from '../algorithms/registry.js';
import type { Capabilities } from '../backend/port.js';
import { HsmBridgeError } from '../errors.js';
import { macAlgorithmAllowed, type KeyMetadata, type KeyPurpose } from '../keys/types.js';

export class AlgorithmChoice {
  constructor(
    private readonly caps: Capabilities,
    private readonly backendKind: string,
  ) {}

  pick<A extends string>(meta: KeyMetadata, purpose: KeyPurpose, requested: unknown, parse: (v: unknown) => A): A {
    const algorithm = requested === undefined || requested === '' ? (defaultAlgorithm(meta.type, purpose) as A | undefined) : parse(requested);
    if (algorithm === undefined) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `${meta.type} keys have no ${purpose} algorithm yet`);
    }
    this.checkFits(meta, purpose, algorithm);
    return algorithm;
  }

  /**
   * A MAC algorithm the key's type and X9.143 usage allow (macAlgorithmAllowed): the requested one, or by
   * default the first the usage allows (an M3 key's default is the retail MAC).
   */
  pickMac(meta: KeyMetadata, requested: unknown): MacAlgorithm {
    const allowed = (algorithmsFor(meta.type, 'mac') as MacAlgorithm[]).filter((a) => macAlgorithmAllowed(meta.keyUsage, a));
    const algorithm = requested === undefined || requested === '' ? allowed[0] : parseMacAlgorithm(requested);
    if (algorithm === undefined) throw new HsmBridgeError('INCOMPATIBLE_KEY', `${meta.type} keys have no mac algorithm yet`);
    this.checkFits(meta, 'mac', algorithm);
    if (!allowed.includes(algorithm)) {
      const usage = meta.keyUsage === undefined ? 'no key usage (ISO9797_ALG3 needs a key of usage M3)' : `key usage ${meta.keyUsage}`;
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `key ${meta.name} has ${usage} and cannot use ${algorithm}; it can use ${allowed.join(', ') || 'none'}`);
    }
    return algorithm;
  }

  checkFits(meta: KeyMetadata, purpose: KeyPurpose, algorithm: string): void {
    const fitting = algorithmsFor(meta.type, purpose);
    if (!fitting.includes(algorithm)) {
      throw new HsmBridgeError('INCOMPATIBLE_KEY', `a ${meta.type} key cannot use ${algorithm}; it can use ${fitting.join(', ') || 'none'}`);
    }
    const supported: readonly string[] =
      purpose === 'sign' ? this.caps.sign
      : purpose === 'encrypt' || purpose === 'wrap' ? this.caps.encrypt
      : purpose === 'mac' ? this.caps.mac
      : this.caps.keyAgreement.includes(meta.type) ? ['ECDH'] : [];
    if (!supported.includes(algorithm)) {
      throw new HsmBridgeError('UNSUPPORTED_BY_BACKEND', `the ${this.backendKind} backend does not support ${algorithm}`);
    }
  }
}
