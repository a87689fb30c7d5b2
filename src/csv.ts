import { createRequire } from 'node:module';
import type * as Parse from 'csv-parse';
import type * as StringifySync from 'csv-stringify/sync';

/** csv-parse and csv-stringify through their CommonJS builds (start-up cost: see src/db/kysely.ts). */
const require = createRequire(import.meta.url);
export const { parse } = require('csv-parse') as typeof Parse;
export type { Parser } from 'csv-parse';
export const { stringify } = require('csv-stringify/sync') as typeof StringifySync;
