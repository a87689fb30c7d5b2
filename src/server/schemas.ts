import { z } from '../zod.ts';
import { errorCatalogue, type ErrorCode } from './errors.ts';

/** Shared schema pieces: ids, and the problem+json shape used in every route's responses. */

export const uuidSchema = z
  .string()
  .max(36)
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a lower-case UUID');

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  code: z.enum(Object.keys(errorCatalogue) as [ErrorCode, ...ErrorCode[]]),
  detail: z.string().optional(),
  requestId: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
});

/** Problem responses a route may give, for the OpenAPI document. */
export function problemResponses<const S extends readonly number[]>(...statuses: S) {
  return Object.fromEntries(
    statuses.map((status) => [status, problemSchema.describe('RFC 9457 problem details')]),
  ) as Record<S[number], typeof problemSchema>;
}
