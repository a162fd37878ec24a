#!/usr/bin/env node
// Fails unless the Node.js running it is within package.json "engines". Each CI test leg runs it with its
// own node, so moving a leg to another Node line, or narrowing engines past a leg, cannot go unnoticed.
// It reads only the forms engines uses, `^X.Y.Z` and `>=X.Y.Z` joined by `||`, and refuses any other.
import { readFileSync } from 'node:fs';

const range = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).engines?.node ?? '';
const version = process.versions.node.split('.').map(Number);
const atLeast = (v, min) => v[0] !== min[0] ? v[0] > min[0] : v[1] !== min[1] ? v[1] > min[1] : v[2] >= min[2];

let within = false;
for (const part of range.split('||').map((p) => p.trim())) {
  const m = /^(\^|>=)(\d+)\.(\d+)\.(\d+)$/.exec(part);
  if (!m) {
    console.error(`engines: cannot read "${part}" in package.json engines.node (${range || 'none'})`);
    process.exit(1);
  }
  const min = [Number(m[2]), Number(m[3]), Number(m[4])];
  if (atLeast(version, min) && (m[1] === '>=' || version[0] === min[0])) within = true;
}
if (!within) {
  console.error(`engines: Node ${process.version} is outside package.json engines.node (${range}); change one of them`);
  process.exit(1);
}
console.log(`engines: Node ${process.version} is within package.json engines.node (${range})`);
