#!/usr/bin/env node
// Fails unless every production package (direct or transitive) declares a licence known to be compatible
// with Apache-2.0. Refused: the GPL family (GPL, LGPL, AGPL) and SSPL, any licence not on the list below,
// and packages that declare none. Usage: check-licenses.mjs [project directory, default: the current one]
import { productionPackages } from './lib/production-packages.mjs';

const allowed = new Set(['MIT', 'ISC', 'Apache-2.0', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD', 'BlueOak-1.0.0', 'CC0-1.0', 'Unlicense', 'Python-2.0'].map((id) => id.toLowerCase()));
const copyleft = /^(A|L)?GPL|^SSPL/i;

/** The declared licence as an SPDX expression, from `license` or the deprecated object and `licenses` forms. */
function declared(manifest) {
  if (typeof manifest.license === 'string') return manifest.license.trim() || undefined;
  if (typeof manifest.license?.type === 'string') return manifest.license.type;
  // Several entries in the old array form: each one must be acceptable.
  const types = Array.isArray(manifest.licenses) ? manifest.licenses.map((l) => l?.type).filter((t) => typeof t === 'string') : [];
  return types.length ? types.map((t) => `(${t})`).join(' AND ') : undefined;
}

/**
 * Evaluates an SPDX expression: AND binds tighter than OR, parentheses group, `X WITH exception` is not
 * on the list. Returns the identifiers that stop it from passing (empty when it passes); anything that
 * does not parse is refused as a whole.
 */
function blockers(expression) {
  const tokens = expression.match(/\(|\)|[^\s()]+/g) ?? [];
  let at = 0;
  const keyword = (word) => tokens[at]?.toUpperCase() === word;
  const fail = () => {
    throw new SyntaxError(expression);
  };
  // Each parse returns the identifiers blocking that sub-expression.
  const atom = () => {
    if (tokens[at] === '(') {
      at++;
      const inner = or();
      if (tokens[at++] !== ')') fail();
      return inner;
    }
    const id = tokens[at++];
    if (id === undefined || id === ')' || ['AND', 'OR', 'WITH'].includes(id.toUpperCase())) fail();
    if (keyword('WITH')) {
      const exception = tokens[at + 1];
      if (exception === undefined || exception === '(' || exception === ')') fail();
      at += 2;
      return [`${id} WITH ${exception}`];
    }
    return allowed.has(id.toLowerCase()) ? [] : [id];
  };
  const and = () => {
    const out = [...atom()];
    while (keyword('AND')) {
      at++;
      out.push(...atom());
    }
    return out;
  };
  const or = () => {
    let best = and();
    while (keyword('OR')) {
      at++;
      const next = and();
      if (next.length < best.length) best = next;
    }
    return best;
  };
  try {
    const result = or();
    if (at !== tokens.length) fail();
    return result;
  } catch (err) {
    if (err instanceof SyntaxError) return [expression];
    throw err;
  }
}

const root = process.argv[2] ?? process.cwd();
let packages;
try {
  packages = productionPackages(root);
} catch (err) {
  console.error(`licences: cannot list the production packages: ${err.message}`);
  process.exit(1);
}

const refused = [];
for (const { name, version, manifest } of packages) {
  const licence = declared(manifest);
  if (licence === undefined) {
    refused.push(`${name}@${version}: no licence declared`);
    continue;
  }
  const ids = blockers(licence);
  if (!ids.length) continue;
  const why = ids.some((id) => copyleft.test(id)) ? 'copyleft, not Apache-2.0 compatible' : 'not known to be Apache-2.0 compatible';
  refused.push(`${name}@${version}: ${licence} (${why})`);
}

const summary = `licences: ${packages.length} production packages checked (the same set as npm ls --omit=dev --all --parseable)`;
if (refused.length) {
  console.error(`${summary}; ${refused.length} refused:`);
  for (const line of refused) console.error(`  ${line}`);
  process.exit(1);
}
console.log(`${summary}, all Apache-2.0 compatible`);
