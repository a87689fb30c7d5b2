import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { permissions } from '../src/modules/access/permissions.ts';
import { issueApiToken } from '../src/modules/api-tokens/api-tokens.service.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { addSuppression } from '../src/modules/suppression/suppression.service.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, capturingLogger, PUBLIC_URL } from './support/app.ts';
import { registerPersonalData } from './support/canary.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { ALL_LIVE, createCallees, floorFor, openMinuteInOslo, startedCampaign } from './support/dialer-floor.ts';

type Preview = { holdUntil: string; requestedAt: string | null; callback: boolean; campaign: { name: string; script: string | null }; contact: { id: string; name: string | null; phones: { masked: string }[] } };

/**
 * Preview dialing end to end: agents are shown contacts one at a time (never the same one to two
 * agents), choose to call or skip; the dialer places exactly the calls chosen, through the same
 * dial-time checks as every dial, and each person reaches the agent who chose the call.
 */
describe(`preview dialing (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;
  let tenantDb: TenantDb;
  let second: { id: string; token: string };
  const capture = capturingLogger('warn');

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'preview-a');
    tenantDb = db.handles.forTenant(tenant.tenantId);
    app = await buildTestApp(db, { logger: capture.logger });
    const { cipher } = await db.handles.crypto();
    second = await tenantDb.transaction(async (trx) => {
      const email = 'second.agent@preview-a.example';
      registerPersonalData(email);
      const user = await createUser(trx, cipher, { email, displayName: 'Second agent', role: 'agent' });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      const { token } = await issueApiToken(trx, tenant.tenantId, { userId: user.id, name: 'second agent', expiresAt: new Date(Date.now() + 3_600_000), scopes: permissions });
      return { id: user.id, token };
    });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const call = (token: string, method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) =>
    app.inject({ method, url, headers: { ...bearer(token), origin: PUBLIC_URL }, ...(payload ? { payload } : {}) });
  const next = async (token: string) => {
    const response = await call(token, 'POST', '/api/v1/agent/preview');
    expect(response.statusCode, `${response.body} ${capture.lines.slice(-3).join('\n')}`).toBe(200);
    return (response.json() as { preview: Preview | null }).preview;
  };
  const agentState = async (userId: string) => (await db.superQuery<{ state: string; attempt_id: string | null }>(`SELECT state, attempt_id FROM ringvakt.agent_states WHERE user_id = $1`, [userId])).rows[0];
  const audited = async (action: string) => (await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE action = $1`, [action])).rows[0]!.n;

  it('shows each agent their own contact, dials only what an agent chose, checked at dial time, and gives the person to that agent', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, db.handles, 4, '+4791');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Preview', mode: 'preview', wrapUpMs: 60_000 });
    // A known order: contacts 0, 1, 2, 3 fall due one after another.
    for (const [index, id] of callees.ids.entries()) {
      await db.superQuery(`UPDATE ringvakt.campaign_contacts SET next_at = now() - make_interval(mins => $2) WHERE contact_id = $1`, [id, 10 - index]);
    }
    // Contact 1's number went on the do-not-call list after the campaign started.
    await tenantDb.transaction(async (trx) => addSuppression(trx, await db.handles.crypto(), { channel: 'phone', value: callees.numbers[1]!, scope: 'tenant', reason: 'request', source: 'test', createdBy: 'test' }));
    const floor = await floorFor({ tenantDb, handles: db.handles, campaignId, model: ALL_LIVE, startMs: start, logger: db.logger });

    // Not available yet: nothing is shown.
    const early = await call(tenant.agent.token, 'POST', '/api/v1/agent/preview');
    expect(early.statusCode).toBe(409);
    expect(early.json()).toMatchObject({ code: 'invalid_transition' });

    for (const token of [tenant.agent.token, second.token]) expect((await call(token, 'PUT', '/api/v1/agent/state', { state: 'available', campaignId })).statusCode).toBe(200);
    const first = await next(tenant.agent.token);
    expect(first?.contact.id).toBe(callees.ids[0]);
    // Masked, with the campaign's script: the full number is never in the preview.
    expect(first?.contact.phones[0]?.masked).toContain('•');
    expect(JSON.stringify(first)).not.toContain(callees.numbers[0]);
    // Asking again shows the same contact (held for me); the other agent gets the next one.
    expect((await next(tenant.agent.token))?.contact.id).toBe(callees.ids[0]);
    expect((await next(second.token))?.contact.id).toBe(callees.ids[1]);
    // Another agent's contact: the same answer as one that does not exist.
    const foreign = await call(second.token, 'POST', `/api/v1/agent/preview/${callees.ids[0]}/call`);
    expect(foreign.statusCode).toBe(404);

    // Skipped: not an attempt, and the next contact is shown.
    expect((await call(tenant.agent.token, 'POST', `/api/v1/agent/preview/${callees.ids[0]}/skip`)).statusCode).toBe(200);
    expect((await next(tenant.agent.token))?.contact.id).toBe(callees.ids[2]);

    // The second agent calls contact 1, whose number is suppressed: refused at dial time; the agent is free again and told why.
    expect((await call(second.token, 'POST', `/api/v1/agent/preview/${callees.ids[1]}/call`)).statusCode).toBe(200);
    expect(await agentState(second.id)).toMatchObject({ state: 'reserved', attempt_id: null });
    // The first agent calls contact 2 — twice, as a double click would.
    const [once, twice] = await Promise.all([
      call(tenant.agent.token, 'POST', `/api/v1/agent/preview/${callees.ids[2]}/call`),
      call(tenant.agent.token, 'POST', `/api/v1/agent/preview/${callees.ids[2]}/call`),
    ]);
    expect([once.statusCode, twice.statusCode]).toEqual([200, 200]);
    await floor.run(start + 2_000);
    expect(floor.sent.map((dial) => dial.to)).toEqual([callees.numbers[2]]);
    expect(await agentState(second.id)).toMatchObject({ state: 'available', attempt_id: null });
    const told = (await call(second.token, 'GET', '/api/v1/agent/preview')).json() as { preview: Preview | null; lastDial: { contactName: string; outcome: string; reason: string } | null };
    expect(told.preview).toBeNull();
    expect(told.lastDial).toMatchObject({ contactName: 'Callee +4791 1', outcome: 'skipped', reason: 'suppression' });

    // The first agent's call rings: it is theirs (the desktop shows it dialing), and they may end it.
    const ringing = (await call(tenant.agent.token, 'GET', '/api/v1/agent/call')).json() as { call: { state: string; contact: { id: string } } | null };
    expect(ringing.call).toMatchObject({ state: 'dialing', contact: { id: callees.ids[2] } });
    // Answered: the person goes to the agent who chose the call, not to the other (longest idle) one.
    await floor.run(start + 8_000);
    const attempts = await db.superQuery<{ contact_id: string; state: string; outcome: string | null; skip_reason: string | null; requested_by: string; agent_id: string | null }>(
      `SELECT contact_id, state, outcome, skip_reason, requested_by, agent_id FROM ringvakt.dial_attempts WHERE campaign_id = $1 ORDER BY reserved_at, contact_id`,
      [campaignId],
    );
    expect(attempts.rows).toHaveLength(2);
    expect(attempts.rows).toEqual(
      expect.arrayContaining([
        { contact_id: callees.ids[1], state: 'skipped', outcome: 'skipped', skip_reason: 'suppression', requested_by: second.id, agent_id: null },
        { contact_id: callees.ids[2], state: 'connected', outcome: null, skip_reason: null, requested_by: tenant.agent.id, agent_id: tenant.agent.id },
      ]),
    );
    expect(await agentState(tenant.agent.id)).toMatchObject({ state: 'on_call' });
    expect(await agentState(second.id)).toMatchObject({ state: 'available' });
    // Nothing else was dialed although an agent was free: a preview campaign dials only what is chosen.
    expect(floor.sent).toHaveLength(1);

    // The call ends; the agent files a callback for themselves. It is shown to them first, never to the other agent.
    await floor.run(start + 40_000);
    const ended = await db.superQuery<{ id: string; outcome: string }>(`SELECT id, outcome FROM ringvakt.dial_attempts WHERE contact_id = $1`, [callees.ids[2]]);
    expect(ended.rows[0]?.outcome).toBe('live');
    const filed = await call(tenant.agent.token, 'POST', `/api/v1/agent/calls/${ended.rows[0]!.id}/disposition`, { code: 'callback', callbackAt: new Date(Date.now() + 3_600_000).toISOString() });
    expect(filed.statusCode, filed.body).toBe(200);
    await db.superQuery(`UPDATE ringvakt.campaign_contacts SET next_at = now() - interval '5 minutes' WHERE contact_id = $1`, [callees.ids[2]]);
    expect((await next(second.token))?.contact.id).toBe(callees.ids[3]);
    const mine = await next(tenant.agent.token);
    expect(mine).toMatchObject({ contact: { id: callees.ids[2] }, callback: true });
    expect(mine?.contact.id).not.toBe(callees.ids[0]);

    // Asked and taken back before the dialer placed it: no call, and the agent is available again.
    expect((await call(second.token, 'POST', `/api/v1/agent/preview/${callees.ids[3]}/call`)).statusCode).toBe(200);
    expect((await call(second.token, 'POST', `/api/v1/agent/preview/${callees.ids[3]}/cancel`)).statusCode).toBe(200);
    expect(await agentState(second.id)).toMatchObject({ state: 'available' });
    await floor.run(start + 42_000);
    expect(floor.sent).toHaveLength(1);
    // A hold that ran out stays mine until another agent is shown the contact; then it is theirs.
    await db.superQuery(`UPDATE ringvakt.campaign_contacts SET preview_until = now() - interval '1 second' WHERE contact_id = $1`, [callees.ids[3]]);
    expect((await call(tenant.agent.token, 'POST', `/api/v1/agent/preview/${callees.ids[2]}/skip`)).statusCode).toBe(200);
    expect((await next(tenant.agent.token))?.contact.id).toBe(callees.ids[3]);
    const late = await call(second.token, 'POST', `/api/v1/agent/preview/${callees.ids[3]}/call`);
    expect(late.statusCode).toBe(404);
    expect(await agentState(second.id)).toMatchObject({ state: 'available' });

    // A call asked for on a campaign that is then paused is not placed: the agent is free again, the contact still shown.
    expect((await call(tenant.agent.token, 'POST', `/api/v1/agent/preview/${callees.ids[3]}/call`)).statusCode).toBe(200);
    expect(await agentState(tenant.agent.id)).toMatchObject({ state: 'reserved' });
    expect((await call(tenant.owner.token, 'POST', `/api/v1/campaigns/${campaignId}/pause`)).statusCode).toBe(200);
    expect(await agentState(tenant.agent.id)).toMatchObject({ state: 'available', attempt_id: null });
    await floor.run(start + 44_000);
    expect(floor.sent).toHaveLength(1);
    const shown = (await call(tenant.agent.token, 'GET', '/api/v1/agent/preview')).json() as { preview: Preview | null };
    expect(shown.preview).toMatchObject({ requestedAt: null, contact: { id: callees.ids[3] } });
    // Asking again on the paused campaign is refused, and holds no one.
    const refused = await call(tenant.agent.token, 'POST', `/api/v1/agent/preview/${callees.ids[3]}/call`);
    expect(refused.statusCode).toBe(409);
    expect(await agentState(tenant.agent.id)).toMatchObject({ state: 'available' });
    // A pause hands the contact back.
    expect((await call(tenant.agent.token, 'PUT', '/api/v1/agent/state', { state: 'paused', reason: 'break' })).statusCode).toBe(200);
    const held = await db.superQuery<{ preview_agent_id: string | null }>(`SELECT preview_agent_id FROM ringvakt.campaign_contacts WHERE contact_id = $1`, [callees.ids[3]]);
    expect(held.rows[0]?.preview_agent_id).toBeNull();

    // Every choice is in the ledger, once: four calls asked for (the double click counted once), two skips, one cancel.
    expect(await audited('call.preview_dial')).toBe(4);
    expect(await audited('call.preview_skip')).toBe(2);
    expect(await audited('call.preview_cancel')).toBe(1);
    await floor.dialer.stop();
  }, 60_000);

  it('lets the agent end a preview call while it rings: recorded as cancelled, the person tried again later, the agent free', async () => {
    // After the first test's simulated minute (the same agents' calls follow one another in time).
    const start = openMinuteInOslo() + 120_000;
    const callees = await createCallees(tenantDb, db.handles, 1, '+4792');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Preview hang-up', mode: 'preview' });
    // A slow answer: 20 s of ringing, so the agent gives up first.
    const floor = await floorFor({ tenantDb, handles: db.handles, campaignId, model: { ...ALL_LIVE, liveRingMs: { kind: 'fixed', ms: 20_000 } }, startMs: start, logger: db.logger });
    expect((await call(second.token, 'PUT', '/api/v1/agent/state', { state: 'available', campaignId })).statusCode).toBe(200);
    expect((await next(second.token))?.contact.id).toBe(callees.ids[0]);
    expect((await call(second.token, 'POST', `/api/v1/agent/preview/${callees.ids[0]}/call`)).statusCode).toBe(200);
    await floor.run(start + 3_000);
    const ringing = (await call(second.token, 'GET', '/api/v1/agent/call')).json() as { call: { attemptId: string; state: string } | null };
    expect(ringing.call?.state).toBe('dialing');
    // The first agent cannot end it: only the one who chose the call.
    expect((await call(tenant.agent.token, 'POST', `/api/v1/agent/calls/${ringing.call!.attemptId}/hangup`)).statusCode).toBe(404);
    expect((await call(second.token, 'POST', `/api/v1/agent/calls/${ringing.call!.attemptId}/hangup`)).statusCode).toBe(202);
    await floor.run(start + 6_000);
    const attempt = await db.superQuery<{ state: string; outcome: string; answered_at: Date | null }>(`SELECT state, outcome, answered_at FROM ringvakt.dial_attempts WHERE id = $1`, [ringing.call!.attemptId]);
    expect(attempt.rows[0]).toMatchObject({ state: 'ended', outcome: 'cancelled', answered_at: null });
    // Tried again by the unanswered rule (4 h), not dropped from the campaign; the hold is over.
    const contact = await db.superQuery<{ state: string; next_at: Date; preview_agent_id: string | null }>(`SELECT state, next_at, preview_agent_id FROM ringvakt.campaign_contacts WHERE contact_id = $1`, [callees.ids[0]]);
    expect(contact.rows[0]).toMatchObject({ state: 'ready', preview_agent_id: null });
    expect(contact.rows[0]!.next_at.getTime()).toBeGreaterThan(start + 3 * 3_600_000);
    expect(await agentState(second.id)).toMatchObject({ state: 'available', attempt_id: null });
    const told = (await call(second.token, 'GET', '/api/v1/agent/preview')).json() as { lastDial: { outcome: string } | null };
    expect(told.lastDial).toMatchObject({ outcome: 'cancelled' });
    await floor.dialer.stop();
  }, 60_000);
});
