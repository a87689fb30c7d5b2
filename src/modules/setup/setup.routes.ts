import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { TenantDb } from '../../db/tenant-db.ts';
import type { App } from '../../server/types.ts';
import { problemResponses } from '../../server/schemas.ts';
import { PASSWORD_MAX_LENGTH } from '../access/passwords.ts';
import { completeOwnerSetup } from './setup.service.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';

const pageDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page');
// Read once at start: the page is two fixed files, never a path taken from the request.
const setupHtml = readFileSync(path.join(pageDir, 'setup.html'), 'utf8');
const setupScript = readFileSync(path.join(pageDir, 'setup.js'), 'utf8');

const completeBody = z.strictObject({
  token: z.string().min(1).max(200),
  password: z.string().min(1).max(PASSWORD_MAX_LENGTH * 4),
});

export async function setupRoutes(app: App, options: { forTenant(tenantId: string): TenantDb; cipher: FieldCipher }): Promise<void> {
  app.get('/setup', { config: { access: 'public' }, schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(setupHtml),
  );
  app.get('/setup/setup.js', { config: { access: 'public' }, schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').send(setupScript),
  );

  app.post(
    '/api/v1/setup/complete',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Spend a one-time setup link: choose the first password',
        tags: ['setup'],
        body: completeBody,
        response: { 204: z.null(), ...problemResponses(400, 413, 415) },
      },
    },
    async (request, reply) => {
      await completeOwnerSetup(options.forTenant, options.cipher, { ...request.body, sourceIp: request.ip, requestId: request.id });
      return reply.code(204).send(null);
    },
  );
}
