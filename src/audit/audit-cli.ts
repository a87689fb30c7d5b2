import type { Command } from 'commander';
import { requireTenantId, withCliDatabase } from '../cli-support.ts';
import { AppError } from '../server/errors.ts';
import { recordAuditEvent } from './audit-event.ts';
import { consistencyProof, inclusionProof } from './merkle.ts';
import { databaseSource, sealedTreeSize, withPrefetchedSubtrees } from './seal-audit-log.ts';
import { publicKeys } from './signing-key.ts';
import { verifyTenantLedger } from './verify-audit-log.ts';
import { checkWitnessSignatures, readWitness } from './witness.ts';

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
      const witnessProblem = checkWitnessSignatures(witness);
      if (witnessProblem) throw new AppError('bad_request', `The witness file is not trustworthy: ${witnessProblem}`);
      const failures = await withCliDatabase(async (database) => {
        const keys = await publicKeys(database.systemDb);
        const tenants = options.tenant
          ? [{ id: await requireTenantId(database, options.tenant), slug: options.tenant }]
          : await database.systemDb.listTenants();
        let failed = 0;
        for (const tenant of tenants) {
          const verdict = await database.systemDb.inTenant(tenant.id).snapshot((trx) => verifyTenantLedger(trx, keys, witness));
          if (verdict.ok) {
            process.stdout.write(`ok    ${tenant.slug}: ${verdict.sealed} sealed events (${verdict.events - verdict.sealed} awaiting sealing), ${verdict.checkpoints} signed checkpoints\n`);
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
    .command('export')
    .description('write events as JSON lines (for a SIEM); the export itself is audited')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .option('--since <time>', 'ISO 8601 time; events at or after it', (value) => {
      if (Number.isNaN(Date.parse(value))) throw new Error('--since must be an ISO 8601 time');
      return new Date(value);
    })
    .action(async (options: { tenant: string; since?: Date }) => {
      await withCliDatabase(async (database) => {
        const tenantId = await requireTenantId(database, options.tenant);
        await database.forTenant(tenantId).transaction(async (trx) => {
          await recordAuditEvent(trx, {
            action: 'audit.export',
            outcome: 'success',
            actor: { type: 'operator' },
            details: { since: options.since?.toISOString() ?? null },
          });
          let after = '0';
          for (;;) {
            let query = trx.selectFrom('audit_events').selectAll().where('id', '>', after).orderBy('id').limit(5_000);
            if (options.since) query = query.where('occurred_at', '>=', options.since);
            const rows = await query.execute();
            for (const row of rows) {
              process.stdout.write(
                JSON.stringify({
                  id: row.id,
                  leafIndex: row.leaf_index,
                  occurredAt: row.occurred_at.toISOString(),
                  actor: { type: row.actor_type, id: row.actor_id },
                  action: row.action,
                  target: row.target_type ? { type: row.target_type, id: row.target_id } : null,
                  outcome: row.outcome,
                  sourceIp: row.source_ip,
                  requestId: row.request_id,
                  details: row.details,
                  leafHash: row.leaf_hash.toString('hex'),
                }) + '\n',
              );
            }
            if (rows.length < 5_000) break;
            after = rows.at(-1)?.id ?? after;
          }
        });
      });
    });

  const integer = (value: string) => {
    if (!/^\d{1,15}$/.test(value)) throw new Error('expected a non-negative integer');
    return Number(value);
  };

  audit
    .command('proof')
    .description('the inclusion proof of one sealed event (RFC 9162), as JSON')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .requiredOption('--leaf <index>', 'leaf index of the event', integer)
    .option('--size <n>', 'tree size to prove against (default: the whole sealed tree)', integer)
    .action(async (options: { tenant: string; leaf: number; size?: number }) => {
      await withCliDatabase(async (database) => {
        const tenantId = await requireTenantId(database, options.tenant);
        const result = await database.forTenant(tenantId).read(async (trx) => {
          const size = options.size ?? (await sealedTreeSize(trx));
          if (!(options.leaf < size) || size > (await sealedTreeSize(trx))) throw new AppError('bad_request', 'That leaf is not in a tree of that size.');
          const proof = await withPrefetchedSubtrees(trx, (source) => inclusionProof(source, options.leaf, size));
          const leafHash = await databaseSource(trx)(0, options.leaf);
          return { leafIndex: options.leaf, treeSize: size, leafHash: leafHash.toString('hex'), proof: proof.map((hash) => hash.toString('hex')) };
        });
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
        const result = await database.forTenant(tenantId).read(async (trx) => {
          if (!(options.from > 0 && options.from <= options.to && options.to <= (await sealedTreeSize(trx)))) {
            throw new AppError('bad_request', 'Sizes must satisfy 0 < from ≤ to ≤ the sealed tree size.');
          }
          const proof = await withPrefetchedSubtrees(trx, (source) => consistencyProof(source, options.from, options.to));
          return { from: options.from, to: options.to, proof: proof.map((hash) => hash.toString('hex')) };
        });
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      });
    });
}
