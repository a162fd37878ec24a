/** The policy file's shape and its decisions, without a server: what loads, what is refused, who may do what. */
import { describe, expect, it } from 'vitest';
import { operations } from '../../src/api/operations/index.js';
import type { Caller } from '../../src/api/stages.js';
import { globMatcher } from '../../src/policy/glob.js';
import { Policy } from '../../src/policy/policy.js';

const names = operations.map((op) => op.name);

/** The example, verbatim. */
const example = `
principals:
  payer-adapter: { certSubject: "CN=payer-adapter" }     # or certSan: "spiffe://...", jwtSubject: ..., jwtClaim: {client_id: ...}
  ops-admin: { jwtClaim: { roles: "hsm-admin" } }
rules:
  - principal: payer-adapter
    allow: [keys.sign, keys.verify, fspiop.sign]
    keys: ["payerfsp-*"]          # globs on key names; omitted = the rule grants no key-bound operation
  - principal: ops-admin
    allow: ["keys.*", "fspiop.participants.*"]
    keys: ["*"]
`;

const cert = (cn: string, sans: string[] = []): Caller => ({ authenticatedBy: 'certificate', id: cn, certSubject: `CN=${cn}`, certSans: sans });
const token = (claims: Record<string, unknown>): Caller => ({ authenticatedBy: 'token', id: String(claims.sub ?? 'token'), jwtClaims: claims });

describe('the example policy', () => {
  const policy = Policy.parse(example, names);
  const payer = cert('payer-adapter');
  const admin = token({ sub: 'ops', roles: ['reader', 'hsm-admin'] });

  it('lets payer-adapter sign with payerfsp-* keys and nothing else', () => {
    expect(policy.decide(payer, 'keys.sign', ['payerfsp-1'], [])).toEqual({ allowed: true });
    expect(policy.decide(payer, 'fspiop.sign', ['payerfsp-1'], ['payerfsp', 'payeefsp'])).toEqual({ allowed: true });
    expect(policy.decide(payer, 'keys.sign', ['payeefsp-1'], [])).toEqual({ allowed: false, key: 'payeefsp-1' });
    expect(policy.decide(payer, 'keys.destroy', ['payerfsp-1'], [])).toEqual({ allowed: false, key: 'payerfsp-1' });
    expect(policy.decide(payer, 'system.random', [], [])).toEqual({ allowed: false });
  });

  it('lets ops-admin (a role among the token\'s roles) manage keys and participants', () => {
    expect(policy.decide(admin, 'keys.destroy', ['anything'], [])).toEqual({ allowed: true });
    expect(policy.decide(admin, 'keys.list', [], [])).toEqual({ allowed: true });
    expect(policy.decide(admin, 'fspiop.participants.write', [], ['payerfsp'])).toEqual({ allowed: true });
    expect(policy.decide(admin, 'pin.translate', ['a', 'b'], [])).toEqual({ allowed: false, key: 'a' });
    expect(policy.decide(token({ sub: 'ops', roles: 'hsm-admin-not' }), 'keys.list', [], [])).toEqual({ allowed: false });
  });

  it('matches nobody anonymous, and nobody by a look-alike name', () => {
    expect(policy.decide({ authenticatedBy: 'none', id: 'anonymous' }, 'keys.list', [], [])).toEqual({ allowed: false });
    expect(policy.principalsOf(cert('payer-adapter-2'))).toEqual([]);
    expect(policy.principalsOf(token({ sub: 'x', roles: { 0: 'hsm-admin' } }))).toEqual([]);
    expect(policy.principalsOf(cert('payer-adapter'))).toEqual(['payer-adapter']);
  });
});

describe('decisions', () => {
  const policy = Policy.parse(
    `
principals:
  spiffe: { certSan: "spiffe://t/ns/a" }
  dns: { certSan: "DNS:svc.local" }
  both: { certSubject: "CN=both", jwtSubject: "both" }
  client: { jwtClaim: { client_id: "pin-svc", tier: 2 } }
rules:
  - { principal: spiffe, allow: ["*"], keys: ["a-*"] }
  - { principal: dns, allow: [system.random, system.capabilities] }
  - { principal: both, allow: [keys.get], keys: ["*"] }
  - { principal: client, allow: [pin.translate, pin.toJwe], keys: ["zpk-*"] }
  - { principal: client, allow: [pin.toJwe], keys: ["jwe-*"], participants: ["payee*"] }
`,
    names,
  );

  it('reads SANs with or without their type, and needs every field of a principal', () => {
    expect(policy.principalsOf(cert('x', ['URI:spiffe://t/ns/a']))).toEqual(['spiffe']);
    expect(policy.principalsOf(cert('x', ['DNS:svc.local']))).toEqual(['dns']);
    expect(policy.principalsOf(cert('x', ['URI:svc.local']))).toEqual([]);
    expect(policy.principalsOf(cert('both'))).toEqual([]);
    expect(policy.principalsOf({ ...cert('both'), authenticatedBy: 'token', jwtClaims: { sub: 'both' } })).toEqual(['both']);
    expect(policy.principalsOf(token({ client_id: 'pin-svc', tier: 2 }))).toEqual(['client']);
    expect(policy.principalsOf(token({ client_id: 'pin-svc', tier: '2' }))).toEqual([]);
  });

  it('"*" alone allows every operation; operations without keys need only the operation', () => {
    const spiffe = cert('x', ['URI:spiffe://t/ns/a']);
    for (const name of names) expect(policy.decide(spiffe, name, ['a-1'], []), name).toEqual({ allowed: true });
    expect(policy.decide(spiffe, 'keys.sign', ['b-1'], [])).toEqual({ allowed: false, key: 'b-1' });
    const dns = cert('x', ['DNS:svc.local']);
    expect(policy.decide(dns, 'system.random', [], [])).toEqual({ allowed: true });
    expect(policy.decide(dns, 'keys.list', [], [])).toEqual({ allowed: false });
  });

  it('a rule without keys grants no key-bound operation', () => {
    const dns = cert('x', ['DNS:svc.local']);
    expect(policy.decide(dns, 'system.random', ['k'], [])).toEqual({ allowed: false, key: 'k' });
  });

  it('PIN translation needs both keys; OTP-to-JWE needs the incoming key and the recipient key or participant', () => {
    const c = token({ client_id: 'pin-svc', tier: 2 });
    expect(policy.decide(c, 'pin.translate', ['zpk-in', 'zpk-out'], [])).toEqual({ allowed: true });
    expect(policy.decide(c, 'pin.translate', ['zpk-in', 'bdk-out'], [])).toEqual({ allowed: false, key: 'bdk-out' });
    // One rule must cover the whole request: keys covered only by two different rules are refused.
    expect(policy.decide(c, 'pin.toJwe', ['zpk-in', 'jwe-1'], [])).toEqual({ allowed: false, key: 'zpk-in' });
    expect(policy.decide(c, 'pin.translate', ['zpk-in', 'jwe-1'], [])).toEqual({ allowed: false, key: 'jwe-1' });
    // The first pin.toJwe rule does not limit participants.
    expect(policy.decide(c, 'pin.toJwe', ['zpk-in'], ['payeefsp'])).toEqual({ allowed: true });
    expect(policy.decide(c, 'pin.toJwe', ['jwe-1'], ['payeefsp'])).toEqual({ allowed: true });
    expect(policy.decide(c, 'pin.toJwe', ['jwe-1'], ['evilfsp'])).toEqual({ allowed: false, participant: 'evilfsp' });
  });

  it('does not pool rules: a rule limiting participants cannot be escaped through another rule on other keys', () => {
    const p = Policy.parse(
      'principals: {a: {jwtSubject: a}}\nrules:\n  - {principal: a, allow: [pin.toJwe], keys: [otp-zpk], participants: [payeefsp]}\n  - {principal: a, allow: ["*"], keys: [other-*]}',
      names,
    );
    const a = token({ sub: 'a' });
    expect(p.decide(a, 'pin.toJwe', ['otp-zpk'], ['payeefsp'])).toEqual({ allowed: true });
    expect(p.decide(a, 'pin.toJwe', ['otp-zpk'], ['evilfsp'])).toEqual({ allowed: false, participant: 'evilfsp' });
    expect(p.decide(a, 'pin.toJwe', ['other-1'], ['evilfsp'])).toEqual({ allowed: true });
  });

  it('participants globs limit the participants a rule covers', () => {
    const p = Policy.parse('principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: [pin.toJwe], keys: ["*"], participants: ["payee*"]}]', names);
    const a = token({ sub: 'a' });
    expect(p.decide(a, 'pin.toJwe', ['k'], ['payeefsp'])).toEqual({ allowed: true });
    expect(p.decide(a, 'pin.toJwe', ['k'], ['payerfsp'])).toEqual({ allowed: false, participant: 'payerfsp' });
  });

  it('whoami shows the rules with omitted fields written out', () => {
    expect(policy.rulesOf(cert('x', ['DNS:svc.local']))).toEqual([{ principal: 'dns', allow: ['system.random', 'system.capabilities'], keys: [], participants: ['*'] }]);
  });
});

describe('refused policy files', () => {
  const refusals: Array<[string, string, RegExp]> = [
    ['an unknown operation', 'principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: [keys.sgin], keys: ["*"]}]', /"keys\.sgin" matches no operation/],
    ['a glob matching no operation', 'principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: ["kyes.*"]}]', /matches no operation/],
    ['an undefined principal', 'principals: {a: {jwtSubject: a}}\nrules: [{principal: b, allow: [keys.sign]}]', /must name one of the principals/],
    ['an unknown principal field', 'principals: {a: {certCN: a}}\nrules: []', /certCN is unknown/],
    ['an empty principal', 'principals: {a: {}}\nrules: []', /names nobody/],
    ['an unknown rule field', 'principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: [keys.sign], key: ["*"]}]', /key is unknown/],
    ['an empty allow', 'principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: []}]', /allow must be a non-empty list/],
    ['keys not a list', 'principals: {a: {jwtSubject: a}}\nrules: [{principal: a, allow: [keys.sign], keys: "*"}]', /keys must be a non-empty list/],
    ['a claim that is an object', 'principals: {a: {jwtClaim: {roles: {x: 1}}}}\nrules: []', /must be a string, number or boolean/],
    ['no rules', 'principals: {a: {jwtSubject: a}}', /rules must be a list/],
    ['an unknown top-level field', 'principals: {}\nrules: []\ndefault: allow', /default is unknown/],
    ['not YAML', 'rules: [unclosed', /not valid YAML/],
    ['YAML aliases', 'principals: {a: &p {jwtSubject: a}, b: *p}\nrules: []', /not valid YAML/],
  ];
  for (const [label, text, message] of refusals) {
    it(`refuses ${label}`, () => expect(() => Policy.parse(text, names)).toThrow(message));
  }
});

describe('globs', () => {
  it('"*" is any run of characters; everything else is literal', () => {
    expect(globMatcher('payerfsp-*')('payerfsp-sign')).toBe(true);
    expect(globMatcher('payerfsp-*')('payerfsp')).toBe(false);
    expect(globMatcher('keys.*')('keys.sign')).toBe(true);
    expect(globMatcher('keys.*')('keysXsign')).toBe(false);
    expect(globMatcher('a.b')('aXb')).toBe(false);
    expect(globMatcher('*-sign')('x-sign')).toBe(true);
    expect(globMatcher('fspiop.participants.*')('fspiop.participants.write')).toBe(true);
    expect(globMatcher('(a|b)')('a')).toBe(false);
  });
});
