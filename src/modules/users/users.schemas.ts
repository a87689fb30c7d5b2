import { z } from 'zod';
import { uuidSchema } from '../../server/schemas.ts';

export const userSchema = z.object({
  id: z.string(),
  email: z.string(),
  displayName: z.string(),
  role: z.enum(['owner', 'admin', 'supervisor', 'agent', 'auditor', 'privacy_officer']),
  status: z.enum(['invited', 'active', 'disabled']),
  createdAt: z.string(),
});

export const userParamsSchema = z.strictObject({ userId: uuidSchema });

export const listUsersQuerySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  after: uuidSchema.optional(),
});

export const userListSchema = z.object({ items: z.array(userSchema), nextAfter: z.string().nullable() });
