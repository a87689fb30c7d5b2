import type { Command } from 'commander';
import { withCliDatabase, requireTenantId } from '../cli-support.ts';
import { pruneAuditLedger } from '../audit/retention.ts';
import { loadSigningKey } from '../audit/signing-key.ts';
import { closePublishers, createCheckpointPublishers } from '../audit/checkpoint-publishers.ts';
import { fileLedgerMirror } from './erasure.ts';
import { beginSweep, runSweep } from './retention.ts';
import { NODE_ID } from '../operations/node-id.ts';
import { startNodePresence } from '../operations/node-presence.ts';

/**
 * `ringvakt privacy sweep`: a retention sweep of every tenant with policies (or one), run by an
 * operator with the owner's rights — so, unlike the server's scheduled sweep, it also applies the
 * audit-events policy, through the owner-signed prune that keeps every proof verifiable.
 */
export function registerPrivacyCommands(program: Command, slug: (value: string) => string): void {
  const privacy = program.command('privacy').description('GDPR operations');
  privacy
    .command('sweep')
    .description('apply the retention policies now (audit events included, under a signed retention record)')
    .option('--tenant <slug>', 'only this tenant', slug)
    .option('--dry-run', 'only count what is due and what legal holds keep')
    .action(async (options: { tenant?: string; dryRun?: boolean }) => {
      await withCliDatabase(
        async (database, { config, logger }) => {
          const crypto = await database.crypto();
          const signingKey = await loadSigningKey(database.systemDb, crypto.root);
          const publishers = createCheckpointPublishers(config.auditWitnesses, logger);
          const tenants = options.tenant ? [await requireTenantId(database, options.tenant)] : await database.systemDb.tenantsWithRetentionPolicies();
          if (tenants.length === 0) process.stdout.write('no tenant has a retention policy\n');
          // This run's presence: while it lives, no server resumes its sweep as a dead node's.
          const node = `cli:${NODE_ID}`;
          const presence = startNodePresence({ connectionString: String(database.pool.options.connectionString), nodeId: node, logger });
          try {
            await presence.ready();
            for (const tenantId of tenants) {
              const tenantDb = database.forTenant(tenantId);
              const sweepOptions = {
                dryRun: options.dryRun ?? false,
                requestedBy: 'operator',
                node,
                mirror: fileLedgerMirror(config.erasureLedgerFile),
                pruneAudit: async (cutoff: Date) =>
                  (await pruneAuditLedger(database, signingKey, { tenantId, cutoff, reason: 'retention policy for audit events', executedBy: 'ringvakt privacy sweep', publishers })).removed,
              };
              const sweepId = await beginSweep(tenantDb, sweepOptions);
              if (!sweepId) {
                process.stdout.write(`${tenantId}: a sweep is running already\n`);
                continue;
              }
              const report = await runSweep(tenantDb, crypto, sweepId, sweepOptions);
              if (Object.keys(report).length === 0) process.stdout.write(`${tenantId}: no retention policy is set\n`);
              for (const [category, entry] of Object.entries(report)) {
                process.stdout.write(`${tenantId} ${category}: ${entry.due} due, ${entry.held} held, ${entry.done} ${entry.action === 'delete' ? 'deleted' : 'anonymised'}\n`);
              }
            }
          } finally {
            await presence.stop();
            await closePublishers(publishers);
          }
        },
        { ownerAccess: true },
      );
    });
}
