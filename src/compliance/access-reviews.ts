import { z } from '../zod.ts';
import { sql } from '../db/kysely.ts';
import type { TenantTransaction } from '../db/tenant-db.ts';
import { recordAuditEvent, type AuditEvent } from '../audit/audit-event.ts';
import { loadSecurityPolicy } from '../modules/access/security-policy.ts';
import { loadUserAccess } from '../modules/auth/sessions.ts';
import { assertMayManage, endUserAccess, isLastActiveOwner } from '../modules/users/users.service.ts';
import { principalOf } from '../server/access-control.ts';
import { AppError } from '../server/errors.ts';
import { actorLabel, requestAudit } from '../server/request-audit.ts';
import { problemResponses, uuidSchema } from '../server/schemas.ts';
import type { App } from '../server/types.ts';

/**
 * Access reviews: a campaign in which managers confirm or revoke each person's access. Opening
 * one takes in every active user with the role and permissions they hold then; each is decided
 * by a manager other than themselves (and one who may manage them); revoking disables the account
 * and ends its sessions and tokens at once. A review completes only when every user is decided,
 * and the completed review is the evidence (`access.review_recent` in the compliance center).
 */

const manage = { access: 'users:manage', stepUp: true } as const;
const itemSchema = z.object({ userId: z.string(), role: z.string(), permissions: z.array(z.string()), decision: z.enum(['pending', 'keep', 'revoke']), decidedBy: z.string().nullable(), decidedAt: z.string().nullable(), note: z.string().nullable() });
const reviewSchema = z.object({ id: z.string(), title: z.string(), state: z.enum(['open', 'completed']), dueAt: z.string(), createdBy: z.string(), createdAt: z.string(), completedAt: z.string().nullable(), completedBy: z.string().nullable(), pending: z.number(), kept: z.number(), revoked: z.number() });
type ReviewRow = { id: string; title: string; state: 'open' | 'completed'; due_at: Date; created_by: string; created_at: Date; completed_at: Date | null; completed_by: string | null };
const presentReview = (row: ReviewRow, counts: { pending: number; kept: number; revoked: number }) => ({ id: row.id, title: row.title, state: row.state, dueAt: row.due_at.toISOString(), createdBy: row.created_by, createdAt: row.created_at.toISOString(), completedAt: row.completed_at?.toISOString() ?? null, completedBy: row.completed_by, ...counts });

/** Active users other than this one who may manage users (and so review access). */
async function managersOtherThan(trx: TenantTransaction, userId: string): Promise<number> {
  const policy = await loadSecurityPolicy(trx);
  const users = await trx.selectFrom('users').select('id').where('status', '=', 'active').where('id', '<>', userId).where('role', 'in', ['owner', 'admin', 'custom']).execute();
  let count = 0;
  for (const user of users) if ((await loadUserAccess(trx, user.id, policy))?.permissions.includes('users:manage')) count += 1;
  return count;
}

/**
 * Opens a review of every active user (with the role and permissions each holds now), unless one
 * is open already ('open') or nobody is active to review ('nobody'). One at a time per tenant, under an advisory lock (a
 * unique index holds it too when two are opened at once).
 */
export async function openAccessReview(trx: TenantTransaction, options: { title: string; dueInDays: number; createdBy: string; audit: Pick<AuditEvent, 'actor'> & Partial<AuditEvent> }) {
  await sql`SELECT pg_advisory_xact_lock(hashtext(${`${trx.tenantId}:access_reviews`}))`.execute(trx);
  const open = await trx.selectFrom('access_reviews').select('id').where('state', '=', 'open').executeTakeFirst();
  if (open) return 'open' as const;
  // A review of nobody proves nothing (a new organisation whose owner has not signed in yet).
  const anyone = await trx.selectFrom('users').select('id').where('status', '=', 'active').limit(1).executeTakeFirst();
  if (!anyone) return 'nobody' as const;
  const review = await trx
    .insertInto('access_reviews')
    .values({ title: options.title, due_at: new Date(Date.now() + options.dueInDays * 86_400_000), created_by: options.createdBy })
    .returningAll()
    .executeTakeFirstOrThrow();
  const policy = await loadSecurityPolicy(trx);
  const users = await trx.selectFrom('users').select(['id']).where('status', '=', 'active').orderBy('id').limit(100_000).execute();
  for (const user of users) {
    const access = await loadUserAccess(trx, user.id, policy);
    if (!access) continue;
    await trx.insertInto('access_review_items').values({ review_id: review.id, user_id: user.id, role: access.role, permissions: access.permissions }).execute();
  }
  await recordAuditEvent(trx, { ...options.audit, action: 'compliance.access_review', outcome: 'success', target: { type: 'access_review', id: review.id }, details: { step: 'opened', users: users.length } });
  return review;
}

/** The first day of the quarter `now` is in (UTC), and its name ("Q1 2027"). */
export function quarterOf(now: Date): { start: Date; name: string } {
  const quarter = Math.floor(now.getUTCMonth() / 3);
  return { start: new Date(Date.UTC(now.getUTCFullYear(), quarter * 3, 1)), name: `Q${quarter + 1} ${now.getUTCFullYear()}` };
}

/**
 * The periodic campaign: at the start of each quarter, a review of every user is opened by the
 * system (due in 14 days) unless one was opened this quarter already. Its managers see it under
 * Compliance → Access reviews; the check `access.review_recent` fails until one is completed.
 */
export async function openQuarterlyReview(trx: TenantTransaction, now = new Date()): Promise<string | undefined> {
  const { start, name } = quarterOf(now);
  const already = await trx.selectFrom('access_reviews').select('id').where((eb) => eb.or([eb('created_at', '>=', start), eb('state', '=', 'open')])).executeTakeFirst();
  if (already) return undefined;
  const review = await openAccessReview(trx, { title: `${name} access review`, dueInDays: 14, createdBy: 'system:compliance', audit: { actor: { type: 'system', id: 'compliance' } } });
  return typeof review === 'object' ? review.id : undefined;
}

export async function accessReviewRoutes(app: App): Promise<void> {
  const params = z.strictObject({ reviewId: uuidSchema });
  const countsOf = async (trx: TenantTransaction, reviewId: string) => {
    const rows = await trx.selectFrom('access_review_items').select(['decision', (eb) => eb.fn.countAll<string>().as('n')]).where('review_id', '=', reviewId).groupBy('decision').execute();
    const count = (decision: string) => Number(rows.find((row) => row.decision === decision)?.n ?? 0);
    return { pending: count('pending'), kept: count('keep'), revoked: count('revoke') };
  };

  app.post('/api/v1/access-reviews', { config: manage, schema: { summary: 'Open an access review of every active user', tags: ['compliance'], body: z.strictObject({ title: z.string().trim().min(1).max(200), dueInDays: z.number().int().min(1).max(90).default(14) }), response: { 201: reviewSchema, ...problemResponses(400, 401, 403, 409) } } }, async (request, reply) => {
    const row = await request.tenantDb.transaction(async (trx) => {
      const review = await openAccessReview(trx, { title: request.body.title, dueInDays: request.body.dueInDays, createdBy: actorLabel(request), audit: requestAudit(request) });
      if (review === 'open') throw new AppError('conflict', 'An access review is open already: complete it first.');
      if (review === 'nobody') throw new AppError('conflict', 'Nobody is active to review yet.');
      return review;
    });
    return reply.code(201).send(presentReview(row, await request.tenantDb.read((trx) => countsOf(trx, row.id))));
  });

  app.get('/api/v1/access-reviews', { config: { access: 'users:read' }, schema: { summary: 'Access reviews, newest first', tags: ['compliance'], response: { 200: z.object({ items: z.array(reviewSchema) }), ...problemResponses(401, 403) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const rows = await trx.selectFrom('access_reviews').selectAll().orderBy('created_at', 'desc').limit(100).execute();
      return { items: await Promise.all(rows.map(async (row) => presentReview(row, await countsOf(trx, row.id)))) };
    }),
  );

  app.get('/api/v1/access-reviews/:reviewId', { config: { access: 'users:read' }, schema: { summary: 'One access review with every user’s decision', tags: ['compliance'], params, response: { 200: reviewSchema.extend({ items: z.array(itemSchema) }), ...problemResponses(400, 401, 403, 404) } } }, async (request) =>
    request.tenantDb.read(async (trx) => {
      const row = await trx.selectFrom('access_reviews').selectAll().where('id', '=', request.params.reviewId).executeTakeFirst();
      if (!row) throw new AppError('not_found');
      const items = await trx.selectFrom('access_review_items').selectAll().where('review_id', '=', row.id).orderBy('user_id').execute();
      return {
        ...presentReview(row, await countsOf(trx, row.id)),
        // Notes are the managers' own words: shown to those who manage users, not to every reader.
        items: items.map((item) => ({ userId: item.user_id, role: item.role, permissions: item.permissions, decision: item.decision, decidedBy: item.decided_by, decidedAt: item.decided_at?.toISOString() ?? null, note: principalOf(request).permissions.has('users:manage') ? item.note : null })),
      };
    }),
  );

  app.post('/api/v1/access-reviews/:reviewId/users/:userId', { config: manage, schema: { summary: 'Keep or revoke one user’s access (revoking disables the account at once)', tags: ['compliance'], params: z.strictObject({ reviewId: uuidSchema, userId: uuidSchema }), body: z.strictObject({ decision: z.enum(['keep', 'revoke']), note: z.string().trim().max(500).optional() }), response: { 200: itemSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const caller = principalOf(request);
      const review = await trx.selectFrom('access_reviews').select(['id', 'state']).where('id', '=', request.params.reviewId).forUpdate().executeTakeFirst();
      if (!review) throw new AppError('not_found');
      if (review.state !== 'open') throw new AppError('invalid_transition', 'The review is completed.');
      const item = await trx.selectFrom('access_review_items').selectAll().where('review_id', '=', review.id).where('user_id', '=', request.params.userId).forUpdate().executeTakeFirst();
      if (!item) throw new AppError('not_found', 'This user is not in the review.');
      if (item.decision !== 'pending') throw new AppError('invalid_transition', `This user's access was decided already (${item.decision}).`);
      const revoking = request.body.decision === 'revoke';
      if (item.user_id === caller.userId) {
        // Nobody reviews their own access — unless nobody else could: the only manager confirms themselves, on the record.
        const others = await managersOtherThan(trx, caller.userId);
        if (others > 0 || revoking) throw new AppError('forbidden', 'Nobody reviews their own access: another manager must.');
      }
      // The owners' lock first, as every other path that disables a user takes it (no deadlock between them).
      if (revoking && (await isLastActiveOwner(trx, item.user_id))) throw new AppError('conflict', 'This is the last active owner.');
      const user = await trx.selectFrom('users').select(['id', 'role', 'status']).where('id', '=', item.user_id).forUpdate().executeTakeFirstOrThrow();
      if (item.user_id !== caller.userId && revoking) {
        // Revoking changes the user: only someone who may manage them. Confirming changes nothing and any other manager may attest it.
        await assertMayManage(trx, caller, user);
      }
      // What they hold now is what was confirmed (their role may have changed since the review opened).
      const current = await loadUserAccess(trx, user.id, await loadSecurityPolicy(trx));
      if (revoking && user.status === 'active') {
        const ended = await endUserAccess(trx, user.id, { disable: true, reason: 'user_disabled' });
        await recordAuditEvent(trx, { ...requestAudit(request), action: 'user.disable', outcome: 'success', target: { type: 'user', id: user.id }, details: { ...ended, accessReview: review.id } });
      }
      const decided = await trx
        .updateTable('access_review_items')
        .set({ decision: request.body.decision, decided_by: actorLabel(request), decided_at: new Date(), note: request.body.note ?? null, role: current?.role ?? item.role, permissions: current?.permissions ?? item.permissions })
        .where('review_id', '=', review.id)
        .where('user_id', '=', user.id)
        .returningAll()
        .executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.access_review', outcome: 'success', target: { type: 'user', id: user.id }, details: { step: 'decided', review: review.id, decision: request.body.decision } });
      return { userId: decided.user_id, role: decided.role, permissions: decided.permissions, decision: decided.decision, decidedBy: decided.decided_by, decidedAt: decided.decided_at?.toISOString() ?? null, note: decided.note };
    }),
  );

  app.post('/api/v1/access-reviews/:reviewId/complete', { config: manage, schema: { summary: 'Complete the review: every user must be decided', tags: ['compliance'], params, response: { 200: reviewSchema, ...problemResponses(400, 401, 403, 404, 409) } } }, async (request) =>
    request.tenantDb.transaction(async (trx) => {
      const review = await trx.selectFrom('access_reviews').selectAll().where('id', '=', request.params.reviewId).forUpdate().executeTakeFirst();
      if (!review) throw new AppError('not_found');
      if (review.state !== 'open') throw new AppError('invalid_transition', 'The review is completed already.');
      const counts = await countsOf(trx, review.id);
      if (counts.pending > 0) throw new AppError('invalid_transition', `${counts.pending} users are not decided yet.`);
      if (counts.kept + counts.revoked === 0) throw new AppError('invalid_transition', 'A review of nobody proves nothing: it cannot be completed.');
      const done = await trx.updateTable('access_reviews').set({ state: 'completed', completed_at: new Date(), completed_by: actorLabel(request) }).where('id', '=', review.id).returningAll().executeTakeFirstOrThrow();
      await recordAuditEvent(trx, { ...requestAudit(request), action: 'compliance.access_review', outcome: 'success', target: { type: 'access_review', id: review.id }, details: { step: 'completed', kept: counts.kept, revoked: counts.revoked } });
      return presentReview(done, counts);
    }),
  );
}
