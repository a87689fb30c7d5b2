import { randomUUID } from 'node:crypto';
import type { Transporter } from 'nodemailer';
import type { ChangeListener } from '../../db/change-listener.ts';
import type { SystemDb } from '../../db/system-db.ts';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Logger } from '../../logger.ts';
import { runEvery } from '../../background-task.ts';

/**
 * Outgoing e-mail. A message is written to the outbox (table email_outbox) in the transaction that
 * causes it, so it is sent if and only if that change commits; recipient and message are field
 * ciphertext (they hold an address and, for invitations, a one-time link). The log says that a
 * message was queued or sent — template and id — never to whom or what it says.
 *
 * Delivery is an interface (`MailTransport`). With no transport configured the outbox is the end
 * of the road: an operator reads it with `ringvakt mail outbox`. With RINGVAKT_SMTP_URL set, the
 * sender delivers through SMTP (nodemailer), woken at commit by a notification and by a timer,
 * retrying with backoff; rows are claimed FOR UPDATE SKIP LOCKED, so any number of nodes can run it.
 */
export type EmailMessage = { to: string; subject: string; text: string };

export type Mailer = {
  /** Queues a message in this transaction; returns its outbox id. */
  queue(trx: TenantTransaction, template: string, message: EmailMessage): Promise<string>;
};

const where = (id: string, field: 'recipient' | 'message') => ({ table: 'email_outbox', recordId: id, field });

export function createMailer(cipher: FieldCipher, logger: Logger): Mailer {
  return {
    async queue(trx, template, message) {
      const id = randomUUID();
      await trx
        .insertInto('email_outbox')
        .values({
          id,
          template,
          recipient_ciphertext: await cipher.encrypt(trx, where(id, 'recipient'), message.to),
          message_ciphertext: await cipher.encrypt(trx, where(id, 'message'), JSON.stringify({ subject: message.subject, text: message.text })),
        })
        .execute();
      logger.info({ emailId: id, template, tenantId: trx.tenantId }, 'e-mail queued');
      return id;
    },
  };
}

export type MailTransport = {
  send(message: EmailMessage): Promise<void>;
  close(): void;
};

/**
 * SMTP through nodemailer. The URL may carry credentials (smtp://user:pass@host:587); it is a
 * secret. Messages carry one-time links, so a plain `smtp://` server elsewhere than on this host
 * (127.0.0.1, ::1, localhost) must offer STARTTLS (requireTLS): nothing goes out in clear text
 * over a network.
 */
export function smtpTransport(url: string, from: string): MailTransport {
  const parsed = new URL(url);
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(parsed.hostname);
  // nodemailer is loaded with the first message, not at start-up.
  let transport: Promise<Transporter> | undefined;
  const open = () =>
    (transport ??= import('nodemailer').then(({ default: nodemailer }) =>
      nodemailer.createTransport({ url, requireTLS: parsed.protocol === 'smtp:' && !loopback } as Parameters<typeof nodemailer.createTransport>[0]),
    ));
  return {
    async send(message) {
      await (await open()).sendMail({ from, to: message.to, subject: message.subject, text: message.text });
    },
    close: () => void transport?.then((opened) => opened.close()),
  };
}

export type OutboxEntry = { id: string; template: string; createdAt: Date; sentAt: Date | null; failedAt: Date | null; attempts: number } & EmailMessage;

async function decryptEntry(trx: TenantTransaction, cipher: FieldCipher, row: {
  id: string; template: string; created_at: Date; sent_at: Date | null; failed_at: Date | null; attempts: number; recipient_ciphertext: Buffer; message_ciphertext: Buffer;
}): Promise<OutboxEntry> {
  const to = await cipher.decrypt(trx, where(row.id, 'recipient'), row.recipient_ciphertext);
  const body = JSON.parse(await cipher.decrypt(trx, where(row.id, 'message'), row.message_ciphertext)) as { subject: string; text: string };
  return { id: row.id, template: row.template, createdAt: row.created_at, sentAt: row.sent_at, failedAt: row.failed_at, attempts: row.attempts, to, ...body };
}

const columns = ['id', 'template', 'created_at', 'sent_at', 'failed_at', 'attempts', 'recipient_ciphertext', 'message_ciphertext'] as const;

/** The newest outbox entries of a tenant, decrypted (for the operator's CLI). */
export async function readOutbox(tenantDb: TenantDb, cipher: FieldCipher, limit: number): Promise<OutboxEntry[]> {
  return tenantDb.read(async (trx) => {
    const rows = await trx.selectFrom('email_outbox').select(columns).orderBy('created_at', 'desc').limit(limit).execute();
    return Promise.all(rows.map((row) => decryptEntry(trx, cipher, row)));
  });
}

const MAX_ATTEMPTS = 8;
const BATCH = 20;

/** Sends what is due in one tenant; returns how many were sent. */
export async function sendDueEmail(tenantDb: TenantDb, cipher: FieldCipher, transport: MailTransport, logger: Logger): Promise<number> {
  return tenantDb.transaction(async (trx) => {
    const rows = await trx
      .selectFrom('email_outbox')
      .select(columns)
      .where('sent_at', 'is', null)
      .where('failed_at', 'is', null)
      .where('next_attempt_at', '<=', new Date())
      .orderBy('next_attempt_at')
      .limit(BATCH)
      .forUpdate()
      .skipLocked()
      .execute();
    let sent = 0;
    for (const row of rows) {
      const entry = await decryptEntry(trx, cipher, row);
      try {
        await transport.send(entry);
        await trx.updateTable('email_outbox').set({ sent_at: new Date(), attempts: row.attempts + 1, last_error: null }).where('id', '=', row.id).execute();
        logger.info({ emailId: row.id, template: row.template }, 'e-mail sent');
        sent += 1;
      } catch (error) {
        const attempts = row.attempts + 1;
        // Only the error's class and SMTP code: a server's reply can quote the recipient.
        const code = (error as { responseCode?: number; code?: string }).responseCode ?? (error as { code?: string }).code ?? 'error';
        const lastError = `${(error as Error).name ?? 'Error'} ${String(code)}`.slice(0, 300);
        await trx
          .updateTable('email_outbox')
          .set({
            attempts,
            last_error: lastError,
            next_attempt_at: new Date(Date.now() + Math.min(3600_000, 30_000 * 2 ** attempts)),
            ...(attempts >= MAX_ATTEMPTS ? { failed_at: new Date() } : {}),
          })
          .where('id', '=', row.id)
          .execute();
        logger.warn({ emailId: row.id, template: row.template, attempts, error: lastError }, 'e-mail delivery failed');
      }
    }
    return sent;
  });
}

export function startEmailSender(deps: {
  systemDb: SystemDb;
  changes: Pick<ChangeListener, 'subscribe'>;
  cipher: FieldCipher;
  transport: MailTransport;
  logger: Logger;
  intervalMs?: number;
}): { stop(): Promise<void> } {
  const { systemDb, cipher, transport, logger } = deps;
  const pending = new Set<string>();
  let sweep = true;
  const tick = async () => {
    const tenants = sweep ? await systemDb.tenantsWithQueuedEmail() : [...pending];
    sweep = false;
    pending.clear();
    for (const tenantId of tenants) await sendDueEmail(systemDb.inTenant(tenantId), cipher, transport, logger);
  };
  const onError = (error: unknown) => logger.error({ err: error }, 'e-mail sender failed');
  let kick: Promise<void> | undefined;
  const wake = () => {
    kick ??= tick()
      .catch(onError)
      .finally(() => {
        kick = undefined;
      });
  };
  deps.changes.subscribe(
    'ringvakt_email',
    (tenantId) => {
      pending.add(tenantId);
      setImmediate(wake);
    },
    () => {
      sweep = true;
    },
  );
  const timer = runEvery('email', deps.intervalMs ?? 30_000, async () => {
    sweep = true;
    await tick();
  }, onError);
  wake();
  return {
    async stop() {
      await timer.stop();
      await kick;
      transport.close();
    },
  };
}
