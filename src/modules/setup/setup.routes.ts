import { z } from '../../zod.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import type { App } from '../../server/types.ts';
import { problemResponses } from '../../server/schemas.ts';
import { PASSWORD_MAX_LENGTH } from '../access/passwords.ts';
import { completeOwnerSetup } from './setup.service.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';

const completeBody = z.strictObject({
  token: z.string().min(1).max(200),
  password: z.string().min(1).max(PASSWORD_MAX_LENGTH * 4),
});

export async function setupRoutes(app: App, options: { forTenant(tenantId: string): TenantDb; cipher: FieldCipher }): Promise<void> {
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
