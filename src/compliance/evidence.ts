import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from '../db/kysely.ts';
import type { TenantDb, TenantTransaction } from '../db/tenant-db.ts';
import { recordAuditEvent, type AuditEvent } from '../audit/audit-event.ts';
import { CHECKS, type CheckResult } from './checks.ts';
import { loadCatalogue } from './catalogue.ts';
import type { CheckContext } from './check-support.ts';

/** The product version that measured (from the installed package, however the server was started): part of every piece of evidence. */
export const MEASURED_BY = `ringvakt ${(JSON.parse(readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8')) as { version: string }).version}`;

export type EvidenceRun = { id: string; startedAt: Date; finishedAt: Date; catalogueVersion: string; digest: string; results: (CheckResult & { checkId: string })[] };

/**
 * One evidence run: every automated check against the tenant's live data, in one read-only
 * snapshot; the results stored together with a SHA-256 digest of their canonical form, and the
 * run recorded in the audit ledger with that digest — so the evidence of any day can be proven
 * unaltered by the ledger's own inclusion proofs. Runs daily from the server, and on demand.
 */
export async function runEvidence(tenantDb: TenantDb, context: CheckContext, trigger: 'schedule' | 'request', actor: AuditEvent['actor'], now = new Date()): Promise<EvidenceRun> {
  const run = await measure(tenantDb, context, trigger, actor, now, false);
  if (!run) throw new Error('evidence run not stored');
  return run;
}

/** The daily run: stored only when no scheduled run is younger than 23 hours (several nodes may try; one stores). */
export async function runScheduledEvidence(tenantDb: TenantDb, context: CheckContext, now = new Date()): Promise<EvidenceRun | undefined> {
  const last = await tenantDb.read((trx) => trx.selectFrom('compliance_runs').select('started_at').where('trigger', '=', 'schedule').orderBy('started_at', 'desc').limit(1).executeTakeFirst());
  if (last && now.getTime() - last.started_at.getTime() < 23 * 3_600_000) return undefined;
  return measure(tenantDb, context, 'schedule', { type: 'system', id: 'compliance' }, now, true);
}

type StoredResult = { checkId: string; status: string; measured: string; population: number; failures: number; sample: readonly string[] };

/**
 * The SHA-256 of a run's canonical form: what started it (the daily schedule or a request: the
 * daily runs judge operating effectiveness), its catalogue version, the version that measured, when,
 * and every result in check-id order with its fields in a fixed order — so the digest of a stored
 * run can be recomputed from the database alone, and compared with the one in the audit ledger.
 */
export function runDigest(run: { trigger: string; catalogueVersion: string; measuredBy: string; at: Date; results: readonly StoredResult[] }): string {
  const results = [...run.results]
    .sort((a, b) => (a.checkId < b.checkId ? -1 : a.checkId > b.checkId ? 1 : 0))
    .map((result) => ({ checkId: result.checkId, status: result.status, measured: result.measured, population: result.population, failures: result.failures, sample: [...result.sample] }));
  return createHash('sha256').update(JSON.stringify({ trigger: run.trigger, catalogueVersion: run.catalogueVersion, measuredBy: run.measuredBy, at: run.at.toISOString(), results })).digest('hex');
}

export type RunVerification = { runId: string; storedSha256: string; recomputedSha256: string; ledgerSha256: string | null; ledgerEventId: string | null; sealed: boolean; holds: boolean; problem: string | null };

/**
 * Checks a stored run: its results recomputed into the digest, compared with the digest stored
 * with the run and with the one its audit event carries in the ledger (whose own integrity
 * `audit verify` and the inclusion proofs establish).
 */
export async function verifyRun(trx: TenantTransaction, runId: string): Promise<RunVerification | undefined> {
  const run = await trx.selectFrom('compliance_runs').selectAll().where('id', '=', runId).executeTakeFirst();
  if (!run) return undefined;
  const results = await trx.selectFrom('compliance_results').select(['check_id', 'status', 'measured', 'population', 'failures', 'sample']).where('run_id', '=', runId).execute();
  const recomputed = runDigest({ trigger: run.trigger, catalogueVersion: run.catalogue_version, measuredBy: run.measured_by, at: run.started_at, results: results.map((row) => ({ checkId: row.check_id, status: row.status, measured: row.measured, population: row.population, failures: row.failures, sample: row.sample })) });
  const stored = Buffer.from(run.digest).toString('hex');
  const event = await trx
    .selectFrom('audit_events')
    .select(['id', 'leaf_index', sql<string | null>`details->>'sha256'`.as('sha256')])
    .where('action', '=', 'compliance.run')
    .where('target_type', '=', 'compliance_run')
    .where('target_id', '=', runId)
    .orderBy('id')
    .limit(1)
    .executeTakeFirst();
  const ledger = event?.sha256 ?? null;
  const problem =
    recomputed !== stored ? 'the stored results do not match the digest stored with the run: they were changed after the run' : ledger === null ? 'the run has no record in the audit ledger' : ledger !== stored ? 'the run’s digest differs from the one the audit ledger holds' : null;
  return { runId, storedSha256: stored, recomputedSha256: recomputed, ledgerSha256: ledger, ledgerEventId: event ? String(event.id) : null, sealed: event?.leaf_index !== null && event?.leaf_index !== undefined, holds: problem === null, problem };
}

async function measure(tenantDb: TenantDb, context: CheckContext, trigger: 'schedule' | 'request', actor: AuditEvent['actor'], now: Date, onlyIfDue: boolean): Promise<EvidenceRun | undefined> {
  const catalogue = loadCatalogue();
  const results = await tenantDb.snapshot(async (trx) => {
    const out: (CheckResult & { checkId: string })[] = [];
    for (const check of CHECKS) {
      // A check that cannot run is a failing check, said so (its error's name only); the others still
      // run — each in a savepoint, so one failed query does not abort the snapshot for the rest.
      await sql`SAVEPOINT compliance_check`.execute(trx);
      const result = await check.run(trx, now, context).then(
        async (value) => {
          await sql`RELEASE SAVEPOINT compliance_check`.execute(trx);
          return value;
        },
        async (error: unknown): Promise<CheckResult> => {
          await sql`ROLLBACK TO SAVEPOINT compliance_check`.execute(trx);
          return { status: 'fail', measured: `the check could not run (${error instanceof Error ? error.name : 'error'})`, population: 0, failures: 1, sample: [] };
        },
      );
      out.push({ checkId: check.id, ...result });
    }
    return out;
  });
  const finishedAt = new Date();
  const digest = runDigest({ trigger, catalogueVersion: catalogue.version, measuredBy: MEASURED_BY, at: now, results });
  const id = await tenantDb.transaction(async (trx) => {
    if (onlyIfDue) {
      await sql`SELECT pg_advisory_xact_lock(hashtext(${`${trx.tenantId}:compliance_schedule`}))`.execute(trx);
      const last = await trx.selectFrom('compliance_runs').select('started_at').where('trigger', '=', 'schedule').where('started_at', '>', new Date(now.getTime() - 23 * 3_600_000)).executeTakeFirst();
      if (last) return undefined;
    }
    const run = await trx
      .insertInto('compliance_runs')
      .values({ started_at: now, finished_at: finishedAt, trigger, catalogue_version: catalogue.version, measured_by: MEASURED_BY, digest: Buffer.from(digest, 'hex'), passed: results.filter((result) => result.status === 'pass').length, failed: results.filter((result) => result.status === 'fail').length })
      .returning('id')
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('compliance_results')
      .values(results.map((result) => ({ run_id: run.id, check_id: result.checkId, status: result.status, measured: result.measured, population: result.population, failures: result.failures, sample: result.sample })))
      .execute();
    await recordAuditEvent(trx, { action: 'compliance.run', outcome: 'success', actor, target: { type: 'compliance_run', id: run.id }, details: { trigger, catalogue: catalogue.version, passed: results.filter((result) => result.status === 'pass').length, failed: results.filter((result) => result.status === 'fail').length, sha256: digest } });
    return run.id;
  });
  if (!id) return undefined;
  return { id, startedAt: now, finishedAt, catalogueVersion: catalogue.version, digest, results };
}
