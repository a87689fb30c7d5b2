import { z } from '../../zod.ts';
import type { FastifyRequest } from 'fastify';
import type { App } from '../../server/types.ts';
import { principalOf } from '../../server/access-control.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { Mailer } from '../mail/mailer.ts';
import { loadSecurityPolicy } from '../access/security-policy.ts';
import { announceAuthChange } from '../access/auth-changes.ts';
import { listSessions, revokeSessions } from '../auth/sessions.ts';
import { presentSession, sessionSchema } from '../auth/http-session.ts';
import { findUserById, listUsers, type UserView } from './users.repo.ts';
import { inviteUserSchema, listUsersQuerySchema, updateUserSchema, userListSchema, userParamsSchema, userSchema } from './users.schemas.ts';
import { assertMayManage, endUserAccess, inviteUser, isLastActiveOwner, resolveRoleChoice } from './users.service.ts';

const present = (user: UserView) => ({ ...user, createdAt: user.createdAt.toISOString() });

const actorOf = (request: FastifyRequest) => {
  const principal = principalOf(request);
  return principal.credential.kind === 'session'
    ? { type: 'user' as const, id: principal.userId }
    : { type: 'api_token' as const, id: principal.credential.id };
};

async function requireUser(trx: TenantTransaction, cipher: FieldCipher, userId: string): Promise<UserView> {
  const user = await findUserById(trx, cipher, userId);
  // 404, not 403, for another tenant's user: its existence is itself information we must not give.
  if (!user) throw new AppError('not_found');
  return user;
}

export async function usersRoutes(app: App, options: { cipher: FieldCipher; mailer: Mailer; publicUrl: string }): Promise<void> {
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
      return present(await request.tenantDb.read((trx) => requireUser(trx, cipher, request.params.userId)));
    },
  );

  app.post(
    '/api/v1/users',
    {
      config: { access: 'users:manage', stepUp: true },
      schema: {
        summary: 'Invite a user: an e-mail with a one-time link to choose a password',
        tags: ['users'],
        body: inviteUserSchema,
        response: { 201: userSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { email, displayName, role, customRoleId } = request.body;
      const user = await request.tenantDb.transaction(async (trx) => {
        const choice = await resolveRoleChoice(trx, principalOf(request), { role, customRoleId });
        const tenant = await trx.selectFrom('tenants').select('name').executeTakeFirstOrThrow();
        const user = await inviteUser(trx, options, { email, displayName, choice, tenantName: tenant.name });
        await recordAuditEvent(trx, {
          action: 'user.invite',
          outcome: 'success',
          actor: actorOf(request),
          target: { type: 'user', id: user.id },
          sourceIp: request.ip,
          requestId: request.id,
          details: { role: choice.role, customRole: choice.customRoleId },
        });
        return user;
      });
      return reply.code(201).send(present(user));
    },
  );

  app.patch(
    '/api/v1/users/:userId',
    {
      config: { access: 'users:manage', stepUp: true },
      schema: {
        summary: "Change a user's name or role (a role change ends the user's sessions)",
        tags: ['users'],
        params: userParamsSchema,
        body: updateUserSchema,
        response: { 200: userSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const { displayName, role, customRoleId } = request.body;
      const updated = await request.tenantDb.transaction(async (trx) => {
        const user = await requireUser(trx, cipher, request.params.userId);
        if (displayName !== undefined) {
          await trx
            .updateTable('users')
            .set({ display_name_ciphertext: await cipher.encrypt(trx, { table: 'users', recordId: user.id, field: 'display_name' }, displayName), updated_at: new Date() })
            .where('id', '=', user.id)
            .execute();
        }
        await assertMayManage(trx, principalOf(request), user);
        if (role !== undefined || customRoleId !== undefined) {
          const choice = await resolveRoleChoice(trx, principalOf(request), { role, customRoleId });
          if (user.role === 'owner' && choice.role !== 'owner' && (await isLastActiveOwner(trx, user.id))) {
            throw new AppError('conflict', 'This is the last active owner: make another owner first.');
          }
          await trx.updateTable('users').set({ role: choice.role, custom_role_id: choice.customRoleId, updated_at: new Date() }).where('id', '=', user.id).execute();
          announceAuthChange(trx);
          const ended = await revokeSessions(trx, { userId: user.id }, 'role_changed');
          await recordAuditEvent(trx, {
            action: 'user.update',
            outcome: 'success',
            actor: actorOf(request),
            target: { type: 'user', id: user.id },
            sourceIp: request.ip,
            requestId: request.id,
            details: { from: user.role, fromCustomRole: user.customRoleId, to: choice.role, toCustomRole: choice.customRoleId, sessionsEnded: ended },
          });
        } else if (displayName !== undefined) {
          await recordAuditEvent(trx, { action: 'user.update', outcome: 'success', actor: actorOf(request), target: { type: 'user', id: user.id }, sourceIp: request.ip, requestId: request.id, details: { field: 'display_name' } });
        }
        return requireUser(trx, cipher, user.id);
      });
      return present(updated);
    },
  );

  for (const [action, status] of [['disable', 'disabled'], ['enable', 'active']] as const) {
    app.post(
      `/api/v1/users/:userId/${action}`,
      {
        config: { access: 'users:manage', stepUp: true },
        schema: {
          summary: action === 'disable' ? 'Disable a user: every session and API token ends at once' : 'Enable a disabled user again',
          tags: ['users'],
          params: userParamsSchema,
          response: { 200: userSchema, ...problemResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const updated = await request.tenantDb.transaction(async (trx) => {
          const user = await requireUser(trx, cipher, request.params.userId);
          await assertMayManage(trx, principalOf(request), user);
          if (action === 'disable') {
            if (user.id === principalOf(request).userId) throw new AppError('conflict', 'You cannot disable yourself.');
            if (await isLastActiveOwner(trx, user.id)) throw new AppError('conflict', 'This is the last active owner.');
          } else if (user.status !== 'disabled') {
            throw new AppError('conflict', 'Only a disabled user can be enabled.');
          }
          // Disabling ends everything at once, in this transaction: sessions, API tokens, and (through
          // the notification at commit) every cached credential on every node.
          let sessionsEnded = 0;
          let tokensRevoked = 0;
          if (action === 'disable') {
            ({ sessionsEnded, tokensRevoked } = await endUserAccess(trx, user.id, { disable: true, reason: 'user_disabled' }));
          } else {
            await trx.updateTable('users').set({ status, updated_at: new Date() }).where('id', '=', user.id).execute();
            announceAuthChange(trx);
          }
          await recordAuditEvent(trx, {
            action: action === 'disable' ? 'user.disable' : 'user.enable',
            outcome: 'success',
            actor: actorOf(request),
            target: { type: 'user', id: user.id },
            sourceIp: request.ip,
            requestId: request.id,
            details: { sessionsEnded, tokensRevoked },
          });
          return requireUser(trx, cipher, user.id);
        });
        return present(updated);
      },
    );
  }

  app.get(
    '/api/v1/users/:userId/sessions',
    {
      config: { access: 'users:manage' },
      schema: { summary: "A user's signed-in sessions", tags: ['users'], params: userParamsSchema, response: { 200: z.object({ items: z.array(sessionSchema) }), ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => {
      const sessions = await request.tenantDb.read(async (trx) => {
        await requireUser(trx, cipher, request.params.userId);
        return listSessions(trx, request.params.userId, await loadSecurityPolicy(trx));
      });
      return { items: sessions.map((session) => presentSession(session)) };
    },
  );

  app.delete(
    '/api/v1/users/:userId/sessions',
    {
      config: { access: 'users:manage' },
      schema: { summary: "End all of a user's sessions", tags: ['users'], params: userParamsSchema, response: { 200: z.object({ ended: z.number().int() }), ...problemResponses(400, 401, 403, 404) } },
    },
    async (request) => {
      const ended = await request.tenantDb.transaction(async (trx) => {
        const user = await requireUser(trx, cipher, request.params.userId);
        await assertMayManage(trx, principalOf(request), user);
        const ended = await revokeSessions(trx, { userId: user.id }, 'revoked');
        await recordAuditEvent(trx, { action: 'session.revoke', outcome: 'success', actor: actorOf(request), target: { type: 'user', id: user.id }, sourceIp: request.ip, requestId: request.id, details: { user: user.id, ended } });
        return ended;
      });
      return { ended };
    },
  );
}
