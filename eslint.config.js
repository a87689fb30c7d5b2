// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', 'coverage/', 'scratch/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', performance: 'readonly', TextDecoder: 'readonly', NodeJS: 'readonly' } },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/consistent-type-definitions': ['error', 'type'],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-console': 'error',
      eqeqeq: 'error',
    },
  },
  {
    // Kysely, zod, libphonenumber-js and csv-parse/stringify load through their CommonJS builds,
    // one copy each, from one module of ours (see ARCHITECTURE.md, "Start-up path"): their types
    // may be imported anywhere, their values only through those modules.
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    ignores: ['src/db/kysely.ts', 'src/zod.ts', 'src/server/zod-provider.ts', 'src/csv.ts', 'src/modules/contacts/phone.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'kysely', allowTypeImports: true, message: 'Import from src/db/kysely.ts.' },
            { name: 'zod', allowTypeImports: true, message: 'Import z from src/zod.ts.' },
            { name: 'fastify-type-provider-zod', allowTypeImports: true, message: 'Import from src/server/zod-provider.ts.' },
            { name: 'libphonenumber-js/max', allowTypeImports: true, message: 'Use src/modules/contacts/phone.ts.' },
            { name: 'csv-parse', allowTypeImports: true, message: 'Import from src/csv.ts.' },
            { name: 'csv-stringify/sync', allowTypeImports: true, message: 'Import from src/csv.ts.' },
          ],
        },
      ],
    },
  },
  {
    // Tenant data is reached only through the tenant handle (src/db/tenant-db.ts); the pool and
    // the Kysely instance stay inside src/db.
    files: ['src/**/*.ts'],
    ignores: ['src/db/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/db/kysely.ts'], importNames: ['Kysely'], message: 'Use the tenant handle (request.tenantDb) or systemDb.' },
          ],
        },
      ],
    },
  },
  {
    // Module augmentation of Fastify's types needs `interface`.
    files: ['src/server/access-control.ts', 'test/support/global-setup.ts'],
    rules: { '@typescript-eslint/consistent-type-definitions': 'off' },
  },
  {
    // The web application runs in the browser.
    files: ['web/src/**/*.{ts,tsx}'],
    languageOptions: {
      globals: {
        window: 'readonly', document: 'readonly', location: 'readonly', history: 'readonly', navigator: 'readonly', localStorage: 'readonly',
        fetch: 'readonly', Response: 'readonly', FormData: 'readonly', URLSearchParams: 'readonly', WebSocket: 'readonly', DOMException: 'readonly',
        AbortController: 'readonly', AbortSignal: 'readonly', Event: 'readonly', File: 'readonly', Blob: 'readonly', BodyInit: 'readonly',
        HTMLDivElement: 'readonly', HTMLDialogElement: 'readonly', HTMLFormElement: 'readonly', addEventListener: 'readonly', removeEventListener: 'readonly',
        dispatchEvent: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', queueMicrotask: 'readonly', confirm: 'readonly',
      },
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', '**/*.test.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off', 'no-console': 'off' },
  },
);
