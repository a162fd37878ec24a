import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Enum, enumName, Tag, tagName } from '../../../adapters/kmip/tags.js';

/**
 * Every number in tags.ts is checked against an independent table: PyKMIP's kmip.core.enums (Debian
 * python3-pykmip), read at test time. Names are compared with underscores dropped and case folded, so
 * "ProtocolVersionMajor" matches PROTOCOL_VERSION_MAJOR.
 */
const pykmipEnums = (): Record<string, Record<string, number>> => {
  const script = `
import json, enum
from kmip.core import enums
out = {}
for name in dir(enums):
    e = getattr(enums, name)
    if isinstance(e, type) and issubclass(e, enum.Enum):
        out[name] = {k: v.value for k, v in e.__members__.items() if isinstance(v.value, int)}
print(json.dumps(out))
`;
  try {
    return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8', timeout: 30_000 })) as Record<string, Record<string, number>>;
  } catch (e) {
    throw new Error(`PyKMIP call failed (this test needs python3-pykmip: apt-get install python3-pykmip): ${String(e)}`);
  }
};

const fold = (name: string) => name.replace(/_/g, '').toUpperCase();

/** Where the KMIP 1.4 spec's name differs from PyKMIP's for the same value. */
const pykmipName: Record<string, string> = {
  'ObjectType.OpaqueObject': 'OPAQUEDATA', // spec 1.4 §9.1.3.2.12: "Opaque Object"
};

describe('tag and enumeration numbers agree with PyKMIP', () => {
  const theirs = pykmipEnums();

  it('every Tag', () => {
    const tags = theirs['Tags']!;
    const byName = new Map(Object.entries(tags).map(([k, v]) => [fold(k), v]));
    for (const [name, value] of Object.entries(Tag)) expect(byName.get(fold(name)), name).toBe(value);
  });

  it.each(Object.keys(Enum))('every value of %s', (enumeration) => {
    const members = theirs[enumeration];
    expect(members, `PyKMIP has no enumeration ${enumeration}`).toBeDefined();
    const byName = new Map(Object.entries(members!).map(([k, v]) => [fold(k), v]));
    for (const [name, value] of Object.entries(Enum[enumeration as keyof typeof Enum])) {
      const theirName = pykmipName[`${enumeration}.${name}`] ?? fold(name);
      expect(byName.get(theirName), `${enumeration}.${name}`).toBe(value);
    }
  });
});

describe('tags.ts', () => {
  it('has no two names for one tag', () => {
    const values = Object.values(Tag);
    expect(new Set(values).size).toBe(values.length);
  });
  it('names tags and enumeration values for logs', () => {
    expect(tagName(Tag.UniqueIdentifier)).toBe('UniqueIdentifier');
    expect(tagName(0x54aaaa)).toBe('0x54AAAA');
    expect(enumName('ResultReason', Enum.ResultReason.ItemNotFound)).toBe('ItemNotFound');
    expect(enumName('ResultReason', 0x1234)).toBe('0x00001234');
  });
});
