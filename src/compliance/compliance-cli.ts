import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { requireTenantId, withCliDatabase } from '../cli-support.ts';
import { runEvidence } from './evidence.ts';
import { verifyTrustReport } from './trust-report.ts';

export function registerComplianceCommands(program: Command, slug: (value: string) => string): void {
  const report = program.command('report').description('trust reports');
  report
    .command('verify <file>')
    .description('check a signed trust report (JSON) offline: its Ed25519 signature, and with --public-key that it was signed by the key you trust')
    .option('--public-key <base64>', 'the installation’s ledger public key (SPKI, base64) as it publishes it')
    .action((file: string, options: { publicKey?: string }) => {
      const problem = verifyTrustReport(readFileSync(file, 'utf8'), options.publicKey);
      if (problem) {
        process.stdout.write(`FAIL  ${file}: ${problem}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`ok    ${file}: the signature holds${options.publicKey ? ' and is by the key you trust' : ' (name the key you trust with --public-key to know who signed it)'}\n`);
    });
  program
    .command('compliance')
    .description('the compliance center')
    .command('run')
    .description('run every automated check for a tenant now; the evidence is kept and anchored in the audit ledger')
    .requiredOption('--tenant <slug>', 'the tenant', slug)
    .action(async (options: { tenant: string }) => {
      await withCliDatabase(async (database) => {
        const run = await runEvidence(database.forTenant(await requireTenantId(database, options.tenant)), { crypto: await database.crypto() }, 'request', { type: 'operator' });
        for (const result of run.results) process.stdout.write(`${result.status.padEnd(14)}  ${result.checkId}: ${result.measured}\n`);
        process.stdout.write(`run ${run.id}: ${run.results.filter((result) => result.status === 'fail').length} failing; sha256 ${run.digest}\n`);
        if (run.results.some((result) => result.status === 'fail')) process.exitCode = 2;
      });
    });
}
