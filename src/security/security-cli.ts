import type { Command } from 'commander';
import { withCliDatabase } from '../cli-support.ts';
import type { TenantSecurityStatus } from '../db/system-db.ts';

/** A high or critical alert unacknowledged this long makes `ringvakt security status` exit non-zero. */
const OVERDUE_MS = 3_600_000;

const duration = (seconds: number | null) => (seconds === null ? '-' : seconds < 120 ? `${Math.round(seconds)}s` : seconds < 7200 ? `${Math.round(seconds / 60)}m` : `${Math.round(seconds / 360) / 10}h`);

/** One line per tenant, for a person or a monitoring check (counts and times only: no titles, subjects or people). */
export function formatSecurityStatus(rows: readonly TenantSecurityStatus[], now = Date.now()): { text: string; overdue: string[] } {
  const header = ['tenant', 'open-alerts', 'unacked-high', 'open-incidents', 'ack-median', 'ack-max', 'contain-median', 'contain-max', 'oldest-unacked', 'contact'];
  const lines = rows.map((row) => [
    row.slug,
    String(row.openAlerts),
    String(row.unacknowledgedHigh),
    String(row.openIncidents),
    duration(row.medianAckSeconds),
    duration(row.maxAckSeconds),
    duration(row.medianContainSeconds),
    duration(row.maxContainSeconds),
    row.oldestUnacknowledged ? duration((now - row.oldestUnacknowledged.getTime()) / 1000) : '-',
    row.securityContact ? 'yes' : 'none',
  ]);
  const widths = header.map((cell, index) => Math.max(cell.length, ...lines.map((line) => (line[index] ?? '').length)));
  const text = [header, ...lines].map((line) => line.map((cell, index) => cell.padEnd(widths[index] ?? 0)).join('  ').trimEnd()).join('\n');
  const overdue = rows.filter((row) => row.unacknowledgedHigh > 0 && row.oldestUnacknowledged !== null && now - row.oldestUnacknowledged.getTime() > OVERDUE_MS).map((row) => row.slug);
  return { text: `${text}\n`, overdue };
}

export function registerSecurityCommands(program: Command): void {
  const security = program.command('security').description('security monitoring and incident response');
  security
    .command('status')
    .description("every organisation's open alerts and incidents, and its times to acknowledge and to contain (exit 3 when a high alert waits more than an hour)")
    .option('--days <n>', 'the window for the response times', '30')
    .option('--json', 'JSON instead of a table')
    .action(async (options: { days: string; json?: boolean }) => {
      const days = Number(options.days);
      if (!Number.isInteger(days) || days < 1 || days > 366) throw new Error('--days is a whole number of days between 1 and 366');
      await withCliDatabase(async (database) => {
        const rows = await database.systemDb.securityStatus(new Date(Date.now() - days * 86_400_000));
        const { text, overdue } = formatSecurityStatus(rows);
        process.stdout.write(options.json ? `${JSON.stringify({ windowDays: days, tenants: rows }, null, 2)}\n` : text);
        if (overdue.length > 0) {
          process.stderr.write(`high or critical alerts unacknowledged for more than an hour: ${overdue.join(', ')}\n`);
          process.exitCode = 3;
        }
      });
    });
}
