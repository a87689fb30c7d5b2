import { z } from '../../zod.ts';
import type { App } from '../../server/types.ts';
import { principalOf } from '../../server/access-control.ts';
import { AppError } from '../../server/errors.ts';
import { problemResponses, uuidSchema } from '../../server/schemas.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { announceAuthChange } from './auth-changes.ts';
import { assertGrantable, builtInRoleNames, builtInRoles, mfaRequiredRoles, normalisePermissions, permissions, type Permission } from './permissions.ts';
import { canonicalCidr, createAllowListMatcher, loadSecurityPolicy, saveSecurityPolicy } from './security-policy.ts';

const roleSchema = z.object({
  id: z.string().nullable(),
  name: z.string(),
  builtIn: z.boolean(),
  description: z.string(),
  permissions: z.array(z.string()),
  requiresMfa: z.boolean(),
});

const roleBody = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9_-]{1,39}$/, 'lower-case letters, digits, _ and -; 2–40 characters'),
  description: z.string().max(500).default(''),
  permissions: z.array(z.enum(permissions)).min(1).max(permissions.length),
  requiresMfa: z.boolean().default(true),
});

const policySchema = z.object({
  mfaRequiredForAll: z.boolean(),
  sessionIdleMinutes: z.number().int().min(5).max(720),
  sessionAbsoluteHours: z.number().int().min(1).max(72),
  ipAllowList: z.array(z.string().min(2).max(50)).max(200),
  /** Full personal values one user may reveal per hour (contacts:reveal); 0 turns reveals off. */
  revealsPerHour: z.number().int().min(0).max(10_000).default(50),
  lookupsPerHour: z.number().int().min(0).max(100_000).default(600),
});

/** Only a role that sees no more than an agent may go without a second factor. */
function assertMfaChoice(chosen: readonly string[], requiresMfa: boolean): void {
  if (!requiresMfa && chosen.some((permission) => !(builtInRoles.agent as readonly string[]).includes(permission))) {
    throw new AppError('validation_failed', 'A role with more than agent permissions must require a second factor.');
  }
}

/** A role definition as given, checked: its permissions (grantable, MFA if beyond agent) and its name. */
function checkedRole(held: ReadonlySet<Permission>, body: { name: string; permissions: readonly string[]; requiresMfa: boolean }): Permission[] {
  const chosen = normalisePermissions(body.permissions);
  assertGrantable(held, chosen);
  if ((builtInRoleNames as string[]).includes(body.name) || body.name === 'custom') throw new AppError('conflict', 'That name belongs to a built-in role.');
  assertMfaChoice(chosen, body.requiresMfa);
  return chosen;
}

/** The permission catalogue, built-in and custom roles, and the tenant's security policy. */
export async function accessRoutes(app: App): Promise<void> {
  const actor = (userId: string) => ({ type: 'user' as const, id: userId });

  app.get(
    '/api/v1/roles',
    {
      config: { access: 'users:read' },
      schema: { summary: 'Built-in and custom roles with their permissions', tags: ['access'], response: { 200: z.object({ items: z.array(roleSchema), permissions: z.array(z.string()) }), ...problemResponses(401, 403) } },
    },
    async (request) => {
      const custom = await request.tenantDb.read((trx) => trx.selectFrom('roles').select(['id', 'name', 'description', 'permissions', 'requires_mfa']).orderBy('name').execute());
      return {
        permissions: [...permissions],
        items: [
          ...builtInRoleNames.map((name) => ({ id: null, name, builtIn: true, description: '', permissions: [...builtInRoles[name]], requiresMfa: mfaRequiredRoles.has(name) })),
          ...custom.map((role) => ({ id: role.id, name: role.name, builtIn: false, description: role.description, permissions: normalisePermissions(role.permissions), requiresMfa: role.requires_mfa })),
        ],
      };
    },
  );

  app.post(
    '/api/v1/roles',
    {
      config: { access: 'roles:manage', stepUp: true },
      schema: { summary: 'Create a custom role', tags: ['access'], body: roleBody, response: { 201: roleSchema, ...problemResponses(400, 401, 403, 409) } },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const chosen = checkedRole(principal.permissions, request.body);
      const role = await request.tenantDb.transaction(async (trx) => {
        const existing = await trx.selectFrom('roles').select('id').where('name', '=', request.body.name).executeTakeFirst();
        if (existing) throw new AppError('conflict', 'A role with that name exists already.');
        const row = await trx
          .insertInto('roles')
          .values({ name: request.body.name, description: request.body.description, permissions: chosen, requires_mfa: request.body.requiresMfa })
          .returning(['id', 'name', 'description', 'permissions', 'requires_mfa'])
          .executeTakeFirstOrThrow();
        await recordAuditEvent(trx, { action: 'role.create', outcome: 'success', actor: actor(principal.userId), target: { type: 'role', id: row.id }, sourceIp: request.ip, requestId: request.id, details: { permissions: chosen.join(' '), requiresMfa: row.requires_mfa } });
        return row;
      });
      return reply.code(201).send({ id: role.id, name: role.name, builtIn: false, description: role.description, permissions: role.permissions, requiresMfa: role.requires_mfa });
    },
  );

  app.put(
    '/api/v1/roles/:roleId',
    {
      config: { access: 'roles:manage', stepUp: true },
      schema: { summary: 'Replace a custom role (its holders get the new permissions at once)', tags: ['access'], params: z.strictObject({ roleId: uuidSchema }), body: roleBody, response: { 200: roleSchema, ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request) => {
      const principal = principalOf(request);
      const chosen = checkedRole(principal.permissions, request.body);
      const role = await request.tenantDb.transaction(async (trx) => {
        const clash = await trx.selectFrom('roles').select('id').where('name', '=', request.body.name).where('id', '!=', request.params.roleId).executeTakeFirst();
        if (clash) throw new AppError('conflict', 'A role with that name exists already.');
        const row = await trx
          .updateTable('roles')
          .set({ name: request.body.name, description: request.body.description, permissions: chosen, requires_mfa: request.body.requiresMfa, updated_at: new Date() })
          .where('id', '=', request.params.roleId)
          .returning(['id', 'name', 'description', 'permissions', 'requires_mfa'])
          .executeTakeFirst();
        if (!row) throw new AppError('not_found');
        announceAuthChange(trx);
        await recordAuditEvent(trx, { action: 'role.update', outcome: 'success', actor: actor(principal.userId), target: { type: 'role', id: row.id }, sourceIp: request.ip, requestId: request.id, details: { permissions: chosen.join(' '), requiresMfa: row.requires_mfa } });
        return row;
      });
      return { id: role.id, name: role.name, builtIn: false, description: role.description, permissions: role.permissions, requiresMfa: role.requires_mfa };
    },
  );

  app.delete(
    '/api/v1/roles/:roleId',
    {
      config: { access: 'roles:manage', stepUp: true },
      schema: { summary: 'Delete a custom role that nobody holds', tags: ['access'], params: z.strictObject({ roleId: uuidSchema }), response: { 204: z.null(), ...problemResponses(400, 401, 403, 404, 409) } },
    },
    async (request, reply) => {
      await request.tenantDb.transaction(async (trx) => {
        const holder = await trx.selectFrom('users').select('id').where('custom_role_id', '=', request.params.roleId).executeTakeFirst();
        if (holder) throw new AppError('conflict', 'Users hold this role: give them another role first.');
        const deleted = await trx.deleteFrom('roles').where('id', '=', request.params.roleId).executeTakeFirst();
        if (Number(deleted.numDeletedRows) !== 1) throw new AppError('not_found');
        await recordAuditEvent(trx, { action: 'role.delete', outcome: 'success', actor: actor(principalOf(request).userId), target: { type: 'role', id: request.params.roleId }, sourceIp: request.ip, requestId: request.id });
      });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/security-policy',
    {
      config: { access: 'security:manage' },
      schema: { summary: "The organisation's security policy", tags: ['access'], response: { 200: policySchema, ...problemResponses(401, 403) } },
    },
    async (request) => request.tenantDb.read((trx) => loadSecurityPolicy(trx)),
  );

  app.put(
    '/api/v1/security-policy',
    {
      config: { access: 'security:manage', stepUp: true },
      schema: { summary: 'Replace the security policy (MFA for everyone, session timeouts, IP allow-list)', tags: ['access'], body: policySchema.strict(), response: { 200: policySchema, ...problemResponses(400, 401, 403, 409) } },
    },
    async (request) => {
      const ipAllowList = [...new Set(request.body.ipAllowList.map(canonicalCidr))];
      // Refuse a list that would shut out the very person setting it.
      if (!createAllowListMatcher(ipAllowList)(request.ip)) {
        throw new AppError('conflict', 'Your own address is not in the new allow-list: you would lock yourself out.');
      }
      const policy = { ...request.body, ipAllowList };
      await request.tenantDb.transaction(async (trx) => {
        const before = await loadSecurityPolicy(trx);
        await saveSecurityPolicy(trx, policy);
        await recordAuditEvent(trx, {
          action: 'security_policy.update',
          outcome: 'success',
          actor: actor(principalOf(request).userId),
          target: { type: 'tenant', id: trx.tenantId },
          sourceIp: request.ip,
          requestId: request.id,
          details: {
            mfaRequiredForAll: policy.mfaRequiredForAll,
            sessionIdleMinutes: policy.sessionIdleMinutes,
            sessionAbsoluteHours: policy.sessionAbsoluteHours,
            revealsPerHour: policy.revealsPerHour,
            lookupsPerHour: policy.lookupsPerHour,
            ipAllowList: policy.ipAllowList.join(' '),
            previousIpAllowList: before.ipAllowList.join(' '),
          },
        });
      });
      return policy;
    },
  );
}
