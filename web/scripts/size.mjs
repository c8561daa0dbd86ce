// Print the gzip size of the built UI and fail when it exceeds the budget (250 KB).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET = 250 * 1024;
const root = new URL('../dist/', import.meta.url).pathname;
const files = [];
(function walk(d) {
  for (const n of readdirSync(d)) {
    const p = join(d, n);
    if (statSync(p).isDirectory()) walk(p);
    else files.push(p);
  }
})(root);
let raw = 0;
let gz = 0;
for (const f of files) {
  const b = readFileSync(f);
  const g = gzipSync(b, { level: 9 }).length;
  raw += b.length;
  gz += g;
  console.log(`  ${relative(root, f).padEnd(40)} ${(b.length / 1024).toFixed(1).padStart(8)} KB  gzip ${(g / 1024).toFixed(1).padStart(7)} KB`);
}
console.log(`web bundle: ${files.length} files, ${(raw / 1024).toFixed(1)} KB raw, ${(gz / 1024).toFixed(1)} KB gzip (budget ${BUDGET / 1024} KB)`);
if (gz > BUDGET) {
  console.error(`web bundle too large: ${(gz / 1024).toFixed(1)} KB gzip > ${BUDGET / 1024} KB`);
  process.exit(1);
}
