import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { problemResponses } from '../../server/schemas.ts';
import { AppError } from '../../server/errors.ts';
import { findCurrentTenant } from './tenants.repo.ts';

const tenantSchema = z.object({
  id: z.string(),
  slug: z.string(),
  name: z.string(),
  status: z.enum(['active', 'suspended']),
  createdAt: z.string(),
});

export async function tenantsRoutes(app: App): Promise<void> {
  app.get(
    '/api/v1/tenant',
    {
      config: { access: 'tenant:read' },
      schema: {
        summary: "The caller's tenant",
        tags: ['tenants'],
        security: [{ bearer: [] }],
        response: { 200: tenantSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      const tenant = await request.tenantDb.read((trx) => findCurrentTenant(trx));
      if (!tenant) throw new AppError('not_found');
      return { ...tenant, createdAt: tenant.createdAt.toISOString() };
    },
  );
}
