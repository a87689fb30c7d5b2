import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { readOutbox } from '../src/modules/mail/mailer.ts';
import { sendReminders } from '../src/privacy/reminders.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const day = (offsetDays: number) => new Date(Date.now() + offsetDays * DAY).toISOString().slice(0, 10);

describe(`processor and breach registers, records of processing (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let logLines: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'registers-a');
    // Free text of the breach timeline never reaches the audit ledger (checked when the database is dropped).
    registerPersonalData('Police report filed', 'dpo1@registers-a.example', 'dpo2@registers-a.example');
    const captured = capturingLogger('error');
    logLines = captured.lines;
    app = await buildTestApp(db, { logger: captured.logger });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(tenant.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  it('keeps processors with their agreements and certifications, and reminds before they end', async () => {
    expect((await call('PUT', '/api/v1/privacy/profile', { controllerName: 'Kundesenter AS', dpoName: 'Personvernombudet', dpoEmail: 'personvern@kundesenter.example', supervisoryAuthority: 'Datatilsynet' })).statusCode).toBe(204);
    expect((await call('GET', '/api/v1/privacy/profile')).json()).toMatchObject({ controllerName: 'Kundesenter AS', supervisoryAuthority: 'Datatilsynet' });
    const carrier = await call('POST', '/api/v1/privacy/processors', {
      name: 'Telia',
      service: 'Telephony carrier',
      dataCategories: ['Telephone numbers', 'Call audio in transit'],
      location: 'EU',
      dpaSignedOn: day(-700),
      dpaExpiresOn: day(30),
      certifications: [{ kind: 'iso27001', reference: 'ISO-123', expiresOn: day(400) }],
    });
    expect(carrier.statusCode, logLines.join('\n')).toBe(201);
    const hosting = await call('POST', '/api/v1/privacy/processors', { name: 'Cloudy', service: 'Hosting', location: 'US', transferSafeguard: 'Standard contractual clauses', certifications: [{ kind: 'soc2', reference: 'SOC2-T2', expiresOn: day(-5) }] });
    expect(hosting.statusCode).toBe(201);
    expect((await call('POST', '/api/v1/privacy/processors', { name: 'Telia', service: 'Telephony carrier', location: 'EU' })).json()).toMatchObject({ code: 'conflict' });
    expect((await call('POST', '/api/v1/privacy/processors', { name: 'Late', service: 'Mail', location: 'EU', dpaSignedOn: day(0), dpaExpiresOn: day(-1) })).json()).toMatchObject({ code: 'validation_failed' });
    expect((await call('POST', '/api/v1/privacy/processors', { name: 'Bad', service: 'Mail', location: 'EU', dpaSignedOn: '2026-02-30' })).statusCode).toBe(400);
    const reminders = (await call('GET', '/api/v1/privacy/reminders')).json() as { items: { kind: string; label: string; overdue: boolean }[] };
    // The lapsed SOC 2 report first (overdue), then the agreement ending in 30 days; not the certificate good for 400.
    expect(reminders.items.map((item) => [item.kind, item.overdue])).toEqual([
      ['processor.soc2', true],
      ['processor.dpa', false],
    ]);
    expect((await app.inject({ method: 'GET', url: '/api/v1/privacy/processors', headers: bearer(tenant.agent.token) })).statusCode).toBe(403);

    // The daily job e-mails each reminder once to every active privacy officer (through the encrypted outbox).
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const { cipher } = await db.handles.crypto();
    await tenantDb.transaction(async (trx) => {
      for (const index of [1, 2]) {
        const user = await createUser(trx, cipher, { email: `dpo${index}@registers-a.example`, displayName: `DPO ${index}`, role: 'privacy_officer' });
        await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      }
    });
    expect(await tenantDb.transaction((trx) => sendReminders(trx, cipher, db.logger))).toBe(2);
    expect(await tenantDb.transaction((trx) => sendReminders(trx, cipher, db.logger))).toBe(0);
    const outbox = await readOutbox(tenantDb, cipher, 50);
    const mailed = outbox.filter((entry) => entry.template === 'privacy_reminder');
    expect(mailed.map((entry) => entry.to).sort()).toEqual(['dpo1@registers-a.example', 'dpo1@registers-a.example', 'dpo2@registers-a.example', 'dpo2@registers-a.example']);
    expect(mailed.map((entry) => entry.subject)).toEqual(expect.arrayContaining(['Ringvakt privacy: Cloudy: soc2 SOC2-T2 expires']));
  });

  it('runs the 72-hour clock from awareness, wants reasons for every decision and for lateness, and fills the notification', async () => {
    const late = await call('POST', '/api/v1/privacy/breaches', {
      title: 'Laptop stolen',
      description: 'An agent laptop with an exported call list was stolen from a car.',
      detectedAt: new Date(Date.now() - 80 * HOUR).toISOString(),
      dataCategories: ['Names', 'Telephone numbers'],
      subjectCategories: ['Customers'],
      approxSubjects: 1200,
      approxRecords: 1200,
      consequences: 'Unwanted calls; possible phishing.',
      measures: 'Remote wipe requested; affected customers to be told.',
    });
    expect(late.statusCode).toBe(201);
    const breach = late.json() as { id: string; reference: string; overdue: boolean; hoursLeft: number };
    expect(breach.reference).toMatch(/^BR-\d{4}-\d{3}$/);
    expect(breach.overdue).toBe(true);
    expect(breach.hoursLeft).toBeLessThan(-7);
    const fresh = (await call('POST', '/api/v1/privacy/breaches', { title: 'Misdirected e-mail', description: 'A report went to the wrong customer.', detectedAt: new Date().toISOString() })).json() as { hoursLeft: number; overdue: boolean };
    expect(fresh).toMatchObject({ overdue: false });
    expect(fresh.hoursLeft).toBeGreaterThanOrEqual(71);
    // Bad input: awareness before detection, detection in the future.
    expect((await call('POST', '/api/v1/privacy/breaches', { title: 'x', description: 'y', detectedAt: new Date().toISOString(), awareAt: new Date(Date.now() - DAY).toISOString() })).statusCode).toBe(400);
    expect((await call('POST', '/api/v1/privacy/breaches', { title: 'x', description: 'y', detectedAt: new Date(Date.now() + DAY).toISOString() })).statusCode).toBe(400);
    // Awareness cannot be put off into the future (the 72 hours run from it).
    expect((await call('POST', '/api/v1/privacy/breaches', { title: 'x', description: 'y', detectedAt: new Date().toISOString(), awareAt: new Date(Date.now() + DAY).toISOString() })).json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'body/awareAt' }] });

    const url = `/api/v1/privacy/breaches/${breach.id}`;
    // The encryption exemption does not apply to data that was not encrypted.
    expect((await call('POST', `${url}/decisions`, { subjects: { decision: 'not_required_encrypted', reason: 'The laptop disk was encrypted' } })).json()).toMatchObject({ code: 'validation_failed' });
    expect((await call('POST', `${url}/decisions`, { authority: { decision: 'notify' } })).statusCode).toBe(400);
    expect((await call('POST', `${url}/notified`, { to: 'authority', at: new Date().toISOString() })).json()).toMatchObject({ code: 'invalid_transition' });
    expect((await call('POST', `${url}/decisions`, { authority: { decision: 'notify', reason: 'Risk to the people: names and numbers of 1,200 customers' }, subjects: { decision: 'notify', reason: 'High risk of phishing calls' } })).statusCode, logLines.join('\n')).toBe(200);
    // After 72 hours the reasons for the delay are required.
    const noReason = await call('POST', `${url}/notified`, { to: 'authority', at: new Date().toISOString() });
    expect(noReason.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'body/lateReason' }] });
    expect((await call('POST', `${url}/notified`, { to: 'authority', at: new Date().toISOString(), lateReason: 'The theft was reported to us by the agent only on day three.' })).json()).toMatchObject({ authorityNotifiedAt: expect.any(String) });
    expect((await call('POST', `${url}/close`)).json()).toMatchObject({ code: 'invalid_transition' });
    expect((await call('POST', `${url}/notified`, { to: 'subjects', at: new Date().toISOString() })).statusCode, logLines.join('\n')).toBe(200);
    expect((await call('POST', `${url}/timeline`, { entry: 'Police report filed' })).statusCode, logLines.join('\n')).toBe(200);

    const text = (await call('GET', `${url}/notification?to=authority`)).body;
    expect(text).toContain('Datatilsynet');
    expect(text).toContain('approximate number: about 1200');
    expect(text).toContain('Personvernombudet <personvern@kundesenter.example>');
    expect(text).toContain('Reasons for notifying after 72 hours: The theft was reported');
    const toPeople = (await call('GET', `${url}/notification?to=subjects`)).body;
    expect(toPeople).toContain('We, Kundesenter AS, are writing');

    expect((await call('POST', `${url}/close`)).json()).toMatchObject({ status: 'closed' });
    expect((await call('POST', `${url}/timeline`, { entry: 'Too late' })).json()).toMatchObject({ code: 'invalid_transition' });
    const detail = (await call('GET', url)).json() as { timeline: { entry: string }[] };
    expect(detail.timeline.map((entry) => entry.entry)).toEqual([
      'Breach recorded',
      'Decided: authority notify; subjects notify',
      'Notified the supervisory authority',
      'Notified the people affected',
      'Police report filed',
      'Closed',
    ]);
    // The fresh, undecided breach is on the reminder list with its deadline.
    const reminders = (await call('GET', '/api/v1/privacy/reminders')).json() as { items: { kind: string }[] };
    expect(reminders.items.filter((item) => item.kind === 'breach.authority')).toHaveLength(1);
  });

  it('generates the records of processing from the configuration, as JSON and PDF', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    await tenantDb.transaction(async (trx) => {
      await trx.insertInto('campaigns').values({ name: 'Strøm', purpose: 'sales', jurisdiction: 'nordic_eu', record_calls: true }).execute();
      await trx.insertInto('queues').values({ name: 'Kundeservice', number: '+4722000041' }).execute();
      await trx.insertInto('contact_fields').values({ key: 'customer_no', label: 'Customer number', type: 'text', personal: true }).execute();
    });
    await call('PUT', '/api/v1/privacy/retention-policies/recordings', { retainDays: 90, action: 'delete' });
    const ropa = (await call('GET', '/api/v1/privacy/records-of-processing')).json() as { schema: string; controller: { name: string }; activities: { name: string; purpose: string; dataCategories: string[]; recipients: string[]; transfers: { recipient: string }[]; retention: string[] }[]; securityMeasures: string[] };
    expect(ropa.schema).toBe('ringvakt-ropa/v1');
    expect(ropa.controller.name).toBe('Kundesenter AS');
    const campaign = ropa.activities.find((activity) => activity.name.startsWith('Campaign “Strøm”'));
    expect(campaign).toMatchObject({ purpose: 'Direct marketing by telephone', recipients: ['Cloudy (Hosting)', 'Telia (Telephony carrier)'], retention: ['Call recordings: 90 days, then deleted'] });
    expect(campaign?.dataCategories).toEqual(expect.arrayContaining(['Call recordings (voice)', 'Customer number']));
    expect(campaign?.transfers.map((transfer) => transfer.recipient)).toEqual(['Cloudy']);
    expect(ropa.activities.map((activity) => activity.name)).toEqual(expect.arrayContaining(['Inbound customer service (Kundeservice)', 'Staff accounts and work records']));
    expect(ropa.securityMeasures.length).toBeGreaterThan(5);
    const pdf = await call('GET', '/api/v1/privacy/records-of-processing?format=pdf');
    expect(pdf.headers['content-type']).toBe('application/pdf');
    expect(pdf.rawPayload.subarray(0, 5).toString()).toBe('%PDF-');
    expect(pdf.rawPayload.length).toBeGreaterThan(3000);
    expect((await app.inject({ method: 'GET', url: '/api/v1/privacy/records-of-processing', headers: bearer(tenant.agent.token) })).statusCode).toBe(403);
  });
});
