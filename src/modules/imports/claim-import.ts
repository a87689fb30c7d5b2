import { randomUUID } from 'node:crypto';
import { sql } from '../../db/kysely.ts';
import type { Logger } from '../../logger.ts';
import type { TenantDb } from '../../db/tenant-db.ts';
import type { SystemDb } from '../../db/system-db.ts';
import { LEASE_SECONDS } from './load-import-job.ts';
import { ownerIsGone, type NodePresence } from '../../operations/node-presence.ts';

/**
 * Which worker runs which import: an import is claimed with a lease (runImport, import-worker.ts,
 * then runs it), failed when it cannot go on, and found by every server's background worker.
 */

/**
 * How a run of an import ended: finished, failed, another worker holds it now, asked to stop, or
 * interrupted by a database restart (handed back, to be resumed from what the database kept).
 */
export type ImportOutcome = 'done' | 'failed' | 'lease_lost' | 'stopped' | 'interrupted';

/** Runs of one import the database interrupts in a row, each begun at the same cursor, before the import fails. */
const MOST_INTERRUPTIONS = 3;

/**
 * Claims a queued import, or one whose worker's lease ran out — or whose worker is gone: its
 * node's presence lock is free (src/operations/node-presence.ts), judged only by a node whose own
 * presence has settled — so a dead node's import goes on elsewhere within seconds, not after the
 * lease — or whose lease `owner` holds itself: an owner runs one import at a time, so its run of
 * it has ended (one the database interrupted before it could hand the import back). `importId`
 * narrows it to one.
 */
export async function claimImport(tenantDb: TenantDb, owner: string, importId?: string, options: { presenceSettled?: boolean } = {}): Promise<string | undefined> {
  return tenantDb.transaction(async (trx) => {
    const claimed = await sql<{ id: string }>`
      UPDATE contact_imports SET state = 'running', lease_owner = ${owner}, lease_until = now() + make_interval(secs => ${LEASE_SECONDS}),
             started_at = coalesce(started_at, now()), updated_at = now()
       WHERE id = (SELECT id FROM contact_imports
                    WHERE state IN ('queued', 'running')
                      AND (lease_until IS NULL OR lease_until < now() OR lease_owner = ${owner} OR (${options.presenceSettled === true} AND ${ownerIsGone(sql.ref('lease_owner'))}))
                      ${importId ? sql`AND id = ${importId}` : sql``}
                    ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING id`.execute(trx);
    return claimed.rows[0]?.id;
  });
}

/** Why an import ended failed: the code and sentence its owner reads (`GET /api/v1/contact-imports/{id}`). */
const FAILURES = {
  internal: { code: 'internal_error', detail: 'The import stopped on an internal error; the rows before it are imported.' },
  // Ended for good (not "try again later"): the file is gone, a new import brings the rest.
  interrupted: {
    code: 'import_interrupted',
    detail: 'The database was interrupted three times at the same row; the rows before it are imported. Start a new import of the same file for the rest: the rows already imported are found as existing contacts.',
  },
} as const;

/**
 * Ends an import that could not go on, if `owner` still holds it: the rows committed so far stay
 * imported; the stored file is deleted (the rows not imported are not kept anywhere).
 */
export async function failImport(tenantDb: TenantDb, importId: string, owner: string, why: keyof typeof FAILURES = 'internal'): Promise<void> {
  const { code, detail } = FAILURES[why];
  await tenantDb.transaction(async (trx) => {
    const failed = await trx
      .updateTable('contact_imports')
      .set({ state: 'failed', error_code: code, error_detail: detail, lease_owner: null, lease_until: null, finished_at: new Date() })
      .where('id', '=', importId)
      .where('lease_owner', '=', owner)
      .executeTakeFirst();
    if (Number(failed.numUpdatedRows) === 1) await trx.deleteFrom('contact_import_chunks').where('import_id', '=', importId).execute();
  });
}

/** The background worker of `ringvakt serve`: finds tenants with pending imports, runs them one by one. */
export function importWorkerTick(
  systemDb: SystemDb,
  run: (tenantDb: TenantDb, importId: string, owner: string, hooks: { logger: Logger; stop: () => boolean }) => Promise<ImportOutcome>,
  logger: Logger,
  stop: () => boolean,
  node: { owner: string; presence?: Pick<NodePresence, 'settled'> | undefined } = { owner: `worker:${randomUUID()}` },
): () => Promise<void> {
  const { owner } = node;
  // Imports whose runs the database interrupted, with the cursor the last such run began at and how
  // many runs in a row it interrupted there (read when each run's claim succeeded: the database answered).
  const interruptions = new Map<string, { rowsDone: number; times: number }>();
  const rowsDone = async (tenantDb: TenantDb, importId: string) =>
    Number((await tenantDb.read((trx) => trx.selectFrom('contact_imports').select('rows_done').where('id', '=', importId).executeTakeFirstOrThrow())).rows_done);
  return async () => {
    for (const tenantId of await systemDb.tenantsWithPendingImports()) {
      const tenantDb = systemDb.inTenant(tenantId);
      // Each import runs once per tick at most (one that ended without leaving the claimable ones waits for the next).
      const ran = new Set<string>();
      for (;;) {
        if (stop()) return;
        const importId = await claimImport(tenantDb, owner, undefined, { presenceSettled: node.presence?.settled() === true });
        if (!importId || ran.has(importId)) break;
        ran.add(importId);
        const start = await rowsDone(tenantDb, importId);
        const before = interruptions.get(importId);
        if (before && before.rowsDone === start && before.times >= MOST_INTERRUPTIONS) {
          // Interrupted again and again without a row more (a statement that brings the database
          // down, say): failed, rather than retried for ever.
          logger.error({ importId, times: before.times }, 'contact import interrupted again and again without progress; failed');
          await failImport(tenantDb, importId, owner, 'interrupted');
          interruptions.delete(importId);
          continue;
        }
        const outcome = await run(tenantDb, importId, owner, { logger, stop });
        logger.info({ importId, outcome }, 'contact import run ended');
        if (outcome === 'stopped') return;
        if (outcome !== 'interrupted') {
          interruptions.delete(importId);
          continue;
        }
        interruptions.set(importId, { rowsDone: start, times: before?.rowsDone === start ? before.times + 1 : 1 });
        // Resumed by a later tick, from the cursor the database kept; other tenants' imports go on meanwhile.
        break;
      }
    }
  };
}
