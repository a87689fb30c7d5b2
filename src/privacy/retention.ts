import { sql } from '../db/kysely.ts';
import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import type { RetentionAction, RetentionCategory } from '../db/schema.ts';
import { AppError } from '../server/errors.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { eraseSubject, type ErasureLedgerMirror } from './erasure.ts';
import { contactHeld, rowHeld } from './legal-holds.ts';
import { ownerIsGone } from '../operations/node-presence.ts';

/**
 * Retention (Art. 5(1)(e)): per data category a period and an action, applied by a sweep that
 * runs on one node at a time per tenant, in batches (each its own transaction, so a sweep of
 * millions never holds locks for long and a node that dies mid-sweep loses nothing), skipping
 * whatever a legal hold keeps. A dry run counts what is due and what is held, and changes nothing.
 * Every sweep is recorded with its counts, and audited.
 */

export const RETENTION_CATEGORIES = ['contacts_inactive', 'interactions', 'notes', 'recordings', 'audit_events', 'import_rejects', 'exports'] as const satisfies readonly RetentionCategory[];

/**
 * The shortest periods the product allows. The audit ledger is evidence of the controls
 * themselves: kept at least a year (SOC 2 examines a period of up to twelve months; PCI DSS
 * 10.5.1 asks for twelve months of audit history), and a shorter policy is refused.
 */
export const MINIMUM_RETAIN_DAYS: Partial<Record<RetentionCategory, number>> = { audit_events: 365 };

/** Categories whose rows have no anonymous remainder: their one action is deletion. */
const DELETE_ONLY: ReadonlySet<RetentionCategory> = new Set(['notes', 'recordings', 'audit_events', 'import_rejects', 'exports']);
/**
 * Contacts are only ever erased (the tombstone keeps lists and call statistics adding up, and the
 * consent and objection records stay); deleting the row would take the calls and that evidence
 * with it.
 */
const ANONYMISE_ONLY: ReadonlySet<RetentionCategory> = new Set(['contacts_inactive']);

export function checkPolicy(category: RetentionCategory, retainDays: number, action: RetentionAction): void {
  const minimum = MINIMUM_RETAIN_DAYS[category];
  if (minimum !== undefined && retainDays < minimum) {
    throw new AppError('retention_below_minimum', `${category} must be kept at least ${minimum} days.`, [{ path: 'body/retainDays', message: `at least ${minimum}` }]);
  }
  if (action === 'anonymise' && DELETE_ONLY.has(category)) {
    throw new AppError('validation_failed', `${category} can only be deleted: nothing anonymous remains of it.`, [{ path: 'body/action', message: 'must be delete' }]);
  }
  if (action === 'delete' && ANONYMISE_ONLY.has(category)) {
    throw new AppError('validation_failed', `${category} are erased (anonymised), never deleted: their calls and consent records stay as anonymous evidence.`, [{ path: 'body/action', message: 'must be anonymise' }]);
  }
}

export type CategoryReport = { action: RetentionAction; cutoff: string; due: number; done: number; held: number; note?: string };
export type SweepReport = Partial<Record<RetentionCategory, CategoryReport>>;

const BATCH = 10_000;
const CONTACT_BATCH = 200;

/** The hold conditions of each category; plain `false` when no hold is in force (most sweeps). */
function holdConditions(anyHold: boolean) {
  const none = sql<boolean>`false`;
  return {
    interactionHeld: anyHold ? rowHeld(sql.ref('a.campaign_id'), sql.ref('a.contact_id')) : none,
    recordingHeld: anyHold ? rowHeld(sql.ref('r.campaign_id'), sql.ref('r.contact_id')) : none,
    inactiveHeld: anyHold ? contactHeld(sql.ref('c.id')) : none,
  };
}

/** Contacts with no change, call or consent event since the cut-off, and no call in progress. */
const inactiveContact = (cutoff: Date) => sql<boolean>`c.status <> 'erased' AND c.updated_at < ${cutoff}
  AND NOT EXISTS (SELECT 1 FROM dial_attempts a WHERE a.contact_id = c.id AND (a.reserved_at >= ${cutoff} OR a.state IN ('reserved', 'dialing', 'answered', 'connected')))
  AND NOT EXISTS (SELECT 1 FROM contact_activity v WHERE v.contact_id = c.id AND v.last_at >= ${cutoff})
  AND NOT EXISTS (SELECT 1 FROM consent_events e WHERE e.contact_id = c.id AND e.recorded_at >= ${cutoff})`;

/**
 * Before calls lose their link to the person, the person's last call is kept (as a date, per
 * contact): an anonymised call still counts as activity when deciding who is inactive.
 */
const keepActivity = (ids: string[], since: Date) => sql`
  INSERT INTO contact_activity (contact_id, last_at)
  SELECT contact_id, max(coalesce(ended_at, reserved_at)) FROM dial_attempts
   WHERE id = ANY (${ids}::uuid[]) AND contact_id IS NOT NULL AND coalesce(ended_at, reserved_at) >= ${since}
   GROUP BY contact_id
  ON CONFLICT (tenant_id, contact_id) DO UPDATE SET last_at = greatest(contact_activity.last_at, excluded.last_at)`;

async function count(trx: TenantTransaction, query: ReturnType<typeof sql<{ n: string }>>): Promise<number> {
  const result = await query.execute(trx);
  return Number(result.rows[0]?.n ?? 0);
}

type Sweeper = {
  tenantDb: TenantDb;
  crypto: ContactsCrypto;
  mirror?: ErasureLedgerMirror | undefined;
  /** Called between batches: keeps the sweep's lease alive, and stops it when it returns false. */
  heartbeat: () => Promise<boolean>;
  /** Whether any legal hold is in force (if none, no row is checked against holds). */
  anyHold: boolean;
  /**
   * The contacts policy's cut-off: calls anonymised that are newer than it still make their
   * contact active, so their date is kept. Undefined without a contacts policy (nothing to keep).
   */
  activitySince: Date | undefined;
  /** Prunes the audit ledger up to a cut-off through the owner-signed procedure; only where the owner's rights are (the CLI). */
  pruneAudit?: ((cutoff: Date) => Promise<number>) | undefined;
};

/** Counts (and, unless dry, applies) one category. */
async function sweepCategory(sweeper: Sweeper, category: RetentionCategory, retainDays: number, action: RetentionAction, dryRun: boolean, now: Date): Promise<CategoryReport> {
  const cutoff = new Date(now.getTime() - retainDays * 86_400_000);
  const report: CategoryReport = { action, cutoff: cutoff.toISOString(), due: 0, done: 0, held: 0 };
  const { tenantDb } = sweeper;
  const { interactionHeld, recordingHeld, inactiveHeld } = holdConditions(sweeper.anyHold);
  const read = <T>(work: (trx: TenantTransaction) => Promise<T>) => tenantDb.read(work);
  /** Runs `batch` until it acts on fewer rows than asked (or the lease is lost). */
  const repeat = async (batch: (trx: TenantTransaction) => Promise<number>, size: number) => {
    for (;;) {
      const acted = await tenantDb.transaction(batch);
      report.done += acted;
      if (acted < size || !(await sweeper.heartbeat())) return;
    }
  };

  switch (category) {
    case 'interactions': {
      // Every ended or skipped call has ended_at: the partial index on it finds the expired ones.
      const expired = sql`a.contact_id IS NOT NULL AND a.ended_at < ${cutoff}`;
      const [dueOut, heldOut, dueIn] = await read(async (trx) => [
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM dial_attempts a WHERE ${expired}`),
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM dial_attempts a WHERE ${expired} AND ${interactionHeld}`),
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM inbound_calls i WHERE i.caller_index IS NOT NULL AND i.ended_at < ${cutoff}`),
      ]);
      report.due = dueOut + dueIn;
      report.held = heldOut;
      if (dryRun) return report;
      const pick = sql`SELECT a.id FROM dial_attempts a WHERE ${expired} AND NOT ${interactionHeld} LIMIT ${BATCH} FOR UPDATE OF a SKIP LOCKED`;
      const since = sweeper.activitySince;
      await repeat(async (trx) => {
        if (since === undefined) {
          // One statement picks and changes the batch; its recordings go by the ids it returns.
          const changed = action === 'delete'
            ? await sql<{ id: string }>`DELETE FROM dial_attempts WHERE id IN (${pick}) RETURNING id`.execute(trx)
            : await sql<{ id: string }>`UPDATE dial_attempts SET contact_id = NULL, notes_ciphertext = NULL, raw_cause = NULL, phone_position = NULL, anonymised_at = ${now} WHERE id IN (${pick}) RETURNING id`.execute(trx);
          const ids = changed.rows.map((row) => row.id);
          if (action === 'anonymise' && ids.length > 0) await sql`DELETE FROM recordings WHERE attempt_id = ANY (${ids}::uuid[])`.execute(trx);
          return ids.length;
        }
        const ids = (await sql<{ id: string }>`${pick}`.execute(trx)).rows.map((row) => row.id);
        if (ids.length === 0) return 0;
        await keepActivity(ids, since).execute(trx);
        if (action === 'delete') {
          await sql`DELETE FROM dial_attempts WHERE id = ANY (${ids}::uuid[])`.execute(trx);
        } else {
          // Kept for the statistics, with nothing left that points to the person.
          await sql`DELETE FROM recordings WHERE attempt_id = ANY (${ids}::uuid[])`.execute(trx);
          await sql`UPDATE dial_attempts SET contact_id = NULL, notes_ciphertext = NULL, raw_cause = NULL, phone_position = NULL, anonymised_at = ${now} WHERE id = ANY (${ids}::uuid[])`.execute(trx);
        }
        return ids.length;
      }, BATCH);
      // Inbound calls: the caller is only a blind index; no legal hold names an inbound caller.
      const inbound = action === 'delete'
        ? (trx: TenantTransaction) => sql`DELETE FROM inbound_calls WHERE id IN (SELECT id FROM inbound_calls WHERE caller_index IS NOT NULL AND ended_at < ${cutoff} LIMIT ${BATCH})`.execute(trx)
        : (trx: TenantTransaction) => sql`UPDATE inbound_calls SET caller_index = NULL, anonymised_at = ${now} WHERE id IN (SELECT id FROM inbound_calls WHERE caller_index IS NOT NULL AND ended_at < ${cutoff} LIMIT ${BATCH})`.execute(trx);
      await repeat(async (trx) => Number((await inbound(trx)).numAffectedRows ?? 0), BATCH);
      return report;
    }
    case 'notes': {
      const where = sql`a.notes_ciphertext IS NOT NULL AND coalesce(a.disposed_at, a.ended_at, a.reserved_at) < ${cutoff}`;
      const [due, held] = await read(async (trx) => [
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM dial_attempts a WHERE ${where}`),
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM dial_attempts a WHERE ${where} AND ${interactionHeld}`),
      ]);
      Object.assign(report, { due, held });
      if (!dryRun) await repeat(async (trx) => Number((await sql`UPDATE dial_attempts SET notes_ciphertext = NULL WHERE id IN (SELECT a.id FROM dial_attempts a WHERE ${where} AND NOT ${interactionHeld} LIMIT ${BATCH})`.execute(trx)).numAffectedRows ?? 0), BATCH);
      return report;
    }
    case 'recordings': {
      const where = sql`r.started_at < ${cutoff} AND r.state IN ('saved', 'failed')`;
      const [due, held] = await read(async (trx) => [
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM recordings r WHERE ${where}`),
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM recordings r WHERE ${where} AND ${recordingHeld}`),
      ]);
      Object.assign(report, { due, held });
      if (!dryRun) await repeat(async (trx) => Number((await sql`DELETE FROM recordings WHERE attempt_id IN (SELECT r.attempt_id FROM recordings r WHERE ${where} AND NOT ${recordingHeld} LIMIT ${BATCH})`.execute(trx)).numAffectedRows ?? 0), BATCH);
      return report;
    }
    case 'contacts_inactive': {
      const [due, held] = await read(async (trx) => [
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM contacts c WHERE ${inactiveContact(cutoff)}`),
        await count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM contacts c WHERE ${inactiveContact(cutoff)} AND ${inactiveHeld}`),
      ]);
      Object.assign(report, { due, held });
      if (dryRun) return report;
      // Each contact is erased like on request (crypto-shredding, in the erasure ledger). One that
      // a hold or a call reached since it was picked is skipped and counted as held.
      const skipped: string[] = [];
      await repeat(async (trx) => {
        const ids = (await sql<{ id: string }>`SELECT c.id FROM contacts c WHERE ${inactiveContact(cutoff)} AND NOT ${inactiveHeld} AND c.id <> ALL (${skipped}::uuid[]) ORDER BY c.id LIMIT ${CONTACT_BATCH} FOR NO KEY UPDATE OF c SKIP LOCKED`.execute(trx)).rows.map((row) => row.id);
        let erased = 0;
        for (const id of ids) {
          try {
            await eraseSubject(trx, sweeper.crypto, id, { reason: 'retention', mirror: sweeper.mirror, now });
            erased += 1;
          } catch (error) {
            if (!(error instanceof AppError) || (error.code !== 'legal_hold' && error.code !== 'subject_in_call')) throw error;
            skipped.push(id);
            report.held += 1;
          }
        }
        report.done += erased - ids.length; // `repeat` adds the batch size; count only the erased
        return ids.length;
      }, CONTACT_BATCH);
      return report;
    }
    case 'import_rejects': {
      const where = sql`r.import_id IN (SELECT i.id FROM contact_imports i WHERE i.finished_at < ${cutoff})`;
      report.due = await read((trx) => count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM contact_import_rejects r WHERE ${where}`));
      if (!dryRun) await repeat(async (trx) => Number((await sql`DELETE FROM contact_import_rejects WHERE (import_id, row_number) IN (SELECT r.import_id, r.row_number FROM contact_import_rejects r WHERE ${where} LIMIT ${BATCH})`.execute(trx)).numAffectedRows ?? 0), BATCH);
      return report;
    }
    case 'exports': {
      const where = sql`e.bundle_sealed IS NOT NULL AND e.created_at < ${cutoff}`;
      report.due = await read((trx) => count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM privacy_exports e WHERE ${where}`));
      if (!dryRun) await repeat(async (trx) => Number((await sql`UPDATE privacy_exports SET bundle_sealed = NULL WHERE id IN (SELECT e.id FROM privacy_exports e WHERE ${where} LIMIT ${BATCH})`.execute(trx)).numAffectedRows ?? 0), BATCH);
      return report;
    }
    case 'audit_events': {
      // The ledger is pruned only by its owner-signed procedure, which keeps every proof
      // verifiable: `ringvakt privacy sweep` (with the owner's rights) applies it; the server's
      // sweep, which never holds those rights, reports what is due.
      report.due = await read((trx) => count(trx, sql<{ n: string }>`SELECT count(*) AS n FROM audit_events WHERE occurred_at < ${cutoff}`));
      if (!dryRun && sweeper.pruneAudit) report.done = await sweeper.pruneAudit(cutoff);
      else report.note = 'pruned by `ringvakt privacy sweep` or `ringvakt audit prune`, which sign a retention record';
      return report;
    }
  }
}

export type SweepOptions = {
  dryRun: boolean;
  requestedBy: string;
  /** The node running the sweep: its presence lock (src/operations/node-presence.ts) is the sweep's liveness. */
  node: string;
  now?: Date;
  mirror?: ErasureLedgerMirror | undefined;
  pruneAudit?: ((cutoff: Date) => Promise<number>) | undefined;
  /** Asked between batches: true when the node is stopping — the sweep is then given up, for another node to resume at once. */
  stopping?: (() => boolean) | undefined;
};

/**
 * A sweep whose heartbeat is older than this is taken to have died with its node (the fallback
 * for a node that is alive but frozen; a dead node's sweep is found at once by its presence lock).
 */
export const SWEEP_STALE_MS = 5 * 60_000;

/**
 * Gives up the tenant's running sweep if its node is gone — its presence lock is free, judged
 * only by a node whose own presence has settled — or its heartbeat is stale. Recorded and audited
 * with the node that found it; returns whether a sweep was given up.
 */
export async function abandonLostSweep(tenantDb: TenantDb, options: { node: string; presenceSettled: boolean }): Promise<boolean> {
  return tenantDb.transaction(async (trx) => {
    const lost = await trx
      .updateTable('retention_sweeps')
      .set({ state: 'abandoned', finished_at: new Date(), error_code: 'node_lost' })
      .where('state', '=', 'running')
      .where((eb) => eb.or([eb('heartbeat_at', '<', new Date(Date.now() - SWEEP_STALE_MS)), eb.and([sql<boolean>`${options.presenceSettled}`, ownerIsGone(sql.ref('node'))])]))
      .returning(['id', 'node', 'dry_run'])
      .executeTakeFirst();
    if (!lost) return false;
    await recordAuditEvent(trx, {
      action: 'privacy.retention_sweep',
      outcome: 'failed',
      actor: { type: 'system', id: `retention:${options.node}`.slice(0, 200) },
      target: { type: 'retention_sweep', id: lost.id },
      details: { error: 'node_lost', dryRun: lost.dry_run, previousNode: lost.node.slice(0, 100) },
    });
    return true;
  });
}

/**
 * Starts a sweep of one tenant: returns its id, or undefined when another node's sweep is
 * running (one at a time per tenant). `run` then does the work and records the report.
 */
export async function beginSweep(tenantDb: TenantDb, options: SweepOptions): Promise<string | undefined> {
  await abandonLostSweep(tenantDb, { node: options.node, presenceSettled: false });
  return tenantDb.transaction(async (trx) => {
    const row = await trx
      .insertInto('retention_sweeps')
      .values({ dry_run: options.dryRun, node: options.node, requested_by: options.requestedBy })
      .onConflict((conflict) => conflict.column('tenant_id').where(sql<boolean>`state = 'running'`).doNothing())
      .returning('id')
      .executeTakeFirst();
    return row?.id;
  });
}

export async function runSweep(tenantDb: TenantDb, crypto: ContactsCrypto, sweepId: string, options: SweepOptions): Promise<SweepReport> {
  const now = options.now ?? new Date();
  const report: SweepReport = {};
  const heartbeat = async () => {
    if (options.stopping?.()) throw new Error('sweep_stopped');
    const alive = await tenantDb.transaction((trx) => trx.updateTable('retention_sweeps').set({ heartbeat_at: new Date(), report: JSON.stringify(report) }).where('id', '=', sweepId).where('state', '=', 'running').returning('id').executeTakeFirst());
    return alive !== undefined;
  };
  try {
    const policies = await tenantDb.read((trx) => trx.selectFrom('retention_policies').select(['category', 'retain_days', 'action']).execute());
    // Export bundles past their link's expiry are of no use to anyone: dropped in every sweep.
    if (!options.dryRun) {
      await tenantDb.transaction((trx) => trx.updateTable('privacy_exports').set({ bundle_sealed: null }).where('bundle_sealed', 'is not', null).where('expires_at', '<', now).execute());
    }
    const anyHold = (await tenantDb.read((trx) => trx.selectFrom('legal_holds').select('id').where('released_at', 'is', null).limit(1).execute())).length > 0;
    const contactsPolicy = policies.find((entry) => entry.category === 'contacts_inactive');
    const activitySince = contactsPolicy ? new Date(now.getTime() - contactsPolicy.retain_days * 86_400_000) : undefined;
    for (const category of RETENTION_CATEGORIES) {
      const policy = policies.find((entry) => entry.category === category);
      if (!policy) continue;
      report[category] = await sweepCategory({ tenantDb, crypto, mirror: options.mirror, heartbeat, anyHold, activitySince, pruneAudit: options.pruneAudit }, category, policy.retain_days, policy.action, options.dryRun, now);
      if (!(await heartbeat())) throw new Error('sweep_lease_lost');
    }
    await tenantDb.transaction(async (trx) => {
      const finished = await trx.updateTable('retention_sweeps').set({ state: 'done', finished_at: new Date(), report: JSON.stringify(report) }).where('id', '=', sweepId).where('state', '=', 'running').returning('id').executeTakeFirst();
      if (!finished) throw new Error('sweep_lease_lost');
      await recordAuditEvent(trx, { action: 'privacy.retention_sweep', outcome: 'success', actor: { type: 'system', id: `retention:${options.node}` }, target: { type: 'retention_sweep', id: sweepId }, details: { dryRun: options.dryRun, requestedBy: options.requestedBy, ...countsOf(report) } });
    });
    return report;
  } catch (error) {
    const message = error instanceof Error ? error.message : '';
    // A stopping node gives its sweep up; another node resumes it at once (each batch committed stays done).
    const code = message === 'sweep_lease_lost' ? 'lease_lost' : message === 'sweep_stopped' ? 'node_stopped' : 'sweep_failed';
    await tenantDb.transaction(async (trx) => {
      await trx.updateTable('retention_sweeps').set({ state: code === 'node_stopped' ? 'abandoned' : 'failed', finished_at: new Date(), error_code: code, report: JSON.stringify(report) }).where('id', '=', sweepId).where('state', '=', 'running').execute();
      await recordAuditEvent(trx, { action: 'privacy.retention_sweep', outcome: 'failed', actor: { type: 'system', id: `retention:${options.node}` }, target: { type: 'retention_sweep', id: sweepId }, details: { dryRun: options.dryRun, error: code, ...countsOf(report) } });
    });
    throw error;
  }
}

/** Flat counts for the audit event: `<category>Due`, `<category>Done`, `<category>Held`. */
function countsOf(report: SweepReport): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const [category, entry] of Object.entries(report)) {
    counts[`${category}Due`] = entry.due;
    counts[`${category}Done`] = entry.done;
    counts[`${category}Held`] = entry.held;
  }
  return counts;
}
