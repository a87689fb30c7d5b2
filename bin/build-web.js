#!/usr/bin/env node
// `npm run build` (always) and `npm test` (when web/ changed): the web application into dist/web.
import { ensureWebBuilt } from './web-build-check.js';

await ensureWebBuilt(process.argv.includes('--force'));
