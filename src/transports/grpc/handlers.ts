/**
 * The hsmbridge.v1.KeyService handlers: each decodes its request message into the KeyService input,
 * calls the core (which validates everything) and encodes the result. No checks here beyond what the
 * wire format itself needs: proto3 cannot tell an empty string from an absent one, so an empty
 * algorithm or purpose means "not given", as the contract says.
 */
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { KeyMetadata } from '../../keys/types.js';
import type { KeyService } from '../../operations/keyService.js';
import { keyView } from '../keyView.js';
import { unaryCall } from './calls.js';
import type * as m from './messages.js';
import { KEY_SERVICE_NAME, type SecretResponseFields } from './protos.js';

/** Responses whose bytes are secret, wiped once encoded (see protos.ts). */
export const secretResponseFields: SecretResponseFields = { Decrypt: ['plaintext'], GenerateRandom: ['random'] };

const given = (value: string): string | undefined => (value === '' ? undefined : value);

/** The shared Key view, with each JWK as a JSON string (proto has no free-form object). */
export async function keyMessage(service: KeyService, meta: KeyMetadata): Promise<m.KeyMessage> {
  const view = await keyView(service, meta);
  return {
    ...view,
    versions: view.versions.map(({ publicKeyJwk, ...version }) =>
      publicKeyJwk ? { ...version, publicKeyJwk: JSON.stringify(publicKeyJwk) } : version),
  };
}

export function keyServiceHandlers(service: KeyService, logger: Logger): UntypedServiceImplementation {
  const rpc = <Req, Res>(method: string, handle: (request: Req) => Promise<Res>) =>
    unaryCall<Req, Res>(`${KEY_SERVICE_NAME}/${method}`, logger, handle);

  const keyCall = (change: (name: string) => Promise<KeyMetadata>) =>
    async (r: m.KeyNameRequest): Promise<m.KeyMessage> => keyMessage(service, await change(r.name));

  return {
    CreateKey: rpc('CreateKey', async (r: m.CreateKeyRequest): Promise<m.KeyMessage> =>
      keyMessage(service, await service.createKey({ name: r.name, type: r.type, purpose: given(r.purpose), exportable: r.exportable, keyUsage: given(r.keyUsage) }))),

    ListKeys: rpc('ListKeys', async (): Promise<m.ListKeysResponse> => ({
      keys: await Promise.all((await service.listKeys()).map((meta) => keyMessage(service, meta))),
    })),
    GetKey: rpc('GetKey', keyCall((name) => service.getKey(name))),
    RotateKey: rpc('RotateKey', keyCall((name) => service.rotateKey(name))),
    EnableKey: rpc('EnableKey', keyCall((name) => service.enableKey(name))),
    DisableKey: rpc('DisableKey', keyCall((name) => service.disableKey(name))),
    DestroyKey: rpc('DestroyKey', async (r: m.KeyNameRequest): Promise<m.DestroyKeyResponse> => {
      await service.destroyKey(r.name);
      return {};
    }),

    Sign: rpc('Sign', async (r: m.SignRequest): Promise<m.SignResponse> => {
      const result = await service.sign({ name: r.name, algorithm: given(r.algorithm), message: r.message, digest: r.digest });
      return { keyName: r.name, ...result };
    }),

    Verify: rpc('Verify', async (r: m.VerifyRequest): Promise<m.VerifyResponse> => {
      const result = await service.verify({
        name: r.name,
        algorithm: given(r.algorithm),
        keyVersion: r.keyVersion,
        message: r.message,
        digest: r.digest,
        signature: r.signature,
      });
      return { keyName: r.name, ...result };
    }),

    Encrypt: rpc('Encrypt', async (r: m.EncryptRequest): Promise<m.EncryptResponse> => {
      try {
        const result = await service.encrypt({ name: r.name, algorithm: given(r.algorithm), plaintext: r.plaintext, aad: r.aad });
        return { keyName: r.name, ...result };
      } finally {
        r.plaintext.fill(0);
      }
    }),

    Decrypt: rpc('Decrypt', async (r: m.DecryptRequest): Promise<m.DecryptResponse> => {
      const result = await service.decrypt({
        name: r.name,
        ciphertext: r.ciphertext,
        aad: r.aad,
        keyVersion: r.keyVersion,
        algorithm: given(r.algorithm),
      });
      return { keyName: r.name, ...result };
    }),

    GenerateMac: rpc('GenerateMac', async (r: m.GenerateMacRequest): Promise<m.GenerateMacResponse> => {
      const result = await service.mac({ name: r.name, algorithm: given(r.algorithm), data: r.data });
      return { keyName: r.name, ...result };
    }),

    VerifyMac: rpc('VerifyMac', async (r: m.VerifyMacRequest): Promise<m.VerifyMacResponse> => {
      const result = await service.verifyMac({
        name: r.name,
        algorithm: given(r.algorithm),
        keyVersion: r.keyVersion,
        data: r.data,
        mac: r.mac,
      });
      return { keyName: r.name, ...result };
    }),

    GenerateRandom: rpc('GenerateRandom', async (r: m.GenerateRandomRequest): Promise<m.GenerateRandomResponse> => ({
      random: await service.randomBytes(r.length),
    })),

    GetCapabilities: rpc('GetCapabilities', async (): Promise<m.CapabilitiesMessage> => {
      const caps = service.capabilities();
      return {
        keyTypes: [...caps.keyTypes],
        sign: [...caps.sign],
        encrypt: [...caps.encrypt],
        mac: [...caps.mac],
        signDigest: [...caps.signDigest],
        random: caps.random,
        keyAgreement: [...caps.keyAgreement],
        payment: {
          dukpt: [...(caps.payment?.dukpt ?? [])],
          importKeys: caps.payment?.importKeys ?? false,
          exportKeys: caps.payment?.exportKeys ?? false,
        },
      };
    }),
  };
}
