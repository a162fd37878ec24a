/**
 * GetAttributes for the key lifecycle: an object's State and its Initial Date, the server's own record
 * of when the object was made. Ages of leftovers are judged on that clock, never on a writer's.
 */
import { HsmBridgeError } from '../../src/errors.js';
import type { KmipClient } from './client.js';
import { Enum, Tag } from './tags.js';
import { child, children, struct, text, type Ttlv } from './ttlv.js';

export interface LifecycleAttributes {
  /** Enum.State */
  readonly state: number;
  /** Milliseconds since the epoch on the server's clock (KMIP dates have a resolution of one second). */
  readonly initialDate: number;
}

const unexpected = (what: string) => new HsmBridgeError('INTERNAL', `unexpected answer from the KMIP server: ${what}`);

export async function lifecycleAttributes(client: KmipClient, uid: string): Promise<LifecycleAttributes> {
  const r = await client.call(
    Enum.Operation.GetAttributes,
    struct(Tag.RequestPayload, text(Tag.UniqueIdentifier, uid), text(Tag.AttributeName, 'State'), text(Tag.AttributeName, 'Initial Date')),
    { retry: true },
  );
  let state: number | undefined;
  let initialDate: number | undefined;
  for (const a of r ? children(r, Tag.Attribute) : []) {
    const name = child(a, Tag.AttributeName);
    const value: Ttlv | undefined = child(a, Tag.AttributeValue);
    if (name?.type !== 'TextString' || !value) continue;
    if (name.value === 'State' && value.type === 'Enumeration') state = value.value;
    if (name.value === 'Initial Date' && value.type === 'DateTime') initialDate = Number(value.value) * 1000;
  }
  if (state === undefined || initialDate === undefined) throw unexpected('GetAttributes did not return State and Initial Date');
  return { state, initialDate };
}
