#!/usr/bin/env node
// Fails unless the CycloneDX SBOM lists every production package (name@version, as often as it is
// installed) and nothing else. Usage: check-sbom.mjs [sbom file, default sbom.cdx.json] [project directory]
import { readFileSync } from 'node:fs';
import { productionPackages } from './lib/production-packages.mjs';

const [file = 'sbom.cdx.json', root = process.cwd()] = process.argv.slice(2);

let bom;
let packages;
try {
  bom = JSON.parse(readFileSync(file, 'utf8'));
  packages = productionPackages(root);
} catch (err) {
  console.error(`SBOM: cannot check ${file}: ${err.message}`);
  process.exit(1);
}
if (bom.bomFormat !== 'CycloneDX') {
  console.error(`SBOM: ${file} is not a CycloneDX document`);
  process.exit(1);
}

// cyclonedx-npm nests a component under the package whose node_modules holds it.
const listed = [];
(function collect(components) {
  for (const c of components ?? []) {
    listed.push(`${c.group ? `${c.group}/` : ''}${c.name}@${c.version}`);
    collect(c.components);
  }
})(bom.components);

/** What `a` holds more often than `b`, each surplus entry once per extra copy. */
function surplus(a, b) {
  const left = new Map();
  for (const key of b) left.set(key, (left.get(key) ?? 0) + 1);
  return a.filter((key) => {
    const n = left.get(key) ?? 0;
    left.set(key, n - 1);
    return n <= 0;
  });
}

const expected = packages.map((p) => `${p.name}@${p.version}`);
const absent = surplus(expected, listed);
const extra = surplus(listed, expected);
if (absent.length || extra.length) {
  console.error(`SBOM: ${file} does not match the ${expected.length} production packages`);
  if (absent.length) console.error(`  missing: ${absent.join(', ')}`);
  if (extra.length) console.error(`  not production packages: ${extra.join(', ')}`);
  process.exit(1);
}
console.log(`SBOM: ${file} (CycloneDX ${bom.specVersion}) lists all ${expected.length} production packages and nothing else`);
