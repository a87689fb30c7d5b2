import { z } from '../../zod.ts';
import { uuidSchema } from '../../server/schemas.ts';

export const userSchema = z.object({
  id: z.string(),
  email: z.string(),
  displayName: z.string(),
  role: z.enum(['owner', 'admin', 'supervisor', 'agent', 'auditor', 'privacy_officer', 'custom']),
  customRoleId: z.string().nullable(),
  status: z.enum(['invited', 'active', 'disabled']),
  createdAt: z.string(),
  mfa: z.object({ authenticator: z.boolean(), passkeys: z.number().int() }),
});

export const userParamsSchema = z.strictObject({ userId: uuidSchema });

export const listUsersQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  after: uuidSchema.optional(),
});

export const userListSchema = z.object({ items: z.array(userSchema), nextAfter: z.string().nullable() });

const builtInRole = z.enum(['owner', 'admin', 'supervisor', 'agent', 'auditor', 'privacy_officer']);

/** A role to give: a built-in one by name, or a custom one by id. */
export const roleAssignmentSchema = z.union([
  z.strictObject({ role: builtInRole }),
  z.strictObject({ customRoleId: uuidSchema }),
]);

export const inviteUserSchema = z.strictObject({
  email: z.string().trim().min(3).max(320).regex(/^[^\s@]+@[^\s@]+$/, 'must be an e-mail address'),
  displayName: z.string().trim().min(1).max(200),
  role: builtInRole.optional(),
  customRoleId: uuidSchema.optional(),
});

export const updateUserSchema = z.strictObject({
  displayName: z.string().trim().min(1).max(200).optional(),
  role: builtInRole.optional(),
  customRoleId: uuidSchema.optional(),
});
