import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../src/db/kysely.ts';
import type { App } from '../src/server/types.ts';
import { beginLookup } from '../src/modules/contacts/contacts.service.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';

const NAME = 'Kari Nordmann-Contact';
const EMAIL = 'kari.nordmann@contact.example';
registerPersonalData(NAME, EMAIL, '+4791234512', '91234512', '1980-02-29', 'Storgata 1', '+4722334455', '22334455');

describe(`contacts (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let b: SeededTenant;

  const call = (token: string, method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'contacts-a');
    b = await seedTenant(db.handles, 'contacts-b');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  let contactId = '';
  let listId = '';

  it('creates a contact whose personal values exist only as ciphertext, and shows an agent masked values', async () => {
    const list = await call(a.owner.token, 'POST', '/api/v1/lists', { name: 'Oslo leads', defaultRegion: 'NO' });
    expect(list.statusCode).toBe(201);
    listId = list.json().id;
    const field = await call(a.owner.token, 'POST', '/api/v1/contact-fields', { key: 'customer_no', label: 'Customer number', type: 'text', personal: true });
    expect(field.statusCode).toBe(201);
    await call(a.owner.token, 'POST', '/api/v1/contact-fields', { key: 'segment', label: 'Segment', type: 'text', personal: false });

    const created = await call(a.owner.token, 'POST', '/api/v1/contacts', {
      listId,
      externalId: 'crm-1',
      name: NAME,
      phones: [{ kind: 'mobile', number: '912 34 512' }],
      email: ` ${EMAIL.toUpperCase()} `,
      address: { line1: 'Storgata 1', postalCode: '0155', city: 'Oslo', country: 'NO' },
      birthDate: '1980-02-29',
      fields: { customer_no: 'C-778899', segment: 'gold' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const contact = created.json();
    contactId = contact.id;
    expect(contact).toMatchObject({
      name: NAME,
      phones: [{ kind: 'mobile', masked: '+47 •• •• •5 12', region: 'NO' }],
      email: { masked: 'k•••@contact.example' },
      hasAddress: true,
      hasBirthDate: true,
      fields: { segment: 'gold' },
      personalFieldsSet: ['customer_no'],
      timeZones: ['Europe/Oslo'],
      timeZoneSource: 'address',
    });
    expect(created.body).not.toContain('91234512');
    expect(created.body).not.toContain('C-778899');

    const stored = await db.superQuery(
      `SELECT c.*, (SELECT string_agg(encode(number_ciphertext, 'escape'), '') FROM ringvakt.contact_phones p WHERE p.contact_id = c.id) AS phones
         FROM ringvakt.contacts c WHERE c.id = $1`,
      [contactId],
    );
    const raw = JSON.stringify(stored.rows[0]);
    for (const secret of [NAME, 'kari.nordmann', '91234512', 'Storgata', '1980-02-29', 'C-778899']) expect(raw).not.toContain(secret);
    // Every personal value is in the one sealed record (migration 0028); the per-value columns and the phone row's ciphertext stay empty.
    const row = stored.rows[0] as Record<string, unknown>;
    expect(row.record_ciphertext).toBeInstanceOf(Buffer);
    expect([row.name_ciphertext, row.email_ciphertext, row.address_ciphertext, row.birth_date_ciphertext, row.personal_fields_ciphertext, row.phones]).toEqual([null, null, null, null, null, null]);

    const agentView = await call(a.agent.token, 'GET', `/api/v1/contacts/${contactId}`);
    expect(agentView.statusCode).toBe(200);
    expect(agentView.body).not.toContain('91234512');
    expect(agentView.body).not.toContain('kari.nordmann');
  });

  it('finds a contact by any written form of its number and by e-mail, and never across tenants', async () => {
    const search = (token: string, body: Record<string, unknown>) => call(token, 'POST', '/api/v1/contacts/search', body);
    for (const form of ['+47 912 34 512', '004791234512', '91234512']) {
      const found = await search(a.agent.token, { phone: form, region: 'NO' });
      expect(found.statusCode).toBe(200);
      expect(found.json().items.map((item: { id: string }) => item.id)).toEqual([contactId]);
    }
    // A local form without a region takes the tenant's default region (its first list's).
    expect((await search(a.agent.token, { phone: '912 34 512' })).json().items.map((item: { id: string }) => item.id)).toEqual([contactId]);
    expect((await search(a.agent.token, { email: EMAIL })).json().items).toHaveLength(1);
    expect((await search(a.agent.token, { externalId: 'crm-1' })).json().items).toHaveLength(1);
    expect((await search(b.owner.token, { phone: '+4791234512' })).json().items).toEqual([]);
    expect((await call(b.owner.token, 'GET', `/api/v1/contacts/${contactId}`)).statusCode).toBe(404);
    // Personal data never travels in a URL: the list route takes no phone, e-mail or external id.
    const inUrl = await call(a.agent.token, 'GET', '/api/v1/contacts?phone=%2B4791234512');
    expect(inUrl.statusCode).toBe(400);
    expect(inUrl.body).not.toContain('91234512');
    // Every lookup is audited by kind and count, without the value.
    const lookups = await db.superQuery<{ details: Record<string, unknown> }>(`SELECT details FROM ringvakt.audit_events WHERE action = 'contact.lookup' AND tenant_id = $1 ORDER BY id`, [a.tenantId]);
    expect(lookups.rows.map((row) => row.details)).toEqual([
      { by: 'phone', found: 1 },
      { by: 'phone', found: 1 },
      { by: 'phone', found: 1 },
      { by: 'phone', found: 1 },
      { by: 'email', found: 1 },
      { by: 'externalId', found: 1 },
    ]);
  });

  it('pages through every contact that shares a number, and never shows one whose number only shares the blind index', async () => {
    const create = async (number: string) => {
      const created = await call(a.owner.token, 'POST', '/api/v1/contacts', { name: 'Shared Line', phones: [{ kind: 'work', number }] });
      expect(created.statusCode).toBe(201);
      return created.json().id as string;
    };
    // A switchboard that seven contacts share; twelve others (created between them, so that a whole
    // round trip of candidates can hold none of the seven) whose blind index is made to collide with it.
    const sharing = [await create('+4722334455')];
    const colliding: string[] = [];
    for (let index = 0; index < 12; index += 1) colliding.push(await create(`+47223345${String(index + 60)}`));
    for (let index = 0; index < 6; index += 1) sharing.push(await create('+47 22 33 44 55'));
    await db.superQuery(
      `UPDATE ringvakt.contact_phones SET number_index = (SELECT number_index FROM ringvakt.contact_phones WHERE contact_id = $1) WHERE contact_id = ANY($2::uuid[])`,
      [sharing[0], colliding],
    );
    const pages: string[][] = [];
    let after: string | undefined;
    for (let page = 0; page < 10; page += 1) {
      const found = await call(a.owner.token, 'POST', '/api/v1/contacts/search', { phone: '+4722334455', limit: 2, ...(after ? { after } : {}) });
      expect(found.statusCode).toBe(200);
      const body = found.json() as { items: { id: string; phones: { masked: string }[] }[]; nextAfter: string | null };
      pages.push(body.items.map((item) => item.id));
      for (const item of body.items) expect(item.phones.map((phone) => phone.masked)).toEqual(['+47 •• •• •4 55']);
      if (body.nextAfter === null) break;
      after = body.nextAfter;
    }
    const ordered = [...sharing].sort();
    expect(pages).toEqual([ordered.slice(0, 2), ordered.slice(2, 4), ordered.slice(4, 6), ordered.slice(6)]);
  });

  it('stops a user who looks up more numbers than an hour allows, so the number space cannot be walked', async () => {
    await db.handles.forTenant(b.tenantId).transaction((trx) =>
      trx.insertInto('tenant_security_policies').values({ mfa_required_for_all: false, session_idle_minutes: 30, session_absolute_hours: 12, ip_allow_list: [], lookups_per_hour: 3 }).execute(),
    );
    const statuses: number[] = [];
    for (let index = 0; index < 5; index += 1) {
      statuses.push((await call(b.agent.token, 'POST', '/api/v1/contacts/search', { phone: `+479123450${index}` })).statusCode);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    // Browsing a list is not a lookup: it still works.
    expect((await call(b.agent.token, 'GET', '/api/v1/contacts?limit=5')).statusCode).toBe(200);
    const denied = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'contact.lookup' AND outcome = 'denied' AND tenant_id = $1`, [b.tenantId]);
    expect(denied.rows[0]!.n).toBe(2);
    // Over budget, nothing is searched: a number whose stored ciphertext no longer opens (a search
    // would fail on it) is refused for the budget alone.
    const unopenable = await call(b.owner.token, 'POST', '/api/v1/contacts', { name: 'Unopenable', phones: [{ kind: 'mobile', number: '+4791234599' }] });
    expect(unopenable.statusCode).toBe(201);
    const stored = await db.superQuery<{ c: Buffer }>(`SELECT record_ciphertext AS c FROM ringvakt.contacts WHERE id = $1`, [unopenable.json().id]);
    expect(stored.rows[0]!.c).toBeInstanceOf(Buffer);
    await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = substring(record_ciphertext from 1 for 20) || '\\x00' WHERE id = $1`, [unopenable.json().id]);
    expect((await call(b.agent.token, 'POST', '/api/v1/contacts/search', { phone: '+4791234599' })).statusCode).toBe(429);
    await db.superQuery(`UPDATE ringvakt.contacts SET record_ciphertext = $2 WHERE id = $1`, [unopenable.json().id, stored.rows[0]!.c]);
  });

  it('commits a lookup without waiting for the WAL flush, and nothing else', async () => {
    const handle = db.handles.forTenant(a.tenantId);
    const setting = (trx: Parameters<Parameters<typeof handle.transaction>[0]>[0]) =>
      sql<{ s: string }>`SELECT current_setting('synchronous_commit') AS s`.execute(trx).then((result) => result.rows[0]!.s);
    expect(
      await handle.transaction(async (trx) => {
        await beginLookup(trx, a.owner.id);
        return setting(trx);
      }),
    ).toBe('off');
    // Transaction-local: the next transaction on the pool is durable again.
    const after = await Promise.all(Array.from({ length: 12 }, () => handle.transaction((trx) => setting(trx))));
    expect(new Set(after)).toEqual(new Set(['on']));
  });

  it('refuses a reveal to an agent, reveals to a holder of contacts:reveal, and audits who saw which field', async () => {
    const refused = await call(a.agent.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'callback' });
    expect(refused.statusCode).toBe(403);
    const revealed = await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones', 'email', 'personalFields'], reason: 'callback' });
    expect(revealed.statusCode).toBe(200);
    expect(revealed.json()).toMatchObject({ phones: [{ kind: 'mobile', number: '+4791234512' }], email: EMAIL, personalFields: { customer_no: 'C-778899' }, remainingThisHour: 47 });
    const events = await db.superQuery(`SELECT actor_type, actor_id, details FROM ringvakt.audit_events WHERE action = 'contact.reveal' AND target_id = $1 ORDER BY id`, [contactId]);
    expect(events.rows.map((row) => (row.details as { field: string }).field)).toEqual(['phones', 'email', 'personalFields']);
    const ownerToken = await db.superQuery(`SELECT id FROM ringvakt.api_tokens WHERE user_id = $1`, [a.owner.id]);
    expect(events.rows.every((row) => row.actor_type === 'api_token' && row.actor_id === ownerToken.rows[0]!.id)).toBe(true);
    expect(JSON.stringify(events.rows)).not.toContain('91234512');
  });

  it('stops a user at the hourly reveal limit, and records the refusal', async () => {
    await db.handles.forTenant(a.tenantId).transaction((trx) =>
      trx.insertInto('tenant_security_policies').values({ mfa_required_for_all: false, session_idle_minutes: 30, session_absolute_hours: 12, ip_allow_list: [], reveals_per_hour: 5 }).execute(),
    );
    // 3 used above; two more fit, the sixth does not.
    expect((await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['address', 'birthDate'], reason: 'address check' })).statusCode).toBe(200);
    const over = await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'one more' });
    expect(over.statusCode).toBe(429);
    expect(over.json().code).toBe('reveal_limit');
    const denied = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = 'contact.reveal' AND outcome = 'denied' AND target_id = $1`, [contactId]);
    expect(denied.rows[0]!.n).toBe(1);
  });

  it('audits a change with keyed digests of the values, not the values', async () => {
    const changed = await call(a.owner.token, 'PATCH', `/api/v1/contacts/${contactId}`, { phones: [{ kind: 'work', number: '+47 22 33 44 55' }, { kind: 'mobile', number: '91234512' }], notes: 'Prefers mornings' });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.json().phones.map((phone: { kind: string }) => phone.kind)).toEqual(['work', 'mobile']);
    const event = await db.superQuery(`SELECT details FROM ringvakt.audit_events WHERE action = 'contact.update' AND target_id = $1`, [contactId]);
    const details = event.rows[0]!.details as Record<string, string>;
    expect(details.changed).toBe('phones,notes');
    expect(details.phonesDigest).toMatch(/^[0-9a-f]{32}$/);
    expect(JSON.stringify(details)).not.toContain('22334455');
    expect(JSON.stringify(details)).not.toContain('mornings');
  });

  it('rejects bad values with a clear code that does not echo them, and keeps the contact as it was', async () => {
    const bad = await call(a.owner.token, 'PATCH', `/api/v1/contacts/${contactId}`, { phones: [{ kind: 'mobile', number: '070-123 45 67' }] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'phone_invalid', detail: 'phones[0]: not a valid number for its country' });
    expect(bad.body).not.toContain('070');
    const field = await call(a.owner.token, 'PATCH', `/api/v1/contacts/${contactId}`, { fields: { nope: 'x' } });
    expect(field.json().code).toBe('field_invalid');
    const email = await call(a.owner.token, 'PATCH', `/api/v1/contacts/${contactId}`, { email: 'not-an-address' });
    expect(email.json().code).toBe('email_invalid');
    const zone = await call(a.owner.token, 'PATCH', `/api/v1/contacts/${contactId}`, { timeZone: 'Mars/Olympus' });
    expect(zone.json().code).toBe('validation_failed');
    const after = await call(a.owner.token, 'GET', `/api/v1/contacts/${contactId}`);
    expect(after.json().phones).toHaveLength(2);
    const duplicate = await call(a.owner.token, 'POST', '/api/v1/contacts', { externalId: 'crm-1', name: 'Someone' });
    expect(duplicate.statusCode).toBe(409);
  });

  it('records consent per purpose; an objection to sales calls suppresses every number at once', async () => {
    const grant = await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/consents`, { purpose: 'sales', action: 'grant', basis: 'consent', source: 'web form', evidenceRef: 'form-2026-0042' });
    expect(grant.statusCode).toBe(201);
    expect(grant.json().current.find((entry: { purpose: string }) => entry.purpose === 'sales')).toMatchObject({ allowed: true, basis: 'consent' });
    const noBasis = await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/consents`, { purpose: 'sales', action: 'grant', source: 'web form' });
    expect(noBasis.statusCode).toBe(400);

    const before = await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: '+4722334455' });
    expect(before.json().suppressed).toBe(false);
    // An ordinary request suppression of one of the numbers exists before the objection.
    const request = await call(a.owner.token, 'POST', '/api/v1/suppressions', { phone: '+4791234512', reason: 'request', source: 'agent' });
    expect(request.statusCode).toBe(201);
    const objection = await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/consents`, { purpose: 'sales', action: 'object', source: 'phone call' });
    expect(objection.statusCode).toBe(201);
    expect(objection.json().current.find((entry: { purpose: string }) => entry.purpose === 'sales')).toMatchObject({ allowed: false });
    expect(objection.json().history).toHaveLength(2);
    for (const form of ['+47 22 33 44 55', '0047 91 23 45 12']) {
      const check = await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: form });
      expect(check.json()).toMatchObject({ suppressed: true, matches: [{ scope: 'tenant', reason: 'objection' }] });
    }
    const emailCheck = await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { email: EMAIL.toUpperCase() });
    expect(emailCheck.json().suppressed).toBe(true);
    const matches = await db.superQuery(`SELECT count(*)::int AS n FROM ringvakt.suppression_matches WHERE tenant_id = $1 AND context = 'check'`, [a.tenantId]);
    expect(matches.rows[0]!.n).toBe(3);
    // The objection took over the earlier request entry, so lifting that entry cannot undo it.
    const lift = await call(a.owner.token, 'DELETE', `/api/v1/suppressions/${request.json().id}`);
    expect(lift.statusCode).toBe(409);
    expect((await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: '+4791234512' })).json().suppressed).toBe(true);
    // Match history and consent history are append-only for the server's own database role.
    for (const table of ['suppression_matches', 'consent_events']) {
      await expect(db.handles.forTenant(a.tenantId).transaction((trx) => trx.deleteFrom(table as 'consent_events').execute())).rejects.toThrow(/permission denied/);
    }
    // Another tenant's check knows nothing of it.
    expect((await call(b.owner.token, 'POST', '/api/v1/suppressions/check', { phone: '+4722334455' })).json().suppressed).toBe(false);
  });

  it('suppresses per campaign and with an expiry, and loads national registry files in their own formats', async () => {
    const campaign = await call(a.owner.token, 'POST', '/api/v1/campaigns', { name: 'Winter sale' });
    expect(campaign.statusCode).toBe(201);
    const campaignId = campaign.json().id;
    await call(a.owner.token, 'POST', '/api/v1/suppressions', { phone: '+358 40 123 4567', scope: 'campaign', campaignId, reason: 'request', source: 'agent' });
    expect((await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: '00358401234567' })).json().suppressed).toBe(false);
    expect((await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: '040 123 4567', region: 'FI', campaignId })).json().suppressed).toBe(true);
    await call(a.owner.token, 'POST', '/api/v1/suppressions', { phone: '+46 70 123 45 67', reason: 'request', source: 'agent', expiresAt: new Date(Date.now() - 1000).toISOString() });
    expect((await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: '+46701234567' })).json().suppressed).toBe(false);

    const files: Record<string, { body: string; hit: string; entries: number }> = {
      no_reservasjon: { body: 'telefonnummer;dato\n41234567;2026-11-01\n91234599;2026-11-02\n12;bad\n', hit: '+47 41 23 45 67', entries: 2 },
      uk_tps: { body: '07911123456\r\n02079460123\r\n', hit: '+44 7911 123456', entries: 2 },
      us_dnc: { body: '212,5550123\n6502530000\n', hit: '+1 (212) 555-0123', entries: 2 },
    };
    for (const [format, file] of Object.entries(files)) {
      const loaded = await app.inject({ method: 'PUT', url: `/api/v1/suppression-registries/${format}`, headers: { ...bearer(a.owner.token), origin: PUBLIC_URL, 'content-type': 'text/plain' }, payload: file.body });
      expect(loaded.statusCode, loaded.body).toBe(200);
      expect(loaded.json().entries).toBe(file.entries);
      expect((await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: file.hit })).json()).toMatchObject({ suppressed: true, matches: [{ scope: 'registry' }] });
    }
    // Each load leaves the planner statistics of what it wrote (the next import checks every number
    // against them at once, by index only if the planner knows how many there are).
    const statistics = await db.superQuery<{ planned: number; stored: number }>(
      `SELECT (SELECT reltuples FROM pg_class WHERE oid = 'ringvakt.suppressions'::regclass)::int AS planned, (SELECT count(*) FROM ringvakt.suppressions)::int AS stored`,
    );
    expect(statistics.rows[0]!.planned).toBe(statistics.rows[0]!.stored);
    // A newer file replaces the registry's entries.
    await app.inject({ method: 'PUT', url: '/api/v1/suppression-registries/no_reservasjon', headers: { ...bearer(a.owner.token), origin: PUBLIC_URL, 'content-type': 'text/plain' }, payload: '91234599\n' });
    expect((await call(a.agent.token, 'POST', '/api/v1/suppressions/check', { phone: '+4741234567' })).json().suppressed).toBe(false);
    const notText = await app.inject({ method: 'PUT', url: '/api/v1/suppression-registries/uk_tps', headers: { ...bearer(a.owner.token), origin: PUBLIC_URL, 'content-type': 'text/plain' }, payload: Buffer.from([0xff, 0xfe, 0x00, 0x41]) });
    expect(notText.json().code).toBe('registry_invalid');
  });

  it('exports a list with formula cells neutralised, only with contacts:export and a fresh sign-in', async () => {
    await call(a.owner.token, 'PATCH', `/api/v1/contacts/${contactId}`, { name: '=HYPERLINK("http://evil.example","x")' });
    expect((await call(a.agent.token, 'GET', `/api/v1/lists/${listId}/export`)).statusCode).toBe(403);
    const exported = await call(a.owner.token, 'GET', `/api/v1/lists/${listId}/export`);
    expect(exported.statusCode).toBe(200);
    expect(exported.headers['content-type']).toContain('text/csv');
    expect(exported.body).toContain(`'=HYPERLINK`);
    expect(exported.body).toContain(`'+4722334455`);
    expect(exported.body).not.toMatch(/(^|,)=HYPERLINK/m);
    // Every cell is quoted: split on ';' (a Nordic spreadsheet's list separator), no cell starts a formula.
    for (const line of exported.body.trim().split('\n')) {
      expect(line.startsWith('"')).toBe(true);
      for (const cell of line.split(';')) expect(cell).not.toMatch(/^[=+\-@]/);
    }
  });

  it('erases a contact by destroying its key: the values are gone, the tombstone says erased', async () => {
    const erased = await call(a.owner.token, 'DELETE', `/api/v1/contacts/${contactId}`);
    expect(erased.statusCode).toBe(204);
    const view = await call(a.owner.token, 'GET', `/api/v1/contacts/${contactId}`);
    expect(view.json()).toMatchObject({ status: 'erased', name: null, phones: [], email: null });
    expect((await call(a.owner.token, 'POST', `/api/v1/contacts/${contactId}/reveal`, { fields: ['phones'], reason: 'after erasure' })).statusCode).toBe(410);
    const key = await db.superQuery(`SELECT wrapped_key, destroyed_at FROM ringvakt.subject_keys WHERE subject_id = $1`, [contactId]);
    expect(key.rows[0]).toMatchObject({ wrapped_key: null });
    expect(key.rows[0]!.destroyed_at).not.toBeNull();
  });
});
