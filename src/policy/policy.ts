/**
 * The access policy: named principals (who, by certificate subject or SAN, token subject or claims) and
 * rules (which operations, on which keys and participants). Deny by default: a request is allowed only
 * when the caller's rules allow its operation, and for every key it names a rule of the caller's that
 * allows the operation covers that key, and the same for every participant. A rule without `keys`
 * grants no key-bound operation; a rule without `participants` does not limit participants.
 *
 * YAML shape (README "Identity and access policy"):
 *   principals:
 *     payer-adapter: { certSubject: "CN=payer-adapter" }
 *     ops-admin: { jwtClaim: { roles: "hsm-admin" } }
 *   rules:
 *     - { principal: payer-adapter, allow: [keys.sign], keys: ["payerfsp-*"] }
 */
import { parse as parseYaml } from 'yaml';
import type { Caller } from '../api/stages.js';
import { anyGlob } from './glob.js';

export interface PrincipalSpec {
  /** "CN=<common name>" of a client certificate. */
  readonly certSubject?: string;
  /** A SAN of a client certificate: "spiffe://...", "DNS:name" or "URI:..."; a bare value matches a DNS name or URI. */
  readonly certSan?: string;
  /** The token's "sub". */
  readonly jwtSubject?: string;
  /** Claims the token must carry: a claim equal to the value, or a list of values containing it. */
  readonly jwtClaim?: Readonly<Record<string, string | number | boolean>>;
}

export interface Rule {
  readonly principal: string;
  readonly allow: readonly string[];
  readonly keys?: readonly string[];
  readonly participants?: readonly string[];
}

/** Why a request is refused: the operation, and the key or participant no rule covers. Never the rules. */
export type Decision = { readonly allowed: true } | { readonly allowed: false; readonly key?: string; readonly participant?: string };

interface CompiledRule extends Rule {
  readonly allows: (operation: string) => boolean;
  readonly coversKey: (key: string) => boolean;
  readonly coversParticipant: (participant: string) => boolean;
}

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
}

const principalFields = ['certSubject', 'certSan', 'jwtSubject', 'jwtClaim'] as const;
const ruleFields = ['principal', 'allow', 'keys', 'participants'] as const;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new PolicyError(`${where} must be a non-empty list of non-empty strings`);
  }
  return value as string[];
}

function principalSpec(name: string, value: unknown): PrincipalSpec {
  const where = `principals.${name}`;
  if (!isObject(value)) throw new PolicyError(`${where} must be a mapping`);
  const fields = Object.keys(value);
  if (fields.length === 0) throw new PolicyError(`${where} names nobody: give ${principalFields.join(', ')}`);
  for (const field of fields) {
    if (!(principalFields as readonly string[]).includes(field)) throw new PolicyError(`${where}.${field} is unknown; a principal has ${principalFields.join(', ')}`);
    const v = value[field];
    if (field === 'jwtClaim') {
      if (!isObject(v) || Object.keys(v).length === 0) throw new PolicyError(`${where}.jwtClaim must be a mapping of claim names to values`);
      for (const [claim, expected] of Object.entries(v)) {
        if (!['string', 'number', 'boolean'].includes(typeof expected)) throw new PolicyError(`${where}.jwtClaim.${claim} must be a string, number or boolean`);
      }
    } else if (typeof v !== 'string' || v === '') throw new PolicyError(`${where}.${field} must be a non-empty string`);
  }
  return value as PrincipalSpec;
}

function sanMatches(expected: string, sans: readonly string[]): boolean {
  return sans.some((san) => san === expected || san.slice(san.indexOf(':') + 1) === expected);
}

function claimMatches(actual: unknown, expected: string | number | boolean): boolean {
  return Array.isArray(actual) ? actual.includes(expected) : actual === expected;
}

/** Whether the caller is the principal: every field given must match. */
export function isPrincipal(spec: PrincipalSpec, caller: Caller): boolean {
  if (caller.authenticatedBy === 'none') return false;
  const claims = caller.jwtClaims;
  if (spec.certSubject !== undefined && caller.certSubject !== spec.certSubject) return false;
  if (spec.certSan !== undefined && !sanMatches(spec.certSan, caller.certSans ?? [])) return false;
  if (spec.jwtSubject !== undefined && claims?.sub !== spec.jwtSubject) return false;
  if (spec.jwtClaim !== undefined && !Object.entries(spec.jwtClaim).every(([name, value]) => claims !== undefined && Object.hasOwn(claims, name) && claimMatches(claims[name], value))) return false;
  return true;
}

export class Policy {
  private constructor(
    readonly principals: ReadonlyMap<string, PrincipalSpec>,
    private readonly rules: readonly CompiledRule[],
  ) {}

  /**
   * Parses and checks a policy: every rule names a defined principal, every `allow` entry matches at least
   * one declared operation (a misspelt name would silently grant nothing), no unknown fields.
   */
  static parse(text: string, operationNames: readonly string[]): Policy {
    let doc: unknown;
    try {
      doc = parseYaml(text, { maxAliasCount: 0 });
    } catch (e) {
      throw new PolicyError(`not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
    if (!isObject(doc)) throw new PolicyError('the policy must be a mapping with principals and rules');
    for (const field of Object.keys(doc)) if (field !== 'principals' && field !== 'rules') throw new PolicyError(`${field} is unknown; a policy has principals and rules`);
    if (!isObject(doc.principals)) throw new PolicyError('principals must be a mapping of names to principals');
    const principals = new Map(Object.entries(doc.principals).map(([name, spec]) => [name, principalSpec(name, spec)]));
    if (!Array.isArray(doc.rules)) throw new PolicyError('rules must be a list');
    const rules = doc.rules.map((raw, i): CompiledRule => {
      const where = `rules[${i}]`;
      if (!isObject(raw)) throw new PolicyError(`${where} must be a mapping`);
      for (const field of Object.keys(raw)) if (!(ruleFields as readonly string[]).includes(field)) throw new PolicyError(`${where}.${field} is unknown; a rule has ${ruleFields.join(', ')}`);
      if (typeof raw.principal !== 'string' || !principals.has(raw.principal)) throw new PolicyError(`${where}.principal must name one of the principals`);
      const allow = stringList(raw.allow, `${where}.allow`);
      for (const glob of allow) {
        if (!operationNames.some(anyGlob([glob]))) throw new PolicyError(`${where}.allow: ${JSON.stringify(glob)} matches no operation`);
      }
      const keys = raw.keys === undefined ? undefined : stringList(raw.keys, `${where}.keys`);
      const participants = raw.participants === undefined ? undefined : stringList(raw.participants, `${where}.participants`);
      return {
        principal: raw.principal,
        allow,
        ...(keys ? { keys } : {}),
        ...(participants ? { participants } : {}),
        allows: anyGlob(allow),
        coversKey: keys ? anyGlob(keys) : () => false,
        coversParticipant: participants ? anyGlob(participants) : () => true,
      };
    });
    return new Policy(principals, rules);
  }

  /** The names of the principals the caller is. */
  principalsOf(caller: Caller): string[] {
    return [...this.principals].filter(([, spec]) => isPrincipal(spec, caller)).map(([name]) => name);
  }

  /** The caller's rules (for whoami), with what an omitted field means written out: keys [], participants ["*"]. */
  rulesOf(caller: Caller): Array<Required<Rule>> {
    const mine = new Set(this.principalsOf(caller));
    return this.rules.filter((r) => mine.has(r.principal)).map((r) => ({ principal: r.principal, allow: r.allow, keys: r.keys ?? [], participants: r.participants ?? ['*'] }));
  }

  decide(caller: Caller, operation: string, keyNames: readonly string[], participants: readonly string[]): Decision {
    const mine = new Set(this.principalsOf(caller));
    const rules = this.rules.filter((r) => mine.has(r.principal) && r.allows(operation));
    // One rule must cover the whole request: rules are not pooled, so that a rule's participant limit
    // cannot be escaped through another rule that allows the operation on other terms.
    if (rules.some((r) => keyNames.every((k) => r.coversKey(k)) && participants.every((p) => r.coversParticipant(p)))) return { allowed: true };
    // The refusal names the key no rule covers, else the participant that no rule covering the keys covers.
    const keyRules = rules.filter((r) => keyNames.every((k) => r.coversKey(k)));
    if (keyRules.length === 0) {
      const key = keyNames.find((k) => !rules.some((r) => r.coversKey(k))) ?? keyNames[0];
      return { allowed: false, ...(key === undefined ? {} : { key }) };
    }
    const participant = participants.find((p) => !keyRules.some((r) => r.coversParticipant(p))) ?? participants[0];
    return { allowed: false, ...(participant === undefined ? {} : { participant }) };
  }
}
