// `npm run docs:config`: rewrites docs/configuration.md's key tables from src/config/schema.ts
// (src/config/doc-tables.ts); the prose around them is left as written.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderConfigDoc } from '../src/config/doc-tables.js';

const file = new URL('../docs/configuration.md', import.meta.url);
const page = readFileSync(file, 'utf8');
const next = renderConfigDoc(page);
if (next !== page) writeFileSync(file, next);
console.log(`docs/configuration.md: ${next === page ? 'tables already up to date' : 'tables rewritten'}`);
