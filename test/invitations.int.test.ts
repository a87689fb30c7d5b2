import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smtpTransport, startEmailSender } from '../src/modules/mail/mailer.ts';
import type { App } from '../src/server/types.ts';
import { buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { newBrowser, send, sessionFor } from './support/auth.ts';
import { registerPersonalData } from './support/canary.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';

/** Invitations by e-mail, delivered through a real SMTP server listening on loopback. */
describe(`invitations through SMTP (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let smtp: SMTPServer;
  let port = 0;
  const received: { to: string; raw: string }[] = [];
  const { logger, lines } = capturingLogger('debug');

  beforeAll(async () => {
    db = await createTestDatabase({ logger });
    a = await seedTenant(db.handles, 'invite-a');
    app = await buildTestApp(db);
    smtp = new SMTPServer({
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          received.push({ to: session.envelope.rcptTo.map((rcpt) => rcpt.address).join(','), raw: Buffer.concat(chunks).toString('utf8') });
          callback();
        });
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    port = (smtp.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await app?.close();
    await new Promise<void>((resolve) => smtp?.close(() => resolve()));
    await db?.drop();
  });

  it('mails a one-time link that sets the password; the link and address never reach a log', async () => {
    const email = 'new.colleague@invite-a.example';
    registerPersonalData(email, 'New Colleague');
    const owner = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const invited = await send(app, owner, 'POST', '/api/v1/users', { email, displayName: 'New Colleague', role: 'agent' });
    expect(invited.statusCode, invited.body).toBe(201);
    expect(invited.json()).toMatchObject({ status: 'invited', role: 'agent' });

    const { cipher } = await db.handles.crypto();
    const sender = startEmailSender({ systemDb: db.handles.systemDb, changes: db.handles.changes, cipher, transport: smtpTransport(`smtp://127.0.0.1:${port}`, 'ringvakt@invite-a.example'), logger });
    try {
      await until(() => received.length > 0, 10_000);
    } finally {
      await sender.stop();
    }
    expect(received[0]!.to).toBe(email);
    const unfolded = received[0]!.raw.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    const link = /\/setup#token=(rvs_[0-9a-f]{32}_[A-Za-z0-9_-]{43})/.exec(unfolded);
    expect(link).not.toBeNull();
    const token = link![1]!;
    const sent = await db.superQuery(`SELECT sent_at, attempts FROM ringvakt.email_outbox WHERE tenant_id = $1 AND template = 'invitation'`, [a.tenantId]);
    expect(sent.rows[0]!.sent_at).not.toBeNull();

    const chosen = 'amber falcon orchard nine';
    const done = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', headers: { origin: PUBLIC_URL }, payload: { token, password: chosen } });
    expect(done.statusCode).toBe(204);
    const again = await app.inject({ method: 'POST', url: '/api/v1/setup/complete', headers: { origin: PUBLIC_URL }, payload: { token, password: chosen } });
    expect(again.json()).toMatchObject({ code: 'setup_link_invalid' });
    const browser = newBrowser();
    const login = await send(app, browser, 'POST', '/api/v1/auth/login', { tenant: 'invite-a', email, password: chosen });
    expect(login.json()).toMatchObject({ stage: 'active' });

    // The log says what happened, without the address or the link.
    expect(lines.some((line) => line.includes('"e-mail queued"') && line.includes('"template":"invitation"'))).toBe(true);
    expect(lines.some((line) => line.includes('"e-mail sent"'))).toBe(true);
    for (const line of lines) {
      expect(line).not.toContain(token);
      expect(line).not.toContain(token.slice(-43));
    }
  });

  it('keeps the message encrypted in the outbox', async () => {
    const rows = await db.superQuery(`SELECT recipient_ciphertext, message_ciphertext FROM ringvakt.email_outbox WHERE tenant_id = $1`, [a.tenantId]);
    expect(rows.rows.length).toBeGreaterThan(0);
    for (const row of rows.rows) {
      expect((row.recipient_ciphertext as Buffer).toString('latin1')).not.toContain('@invite-a.example');
      expect((row.message_ciphertext as Buffer).toString('latin1')).not.toContain('rvs_');
    }
  });

  it('will not send in clear text to a server that is not on this host and offers no STARTTLS', async () => {
    // 127.0.0.2 stands for a server elsewhere (it is not one of the loopback names the transport exempts).
    const plain = new SMTPServer({ disabledCommands: ['STARTTLS', 'AUTH'], logger: false, onData: (_stream, _session, callback) => callback() });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.2', resolve));
    const plainPort = (plain.server.address() as AddressInfo).port;
    const transport = smtpTransport(`smtp://127.0.0.2:${plainPort}`, 'ringvakt@invite-a.example');
    try {
      await expect(transport.send({ to: 'someone@invite-a.example', subject: 's', text: 't' })).rejects.toThrow();
    } finally {
      transport.close();
      await new Promise<void>((resolve) => plain.close(() => resolve()));
    }
  });
});
