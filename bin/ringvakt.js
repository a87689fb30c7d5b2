#!/usr/bin/env node
// Thin launcher so `npx ringvakt …` works from a clone: runs the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
