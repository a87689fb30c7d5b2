import { createHash } from 'node:crypto';
import { sql } from '../db/kysely.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import { recordAuditEvent, type AuditEvent } from '../audit/audit-event.ts';
import { CHECKS, type CheckResult } from './checks.ts';
import { loadCatalogue } from './catalogue.ts';

/** The product version that measured: part of every piece of evidence. */
export const MEASURED_BY = `ringvakt ${process.env.npm_package_version ?? '0.1.0'}`;

export type EvidenceRun = { id: string; startedAt: Date; finishedAt: Date; catalogueVersion: string; digest: string; results: (CheckResult & { checkId: string })[] };

/**
 * One evidence run: every automated check against the tenant's live data, in one read-only
 * snapshot; the results stored together with a SHA-256 digest of their canonical form, and the
 * run recorded in the audit ledger with that digest — so the evidence of any day can be proven
 * unaltered by the ledger's own inclusion proofs. Runs daily from the server, and on demand.
 */
export async function runEvidence(tenantDb: TenantDb, trigger: 'schedule' | 'request', actor: AuditEvent['actor'], now = new Date()): Promise<EvidenceRun> {
  const run = await measure(tenantDb, trigger, actor, now, false);
  if (!run) throw new Error('evidence run not stored');
  return run;
}

/** The daily run: stored only when no scheduled run is younger than 23 hours (several nodes may try; one stores). */
export async function runScheduledEvidence(tenantDb: TenantDb, now = new Date()): Promise<EvidenceRun | undefined> {
  const last = await tenantDb.read((trx) => trx.selectFrom('compliance_runs').select('started_at').where('trigger', '=', 'schedule').orderBy('started_at', 'desc').limit(1).executeTakeFirst());
  if (last && now.getTime() - last.started_at.getTime() < 23 * 3_600_000) return undefined;
  return measure(tenantDb, 'schedule', { type: 'system', id: 'compliance' }, now, true);
}

async function measure(tenantDb: TenantDb, trigger: 'schedule' | 'request', actor: AuditEvent['actor'], now: Date, onlyIfDue: boolean): Promise<EvidenceRun | undefined> {
  const catalogue = loadCatalogue();
  const results = await tenantDb.snapshot(async (trx) => {
    const out: (CheckResult & { checkId: string })[] = [];
    for (const check of CHECKS) {
      // A check that cannot run is a failing check, said so (its error's name only); the others still
      // run — each in a savepoint, so one failed query does not abort the snapshot for the rest.
      await sql`SAVEPOINT compliance_check`.execute(trx);
      const result = await check.run(trx, now).then(
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
  const canonical = JSON.stringify({ catalogueVersion: catalogue.version, measuredBy: MEASURED_BY, at: now.toISOString(), results });
  const digest = createHash('sha256').update(canonical).digest('hex');
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
