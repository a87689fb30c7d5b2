import type { TenantTransaction } from '../db/tenant-db.ts';
import type { SystemDb } from '../db/system-db.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Logger } from '../logger.ts';
import { createMailer } from '../modules/mail/mailer.ts';
import { listUsers } from '../modules/users/users.repo.ts';
import { runEvery } from '../background-task.ts';
import { deadlineOfBreach } from './breaches.ts';
import { dateText } from './dates.ts';

/** Days before an agreement or certification ends that the reminder comes. */
export const REMINDER_DAYS = 60;
const REQUEST_DAYS = 7;

export type Reminder = { kind: string; id: string; label: string; dueAt: string; overdue: boolean };

/**
 * What needs the privacy officer, soonest first: processors' agreements and certifications ending
 * within 60 days (or ended), requests due within 7 days, breaches still awaiting the authority
 * decision or notification. Labels name processors and references, never a person.
 */
export async function dueReminders(trx: TenantTransaction, now = Date.now()): Promise<Reminder[]> {
  const horizon = now + REMINDER_DAYS * 86_400_000;
  const items: Reminder[] = [];
  const due = (kind: string, id: string, label: string, at: number) => {
    if (at <= horizon) items.push({ kind, id, label, dueAt: new Date(at).toISOString(), overdue: at < now });
  };
  for (const processor of await trx.selectFrom('processors').selectAll().execute()) {
    const dpaEnds = dateText(processor.dpa_expires_on);
    if (dpaEnds) due('processor.dpa', processor.id, `Data processing agreement with ${processor.name} (${processor.service}) ends`, Date.parse(`${dpaEnds}T00:00:00Z`));
    for (const cert of processor.certifications) if (cert.expiresOn) due(`processor.${cert.kind}`, processor.id, `${processor.name}: ${cert.kind} ${cert.reference} expires`, Date.parse(`${cert.expiresOn}T00:00:00Z`));
  }
  for (const row of await trx.selectFrom('privacy_requests').select(['id', 'reference', 'due_at']).where('status', 'in', ['received', 'verified']).where('due_at', '<', new Date(now + REQUEST_DAYS * 86_400_000)).execute()) {
    due('privacy_request', row.id, `Request ${row.reference} is due`, row.due_at.getTime());
  }
  for (const row of await trx.selectFrom('breaches').selectAll().where('status', '=', 'open').execute()) {
    if (!row.authority_decision || (row.authority_decision === 'notify' && !row.authority_notified_at)) due('breach.authority', row.id, `Breach ${row.reference}: notify the authority or record why not`, Date.parse(deadlineOfBreach(row).authorityDueAt));
  }
  items.sort((a, b) => a.dueAt.localeCompare(b.dueAt));
  return items;
}

/**
 * E-mails each reminder once (per item and due date) to the tenant's active privacy officers,
 * through the encrypted outbox; run daily by `serve`. Returns how many reminders went out.
 */
export async function sendReminders(trx: TenantTransaction, cipher: FieldCipher, logger: Logger, now = Date.now()): Promise<number> {
  const reminders = await dueReminders(trx, now);
  if (reminders.length === 0) return 0;
  const officers = (await listUsers(trx, cipher, { limit: 1000 })).filter((user) => user.status === 'active' && user.role === 'privacy_officer');
  if (officers.length === 0) return 0;
  const mailer = createMailer(cipher, logger);
  let sent = 0;
  for (const reminder of reminders) {
    const fresh = await trx
      .insertInto('privacy_reminders_sent')
      .values({ kind: reminder.kind, item_id: reminder.id, due_at: new Date(reminder.dueAt) })
      .onConflict((conflict) => conflict.doNothing())
      .returning('item_id')
      .executeTakeFirst();
    if (!fresh) continue;
    for (const officer of officers) {
      await mailer.queue(trx, 'privacy_reminder', { to: officer.email, subject: `Ringvakt privacy: ${reminder.label}`, text: `${reminder.label} — due ${reminder.dueAt}${reminder.overdue ? ' (overdue)' : ''}.\n\nSee the privacy reminders in Ringvakt.` });
    }
    sent += 1;
  }
  return sent;
}

export function startReminderService(options: { systemDb: SystemDb; cipher: () => Promise<FieldCipher>; logger: Logger; intervalMs?: number }) {
  return runEvery(
    'privacy_reminders',
    options.intervalMs ?? 6 * 3_600_000,
    async () => {
      const cipher = await options.cipher();
      for (const tenant of await options.systemDb.listTenants()) {
        try {
          await options.systemDb.inTenant(tenant.id).transaction((trx) => sendReminders(trx, cipher, options.logger));
        } catch (error) {
          options.logger.error({ err: error instanceof Error ? { name: error.name } : undefined, tenant: tenant.id }, 'privacy reminders failed for a tenant');
        }
      }
    },
    (error) => options.logger.error({ err: error instanceof Error ? { name: error.name } : undefined }, 'privacy reminders failed'),
  );
}
