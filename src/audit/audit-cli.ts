import { once } from 'node:events';
import type { Command } from 'commander';
import { requireTenantId, withCliDatabase } from '../cli-support.ts';
import { AppError } from '../server/errors.ts';
import { recordAuditEvent } from './audit-event.ts';
import { exportSealedEvents, proveConsistency, proveInclusion } from './audit-reader.ts';
import { closePublishers, createCheckpointPublishers } from './checkpoint-publishers.ts';
import { sealTenantLedger } from './seal-audit-log.ts';
import { planRetention, pruneAuditLedger } from './retention.ts';
import { loadSigningKey, publicKeys } from './signing-key.ts';
import { verifyTenantLedger } from './verify-audit-log.ts';
import { checkWitnessedRetentions, checkWitnessSignatures, readWitness, readWitnessRetentions } from './witness.ts';

/** A commander parser for an ISO 8601 time option, naming the option when the value is not one. */
const isoTime = (option: string) => (value: string) => {
  if (Number.isNaN(Date.parse(value))) throw new Error(`${option} must be an ISO 8601 time`);
  return new Date(value);
};

/** `ringvakt audit …`: verify, export for a SIEM, and proofs for an auditor or a witness. */
export function registerAuditCommands(program: Command, slug: (value: string) => string): void {
  const audit = program.command('audit').description('the tamper-evident audit ledger');

  audit
    .command('verify')
    .description('recompute every leaf, tree node, tree head and signature; name the first divergence')
    .option('--tenant <slug>', 'only this tenant', slug)
    .option('--witness <file>', 'also check against checkpoints an outside witness kept (RINGVAKT_AUDIT_WITNESS_FILE)')
    .action(async (options: { tenant?: string; witness?: string }) => {
      const witness = options.witness ? readWitness(options.witness) : [];
      const witnessedRetentions = options.witness ? readWitnessRetentions(options.witness) : undefined;
      const witnessProblem = checkWitnessSignatures(witness) ?? checkWitnessedRetentions(witnessedRetentions ?? []);
      if (witnessProblem) throw new AppError('bad_request', `The witness file is not trustworthy: ${witnessProblem}`);
      const failures = await withCliDatabase(async (database) => {
        const keys = await publicKeys(database.systemDb);
        const tenants = options.tenant
          ? [{ id: await requireTenantId(database, options.tenant), slug: options.tenant }]
          : await database.systemDb.listTenants();
        let failed = 0;
        for (const tenant of tenants) {
          // Large ledgers are recomputed in worker threads, on runtime-role connections of their own.
          const parallel = { connectionString: String(database.pool.options.connectionString) };
          const verdict = await database.systemDb.inTenant(tenant.id).snapshot((trx) => verifyTenantLedger(trx, keys, witness, { parallel, ...(witnessedRetentions ? { witnessedRetentions } : {}) }));
          if (verdict.ok) {
            const awaiting = verdict.events - (verdict.sealed - verdict.pruned);
            const pruned = verdict.pruned > 0 ? `, the first ${verdict.pruned} removed by retention` : '';
            process.stdout.write(`ok    ${tenant.slug}: ${verdict.sealed} sealed events${pruned} (${awaiting} awaiting sealing), ${verdict.checkpoints} signed checkpoints\n`);
          } else {
            failed += 1;
            process.stdout.write(`FAIL  ${tenant.slug}: ${verdict.problem}\n`);
          }
        }
        return failed;
      });
      process.exit(failures === 0 ? 0 : 1);
    });

  audit
    .command('seal')
    .description('seal events awaiting sealing now and sign new checkpoints (a running server does this every few seconds)')
    .option('--tenant <slug>', 'only this tenant', slug)
    .action(async (options: { tenant?: string }) => {
      await withCliDatabase(async (database, { config, logger }) => {
        // The key hierarchy as the server builds it (root key checked against the database first).
        const signingKey = await loadSigningKey(database.systemDb, (await database.crypto()).root);
        const publishers = createCheckpointPublishers(config.auditWitnesses, logger);
        const tenants = options.tenant
          ? [{ id: await requireTenantId(database, options.tenant), slug: options.tenant }]
          : await database.systemDb.listTenants();
        for (const tenant of tenants) {
          const result = await database.systemDb.inTenant(tenant.id).transaction((trx) => sealTenantLedger(trx, signingKey, { publishers }));
          process.stdout.write(
            result ? `${tenant.slug}: ${result.sealed} events sealed, tree size ${result.treeSize}\n` : `${tenant.slug}: another sealer holds the lock; skipped\n`,
          );
        }
        await closePublishers(publishers);
      });
    });

  audit
    .command('prune')
    .description('remove events older than a cut-off under the retention procedure, leaving a signed retention record')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .requiredOption('--before <time>', 'ISO 8601 cut-off: only events that occurred before it are removed', isoTime('--before'))
    .requiredOption('--reason <text>', 'why (the retention policy and its reference), kept in the signed record')
    .requiredOption('--operator <name>', 'who runs this, kept in the signed record')
    .option('--dry-run', 'only say what would be removed')
    .action(async (options: { tenant: string; before: Date; reason: string; operator: string; dryRun?: boolean }) => {
      if (options.reason.trim().length === 0 || options.reason.length > 500) throw new Error('--reason must be 1 to 500 characters');
      if (options.operator.trim().length === 0 || options.operator.length > 200) throw new Error('--operator must be 1 to 200 characters');
      if (options.before.getTime() > Date.now()) throw new Error('--before must not be in the future');
      await withCliDatabase(
        async (database, { config, logger }) => {
          const tenantId = await requireTenantId(database, options.tenant);
          if (options.dryRun) {
            const plan = await database.forTenant(tenantId).read((trx) => planRetention(trx, options.before));
            process.stdout.write(plan ? `would remove leaves ${plan.previous} to ${plan.prunedBeforeLeaf - 1} (${plan.events} events)\n` : 'nothing to remove\n');
            return;
          }
          const signingKey = await loadSigningKey(database.systemDb, (await database.crypto()).root);
          const publishers = createCheckpointPublishers(config.auditWitnesses, logger);
          const outcome = await pruneAuditLedger(database, signingKey, {
            tenantId,
            cutoff: options.before,
            reason: options.reason,
            executedBy: options.operator,
            publishers,
          });
          await closePublishers(publishers);
          process.stdout.write(
            outcome.prunedBeforeLeaf === undefined
              ? 'nothing to remove: no signed checkpoint past the last cut covers only events before the cut-off\n'
              : `removed ${outcome.removed} events before leaf ${outcome.prunedBeforeLeaf}; signed retention record written\n`,
          );
        },
        { ownerAccess: true },
      );
    });

  const integer = (value: string) => {
    if (!/^\d{1,15}$/.test(value)) throw new Error('expected a non-negative integer');
    return Number(value);
  };

  audit
    .command('export')
    .description('write sealed events as JSON lines, in leaf order (for a SIEM); the export itself is audited')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .option('--since <time>', 'ISO 8601 time; events at or after it', isoTime('--since'))
    .option('--after-leaf <index>', 'only events after this leaf index (the last one a previous export gave)', integer)
    .action(async (options: { tenant: string; since?: Date; afterLeaf?: number }) => {
      await withCliDatabase(async (database) => {
        const tenantId = await requireTenantId(database, options.tenant);
        const tenantDb = database.forTenant(tenantId);
        await tenantDb.transaction((trx) =>
          recordAuditEvent(trx, {
            action: 'audit.export',
            outcome: 'success',
            actor: { type: 'operator' },
            details: { since: options.since?.toISOString() ?? null, afterLeaf: options.afterLeaf ?? null, channel: 'cli' },
          }),
        );
        for await (const event of exportSealedEvents(tenantDb, { since: options.since, afterLeaf: options.afterLeaf })) {
          if (!process.stdout.write(JSON.stringify(event) + '\n')) await once(process.stdout, 'drain');
        }
      });
    });

  audit
    .command('proof')
    .description('the inclusion proof of one sealed event (RFC 9162), as JSON')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .requiredOption('--leaf <index>', 'leaf index of the event', integer)
    .option('--size <n>', 'tree size to prove against (default: the whole sealed tree)', integer)
    .action(async (options: { tenant: string; leaf: number; size?: number }) => {
      await withCliDatabase(async (database) => {
        const tenantId = await requireTenantId(database, options.tenant);
        const result = await database.forTenant(tenantId).read((trx) => proveInclusion(trx, options.leaf, options.size));
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      });
    });

  audit
    .command('consistency')
    .description('the consistency proof between two tree sizes (RFC 9162), as JSON')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .requiredOption('--from <size>', 'the older tree size', integer)
    .requiredOption('--to <size>', 'the newer tree size', integer)
    .action(async (options: { tenant: string; from: number; to: number }) => {
      await withCliDatabase(async (database) => {
        const tenantId = await requireTenantId(database, options.tenant);
        const result = await database.forTenant(tenantId).read((trx) => proveConsistency(trx, options.from, options.to));
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      });
    });
}
