import type { App } from '../../server/types.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses } from '../../server/schemas.ts';
import { findUserById, listUsers, type UserView } from './users.repo.ts';
import { listUsersQuerySchema, userListSchema, userParamsSchema, userSchema } from './users.schemas.ts';

const present = (user: UserView) => ({ ...user, createdAt: user.createdAt.toISOString() });

export async function usersRoutes(app: App, options: { cipher: FieldCipher }): Promise<void> {
  const { cipher } = options;
  app.get(
    '/api/v1/users',
    {
      config: { access: 'users:read' },
      schema: {
        summary: "List the tenant's users",
        tags: ['users'],
        security: [{ bearer: [] }],
        querystring: listUsersQuerySchema,
        response: { 200: userListSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const { limit, after } = request.query;
      const users = await request.tenantDb.read((trx) => listUsers(trx, cipher, { limit, ...(after ? { after } : {}) }));
      const last = users.at(-1);
      return { items: users.map(present), nextAfter: users.length === limit && last ? last.id : null };
    },
  );

  app.get(
    '/api/v1/users/:userId',
    {
      config: { access: 'users:read' },
      schema: {
        summary: 'One user of the tenant',
        tags: ['users'],
        security: [{ bearer: [] }],
        params: userParamsSchema,
        response: { 200: userSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const user = await request.tenantDb.read((trx) => findUserById(trx, cipher, request.params.userId));
      // 404, not 403, for another tenant's user: its existence is itself information we must not give.
      if (!user) throw new AppError('not_found');
      return present(user);
    },
  );
}
