import type { Command } from 'commander';
import { requireTenantId, withCliDatabase } from '../cli-support.ts';
import { recordAuditEvent } from '../audit/audit-event.ts';
import { announceAuthChange } from '../modules/access/auth-changes.ts';
import type { TenantSecurityStatus } from '../db/system-db.ts';

const requireUuid = (value: string, message: string) => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value)) throw new Error(message);
};
/** Who handles it, as recorded with the alert or the block and in the audit event. */
const requireName = (value: string) => {
  if (!/^[\p{L}\p{N} ._@-]{1,100}$/u.test(value)) throw new Error('--by is a name of at most 100 letters, digits, spaces or . _ @ -');
};

/** A high or critical alert unacknowledged this long makes `ringvakt security status` exit non-zero. */
const OVERDUE_MS = 3_600_000;

const duration = (seconds: number | null) => (seconds === null ? '-' : seconds < 120 ? `${Math.round(seconds)}s` : seconds < 7200 ? `${Math.round(seconds / 60)}m` : `${Math.round(seconds / 360) / 10}h`);

/** One line per tenant, for a person or a monitoring check (counts and times only: no titles, subjects or people). */
export function formatSecurityStatus(rows: readonly TenantSecurityStatus[], now = Date.now()): { text: string; overdue: string[] } {
  const header = ['tenant', 'open-alerts', 'unacked-high', 'open-incidents', 'ack-median', 'ack-max', 'contain-median', 'contain-max', 'oldest-unacked-high', 'contact'];
  const lines = rows.map((row) => [
    row.slug,
    String(row.openAlerts),
    String(row.unacknowledgedHigh),
    String(row.openIncidents),
    duration(row.medianAckSeconds),
    duration(row.maxAckSeconds),
    duration(row.medianContainSeconds),
    duration(row.maxContainSeconds),
    row.oldestUnacknowledgedHigh ? duration((now - row.oldestUnacknowledgedHigh.getTime()) / 1000) : '-',
    row.securityContact ? 'yes' : 'none',
  ]);
  const widths = header.map((cell, index) => Math.max(cell.length, ...lines.map((line) => (line[index] ?? '').length)));
  const text = [header, ...lines].map((line) => line.map((cell, index) => cell.padEnd(widths[index] ?? 0)).join('  ').trimEnd()).join('\n');
  const overdue = rows.filter((row) => row.oldestUnacknowledgedHigh !== null && now - row.oldestUnacknowledgedHigh.getTime() > OVERDUE_MS).map((row) => row.slug);
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
        const installation = await database.systemDb.installationAlerts();
        const { text, overdue } = formatSecurityStatus(rows);
        const waiting = installation.filter((alert) => alert.state === 'open' && (alert.severity === 'high' || alert.severity === 'critical') && Date.now() - alert.raised_at.getTime() > OVERDUE_MS);
        if (options.json) {
          const alerts = installation.map((alert) => ({ id: alert.id, rule: alert.rule_id, severity: alert.severity, subject: alert.subject, summary: alert.summary, state: alert.state, hits: alert.hits, node: alert.node, raisedAt: alert.raised_at.toISOString(), lastSeen: alert.last_seen.toISOString() }));
          process.stdout.write(`${JSON.stringify({ windowDays: days, tenants: rows, installation: alerts }, null, 2)}\n`);
        } else {
          process.stdout.write(text);
          process.stdout.write(installation.length === 0 ? '\ninstallation: no open alerts\n' : `\ninstallation alerts:\n${installation.map((alert) => `${alert.id}  ${alert.severity.padEnd(8)}  ${alert.state.padEnd(12)}  ${alert.summary}`).join('\n')}\n`);
        }
        if (overdue.length > 0 || waiting.length > 0) {
          if (overdue.length > 0) process.stderr.write(`high or critical alerts unacknowledged for more than an hour: ${overdue.join(', ')}\n`);
          if (waiting.length > 0) process.stderr.write(`installation alerts unacknowledged for more than an hour: ${waiting.length}\n`);
          process.exitCode = 3;
        }
      });
    });

  for (const [verb, state] of [['acknowledge', 'acknowledged'], ['resolve', 'resolved']] as const) {
    security
      .command(`${verb} <alertId>`)
      .description(`${verb} an alert of the installation itself (shown by security status)`)
      .requiredOption('--by <name>', 'who is handling it (recorded with the alert)')
      .action(async (alertId: string, options: { by: string }) => {
        requireUuid(alertId, 'the alert id is a UUID (see ringvakt security status)');
        requireName(options.by);
        await withCliDatabase(async (database) => {
          if (!(await database.systemDb.setInstallationAlertState(alertId, state, `operator:${options.by}`))) throw new Error(`no installation alert ${alertId} that can be ${state}`);
          process.stdout.write(`${alertId}: ${state}\n`);
        });
      });
  }

  security
    .command('unblock')
    .description("lift an organisation's blocked address ranges (recovery when a block locked out those who could lift it)")
    .requiredOption('--tenant <slug>', 'the organisation')
    .option('--block <id>', 'one block (default: every block in force)')
    .requiredOption('--by <name>', 'who lifts it (recorded and audited)')
    .action(async (options: { tenant: string; block?: string; by: string }) => {
      if (options.block !== undefined) requireUuid(options.block, '--block is a UUID (GET /api/v1/security/blocked-networks lists them)');
      requireName(options.by);
      await withCliDatabase(async (database) => {
        const tenantId = await requireTenantId(database, options.tenant);
        const lifted = await database.forTenant(tenantId).transaction(async (trx) => {
          let query = trx.updateTable('blocked_networks').set({ lifted_at: new Date(), lifted_by: `operator:${options.by}` }).where('lifted_at', 'is', null);
          if (options.block) query = query.where('id', '=', options.block);
          const rows = await query.returning('id').execute();
          for (const row of rows) await recordAuditEvent(trx, { action: 'security.network_unblock', outcome: 'success', actor: { type: 'operator' }, target: { type: 'blocked_network', id: row.id }, details: { by: options.by.slice(0, 100) } });
          announceAuthChange(trx);
          return rows.length;
        });
        process.stdout.write(`${options.tenant}: ${lifted} block(s) lifted\n`);
      });
    });
}
