import { runEvery } from '../background-task.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { Logger } from '../logger.ts';
import type { ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { runScheduledEvidence } from './evidence.ts';
import { openQuarterlyReview } from './access-reviews.ts';

/**
 * The daily evidence run of every tenant, looked for every 15 minutes on every node (one stores
 * each day's run); and the quarterly access review, opened by the system when a quarter begins.
 */
export function startComplianceSchedule(options: { systemDb: SystemDb; crypto: ContactsCrypto; logger: Logger; everyMs?: number }): { stop(): Promise<void> } {
  return runEvery(
    'compliance_evidence',
    options.everyMs ?? 15 * 60_000,
    async (stopping) => {
      for (const tenant of await options.systemDb.listTenants()) {
        if (stopping()) return;
        try {
          const review = await options.systemDb.inTenant(tenant.id).transaction((trx) => openQuarterlyReview(trx));
          if (review) options.logger.info({ tenant: tenant.slug, review }, 'quarterly access review opened');
        } catch (error) {
          options.logger.error({ err: error instanceof Error ? { name: error.name, message: error.message.slice(0, 200) } : undefined, tenant: tenant.slug }, 'could not open the quarterly access review');
        }
        try {
          const run = await runScheduledEvidence(options.systemDb.inTenant(tenant.id), { crypto: options.crypto });
          if (run) options.logger.info({ tenant: tenant.slug, run: run.id, failed: run.results.filter((result) => result.status === 'fail').length }, 'compliance evidence run');
        } catch (error) {
          options.logger.error({ err: error instanceof Error ? { name: error.name, message: error.message.slice(0, 200) } : undefined, tenant: tenant.slug }, 'compliance evidence run failed for a tenant');
        }
      }
    },
    (error) => options.logger.error({ err: error }, 'compliance evidence schedule failed'),
  );
}
