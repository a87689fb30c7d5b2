import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { App } from '../src/server/types.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { findMatches } from '../src/modules/suppression/suppression.service.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { createCallees } from './support/dialer-floor.ts';
import { registerPersonalData } from './support/canary.ts';

const NOTE = 'Asked to be called after the school run, card ending 4242';
registerPersonalData(NOTE);

/** Campaign settings, readiness and the agent's side of a call, through the API. */
describe(`campaigns and agents API (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let a: SeededTenant;
  let b: SeededTenant;

  const call = (token: string, method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'campaigns-a');
    b = await seedTenant(db.handles, 'campaigns-b');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('lists the jurisdiction profiles with their rules', async () => {
    const response = await call(a.owner.token, 'GET', '/api/v1/jurisdictions');
    expect(response.statusCode).toBe(200);
    const items = response.json().items as { code: string; abandonCap: number; abandonWindowHours: number; abandonLockoutHours: number | null; minRingMs: number; connectLimitMs: number; abandonMeasure: string }[];
    expect(items.map((item) => item.code)).toEqual(['nordic_eu', 'uk_ofcom', 'us_tsr']);
    expect(items.find((item) => item.code === 'us_tsr')).toMatchObject({ abandonCap: 0.03, abandonWindowHours: 720, abandonLockoutHours: null, minRingMs: 15000, connectLimitMs: 2000, abandonMeasure: 'live_answers' });
    expect(items.find((item) => item.code === 'uk_ofcom')).toMatchObject({ abandonCap: 0.03, abandonWindowHours: 24, abandonLockoutHours: 72, abandonMeasure: 'live_answers_with_amd_estimate' });
  });

  it('refuses settings that could never dial or that break the profile, and creates nothing', async () => {
    const refused: [unknown, string, string][] = [
      [{ name: 'Never open', jurisdiction: 'us_tsr', hours: [{ start: '06:00', end: '08:00' }] }, 'campaign_settings_invalid', 'body/hours'],
      [{ name: 'Sunday only', jurisdiction: 'nordic_eu', hours: [{ start: '10:00', end: '12:00', days: [0] }] }, 'campaign_settings_invalid', 'body/hours'],
      [{ name: 'Backwards', hours: [{ start: '17:00', end: '09:00' }] }, 'campaign_settings_invalid', 'body/hours/0'],
      [{ name: 'Short ring', jurisdiction: 'us_tsr', ringTimeoutMs: 10_000 }, 'campaign_settings_invalid', 'body/ringTimeoutMs'],
      [{ name: 'Early redial', jurisdiction: 'uk_ofcom', retryRules: { abandoned: { retry: true, afterMinutes: 60 } } }, 'campaign_settings_invalid', 'body/retryRules/abandoned/afterMinutes'],
      [{ name: 'Unknown law', jurisdiction: 'xx_none' }, 'campaign_settings_invalid', 'body/jurisdiction'],
      [{ name: 'No attempts', maxAttempts: 0 }, 'validation_failed', 'body/maxAttempts'],
      [{ name: 'Retry loop', retryRules: { busy: { retry: true, afterMinutes: 0 } } }, 'validation_failed', 'body/retryRules/busy/afterMinutes'],
      [{ name: 'Twice', dispositions: [{ code: 'sale', label: 'Sale', kind: 'success' }, { code: 'sale', label: 'Sale again', kind: 'final' }] }, 'campaign_settings_invalid', 'body/dispositions'],
      [{ name: 'Bad caller id', callerId: '22 33 44 55' }, 'validation_failed', 'body/callerId'],
      [{ name: 'Unknown field', pacingGain: 3 }, 'validation_failed', ''],
    ];
    for (const [body, code, path] of refused) {
      const response = await call(a.owner.token, 'POST', '/api/v1/campaigns', body);
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
      expect(response.headers['content-type']).toContain('application/problem+json');
      const problem = response.json() as { code: string; errors?: { path: string }[] };
      expect(problem.code, JSON.stringify(body)).toBe(code);
      if (path) expect(problem.errors?.map((error) => error.path), JSON.stringify(body)).toContain(path);
    }
    const list = await call(a.owner.token, 'GET', '/api/v1/campaigns');
    expect(list.json().items).toEqual([]);
  });

  let campaignId = '';
  let callees: { ids: string[]; numbers: string[] } = { ids: [], numbers: [] };

  it('starts a campaign only when it is ready, then loads its contacts into the hopper once', async () => {
    const created = await call(a.owner.token, 'POST', '/api/v1/campaigns', { name: 'Spring', jurisdiction: 'uk_ofcom', mode: 'predictive' });
    expect(created.statusCode).toBe(201);
    campaignId = created.json().id as string;
    expect(created.json()).toMatchObject({ state: 'draft', mode: 'predictive', jurisdiction: 'uk_ofcom', maxAttempts: 3, ringTimeoutMs: 25000 });
    expect(created.json().dispositions.map((entry: { code: string }) => entry.code)).toContain('do_not_call');

    const start = () => call(a.owner.token, 'POST', `/api/v1/campaigns/${campaignId}/start`);
    let response = await start();
    expect(response.statusCode).toBe(409);
    expect(response.json()).toMatchObject({ code: 'campaign_not_ready' });
    expect(response.json().detail).toContain('caller id');

    expect((await call(a.owner.token, 'PATCH', `/api/v1/campaigns/${campaignId}`, { callerId: '+441632960001' })).statusCode).toBe(200);
    response = await start();
    expect(response.statusCode).toBe(409);
    expect(response.json().detail).toContain('uk_tps');

    const tenantDb = db.handles.forTenant(a.tenantId);
    await tenantDb.transaction((trx) => trx.insertInto('suppression_registries').values({ format: 'uk_tps', name: 'TPS' }).execute());
    response = await start();
    expect(response.statusCode).toBe(409);
    expect(response.json().detail).toContain('contact list');

    callees = await createCallees(tenantDb, db.handles, 5, '+4798');
    const list = await call(a.owner.token, 'POST', '/api/v1/lists', { name: 'Spring list', defaultRegion: 'NO', campaignId });
    expect(list.statusCode).toBe(201);
    expect((await call(a.owner.token, 'POST', `/api/v1/lists/${list.json().id}/members`, { add: callees.ids })).statusCode).toBe(200);
    response = await start();
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ state: 'active', hopperAdded: 5 });
    expect(response.json().startedAt).not.toBeNull();
    // Starting again adds nobody twice.
    expect((await start()).json()).toMatchObject({ state: 'active', hopperAdded: 0 });
    const hopper = await call(a.owner.token, 'GET', `/api/v1/campaigns/${campaignId}/hopper`);
    expect(hopper.json()).toEqual({ readyNow: 5, readyLater: 0, reserved: 0, done: 0 });

    // The law of a running campaign does not change under it.
    response = await call(a.owner.token, 'PATCH', `/api/v1/campaigns/${campaignId}`, { jurisdiction: 'us_tsr' });
    expect(response.statusCode).toBe(409);
    expect(response.json().code).toBe('invalid_transition');
    response = await call(a.owner.token, 'PATCH', `/api/v1/campaigns/${campaignId}`, { purpose: 'survey' });
    expect(response.statusCode).toBe(409);
    expect((await call(a.owner.token, 'POST', `/api/v1/campaigns/${campaignId}/pause`)).json().state).toBe('paused');
    response = await call(a.owner.token, 'POST', `/api/v1/campaigns/${campaignId}/pause`);
    expect(response.statusCode).toBe(409);
    expect(response.json().code).toBe('invalid_transition');

    // Another tenant's campaign does not exist for this one.
    expect((await call(b.owner.token, 'GET', `/api/v1/campaigns/${campaignId}`)).statusCode).toBe(404);
    expect((await call(b.owner.token, 'POST', `/api/v1/campaigns/${campaignId}/start`)).statusCode).toBe(404);
  });

  it('lets an agent change only its own state, along allowed transitions', async () => {
    let response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state: 'available' });
    expect(response.statusCode).toBe(400);
    expect(response.json().code).toBe('validation_failed');
    response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state: 'on_call' });
    expect(response.statusCode).toBe(400);
    response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state: 'paused' });
    expect(response.statusCode).toBe(400);
    response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state: 'available', campaignId });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ state: 'available', campaignId });
    response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state: 'paused', reason: 'lunch' });
    expect(response.json()).toMatchObject({ state: 'paused', reason: 'lunch' });
    response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state: 'available', campaignId });
    expect(response.statusCode).toBe(200);

    // On a call, the agent cannot walk away from it.
    const tenantDb = db.handles.forTenant(a.tenantId);
    await tenantDb.transaction((trx) => trx.updateTable('agent_states').set({ state: 'reserved' }).where('user_id', '=', a.agent.id).execute());
    // Reserved for a call the dialer is connecting: the agent cannot slip away either.
    for (const state of ['available', 'paused', 'offline']) {
      response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state, reason: 'break', campaignId });
      expect(response.statusCode, `reserved → ${state}`).toBe(409);
    }
    await tenantDb.transaction((trx) => setAgentState(trx, a.agent.id, { state: 'on_call', now: new Date() }));
    for (const state of ['offline', 'paused', 'available']) {
      response = await call(a.agent.token, 'PUT', '/api/v1/agent/state', { state, reason: 'break', campaignId });
      expect(response.statusCode, state).toBe(409);
      expect(response.json().code).toBe('invalid_transition');
    }
    const agents = await call(a.owner.token, 'GET', '/api/v1/agents');
    expect(agents.json().items).toEqual([expect.objectContaining({ userId: a.agent.id, state: 'on_call' })]);
    // An agent does not see the floor.
    expect((await call(a.agent.token, 'GET', '/api/v1/agents')).statusCode).toBe(403);
    await tenantDb.transaction((trx) => setAgentState(trx, a.agent.id, { state: 'wrap_up', now: new Date(), wrapUpUntil: new Date(Date.now() + 60_000) }));
  });

  it('takes a disposition only from the agent who had the call, once, with encrypted notes; do-not-call suppresses the number', async () => {
    const tenantDb = db.handles.forTenant(a.tenantId);
    const hopper = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select('contact_id').where('campaign_id', '=', campaignId).orderBy('contact_id').execute());
    const attemptFor = async (contactId: string, agentId: string | null, state: 'ended' | 'connected') => {
      const id = randomUUID();
      await tenantDb.transaction(async (trx) => {
        await trx.updateTable('campaign_contacts').set({ state: 'reserved', attempts: 1, dials: 1 }).where('contact_id', '=', contactId).where('campaign_id', '=', campaignId).execute();
        await trx
          .insertInto('dial_attempts')
          .values({ id, campaign_id: campaignId, contact_id: contactId, attempt: 1, dialer: 'test', state, agent_id: agentId, phone_position: 0, dialed_at: new Date(), outcome: state === 'ended' ? 'live' : null, ended_at: state === 'ended' ? new Date() : null })
          .execute();
        await trx.updateTable('agent_states').set({ attempt_id: id }).where('user_id', '=', a.agent.id).where('state', '=', 'wrap_up').execute();
      });
      return id;
    };
    const mine = await attemptFor(hopper[0]?.contact_id as string, a.agent.id, 'ended');
    const owners = await attemptFor(hopper[1]?.contact_id as string, a.owner.id, 'ended');
    const live = await attemptFor(hopper[2]?.contact_id as string, a.agent.id, 'connected');
    const dispose = (id: string, body: unknown, token = a.agent.token) => call(token, 'POST', `/api/v1/agent/calls/${id}/disposition`, body);

    // Someone else's call, and no call at all, answer alike.
    expect((await dispose(owners, { code: 'sale' })).statusCode).toBe(404);
    expect((await dispose(randomUUID(), { code: 'sale' })).statusCode).toBe(404);
    expect((await dispose(mine, { code: 'sale' }, b.agent.token)).statusCode).toBe(404);
    let response = await dispose(live, { code: 'sale' });
    expect(response.statusCode).toBe(409);
    expect(response.json().code).toBe('invalid_transition');
    response = await dispose(mine, { code: 'bought_a_boat' });
    expect(response.statusCode).toBe(400);
    response = await dispose(mine, { code: 'callback' });
    expect(response.statusCode).toBe(400);
    expect(response.json().errors[0].path).toBe('body/callbackAt');
    response = await dispose(mine, { code: 'callback', callbackAt: new Date(Date.now() - 60_000).toISOString() });
    expect(response.statusCode).toBe(400);

    const callbackAt = new Date(Date.now() + 86_400_000);
    await tenantDb.transaction((trx) => trx.updateTable('agent_states').set({ attempt_id: mine }).where('user_id', '=', a.agent.id).execute());
    response = await dispose(mine, { code: 'callback', notes: NOTE, callbackAt: callbackAt.toISOString() });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ disposition: 'callback', nextAt: callbackAt.toISOString() });
    // The callback comes back when due, for this agent; the wrap-up ended with the disposition.
    const due = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select(['state', 'next_at', 'callback_agent_id']).where('contact_id', '=', hopper[0]?.contact_id as string).executeTakeFirstOrThrow());
    expect(due).toEqual({ state: 'ready', next_at: callbackAt, callback_agent_id: a.agent.id });
    const agentState = await call(a.agent.token, 'GET', '/api/v1/agent/state');
    expect(agentState.json().state).toBe('available');
    // Notes are stored encrypted: the plaintext is nowhere in the row.
    const stored = await db.superQuery<{ notes_ciphertext: Buffer }>('SELECT notes_ciphertext FROM ringvakt.dial_attempts WHERE id = $1', [mine]);
    expect(stored.rows[0]?.notes_ciphertext.length).toBeGreaterThan(NOTE.length);
    expect(stored.rows[0]?.notes_ciphertext.toString('latin1')).not.toContain('school run');
    response = await dispose(mine, { code: 'sale' });
    expect(response.statusCode).toBe(409);

    // Do not call: the number dialed is suppressed at once.
    await tenantDb.transaction((trx) => trx.updateTable('dial_attempts').set({ agent_id: a.agent.id }).where('id', '=', owners).execute());
    response = await dispose(owners, { code: 'do_not_call' });
    expect(response.statusCode).toBe(200);
    const crypto = await db.handles.crypto();
    const number = callees.numbers[callees.ids.indexOf(hopper[1]?.contact_id as string)] as string;
    const matches = await tenantDb.read((trx) => findMatches(trx, crypto, 'phone', number));
    expect(matches.map((match) => match.reason)).toEqual(['request']);
    const done = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select('state').where('contact_id', '=', hopper[1]?.contact_id as string).executeTakeFirstOrThrow());
    expect(done.state).toBe('done');
  });
});
