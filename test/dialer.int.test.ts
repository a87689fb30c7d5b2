import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandles } from '../src/db/database.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import { addSuppression } from '../src/modules/suppression/suppression.service.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { ALL_BUSY, ALL_LIVE, availableAgents, createCallees, floorFor, openMinuteInOslo, startedCampaign } from './support/dialer-floor.ts';

/**
 * The campaign dialer against PostgreSQL and the telephony simulator: calls go to the
 * longest-idle agent, abandoned calls get the information message and the lockout, suppression and
 * windows are checked at dial time, and every call leaves its compliance record in the ledger.
 */
describe(`campaign dialer (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let handles: DatabaseHandles;
  let tenant: SeededTenant;
  let tenantDb: TenantDb;

  beforeAll(async () => {
    db = await createTestDatabase();
    handles = db.handles;
    tenant = await seedTenant(handles, 'dialer-a');
    tenantDb = handles.forTenant(tenant.tenantId);
  });
  afterAll(async () => db?.drop());

  const attempts = (campaignId: string) =>
    tenantDb.read((trx) =>
      trx
        .selectFrom('dial_attempts')
        .select(['id', 'contact_id', 'attempt', 'state', 'outcome', 'agent_id', 'connect_ms', 'ring_ms', 'information_message', 'checks', 'skip_reason', 'dialed_at', 'answered_at', 'ended_at', 'talk_ms'])
        .where('campaign_id', '=', campaignId)
        .orderBy('reserved_at')
        .orderBy('dialed_at')
        .execute(),
    );
  const complianceRecords = (campaignId: string) =>
    db.superQuery<{ target_id: string; outcome: string; details: Record<string, unknown> }>(
      `SELECT target_id, outcome, details FROM ringvakt.audit_events WHERE action = 'call.compliance' AND details->>'campaign' = $1 ORDER BY id`,
      [campaignId],
    );

  it('connects each person to the longest-idle agent, wraps up, and records every call in the ledger', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 3, '+4791');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Connect', wrapUpMs: 5_000 });
    const agents = await availableAgents(tenantDb, handles, campaignId, 3, new Date(start), 'connect');
    // One dial per pacing round, so the calls are answered one after another.
    let launched = 0;
    const oneByOne = { name: 'one-by-one', decide: () => (launched < 3 ? ((launched += 1), { dial: 1, explanation: 'one more' }) : { dial: 0, explanation: 'all dialed' }) };
    const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_LIVE, startMs: start, logger: db.logger, pacer: oneByOne });
    await floor.run(start + 20_000);

    const rows = await attempts(campaignId);
    expect(rows).toHaveLength(3);
    expect(new Set(floor.sent.map((dial) => dial.to))).toEqual(new Set(callees.numbers));
    // All three are talking (30 s calls): with three agents, nobody waited past the 2 s limit.
    for (const row of rows) {
      expect(row.state).toBe('connected');
      expect(row.checks).toEqual(['status', 'attempts', 'window', 'consent', 'number', 'suppression']);
      expect(row.connect_ms).toBeLessThanOrEqual(2_000);
    }
    // The longest idle agent (logged in first) took the first call.
    const firstCall = rows[0];
    expect(firstCall?.agent_id).toBe(agents[0]);
    expect(new Set(rows.map((row) => row.agent_id))).toEqual(new Set(agents));
    const onCall = await tenantDb.read((trx) => trx.selectFrom('agent_states').select(['user_id', 'state']).where('campaign_id', '=', campaignId).execute());
    expect(onCall.map((agent) => agent.state)).toEqual(['on_call', 'on_call', 'on_call']);

    // Calls end after 30 s of talk; agents wrap up 5 s, then are available again.
    await floor.run(start + 20_000 + 40_000);
    const ended = await attempts(campaignId);
    for (const row of ended) {
      expect(row.state).toBe('ended');
      expect(row.outcome).toBe('live');
      expect(row.talk_ms).toBe(30_000);
      expect(row.ring_ms).toBe(3_000);
    }
    const after = await tenantDb.read((trx) => trx.selectFrom('agent_states').select('state').where('campaign_id', '=', campaignId).execute());
    expect(after.map((agent) => agent.state)).toEqual(['available', 'available', 'available']);

    const records = await complianceRecords(campaignId);
    expect(records.rows).toHaveLength(3);
    for (const record of records.rows) {
      expect(record.outcome).toBe('success');
      expect(record.details).toMatchObject({ jurisdiction: 'uk_ofcom', answered: true, abandoned: false, informationMessage: false, outcome: 'live', ringMs: 3000, connectLimitMs: 2000 });
      expect(record.details.checksPassed).toBe('status,attempts,window,consent,number,suppression');
      expect(Number(record.details.agentConnectMs)).toBeLessThanOrEqual(2000);
      // References only: no number reaches the ledger.
      expect(JSON.stringify(record.details)).not.toContain('+4791');
    }
    expect(floor.dialer.counters()).toMatchObject({ dialed: 3, connected: 3, abandoned: 0, errors: 0 });
  });

  it('plays the information message when no agent is free within 2 s, records the abandonment, and locks the number out for 72 h', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 2, '+4792');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Abandon', retryRules: { abandoned: { retry: true, afterMinutes: 4320 } } });
    // One agent for two people: the second waits, and after 2 s hears the message.
    await availableAgents(tenantDb, handles, campaignId, 1, new Date(start), 'abandon');
    const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_LIVE, startMs: start, logger: db.logger, pacer: { name: 'two', decide: () => ({ dial: 2, explanation: 'two at once' }) } });
    await floor.run(start + 250);
    await floor.run(start + 30_000);

    const rows = await attempts(campaignId);
    expect(rows).toHaveLength(2);
    const abandoned = rows.filter((row) => row.outcome === 'abandoned');
    expect(abandoned).toHaveLength(1);
    expect(abandoned[0]).toMatchObject({ state: 'ended', information_message: true, agent_id: null, connect_ms: null });
    // Answered, 2 s without an agent, then the 5 s message, then the dialer hangs up.
    const heldMs = (abandoned[0]?.ended_at?.getTime() ?? 0) - (abandoned[0]?.answered_at?.getTime() ?? 0);
    expect(heldMs).toBeGreaterThanOrEqual(7_000);
    expect(heldMs).toBeLessThanOrEqual(7_250);
    const records = await complianceRecords(campaignId);
    const record = records.rows.find((row) => row.target_id === abandoned[0]?.id);
    expect(record?.details).toMatchObject({ abandoned: true, informationMessage: true, answered: true, agentConnectMs: null, outcome: 'abandoned' });

    // The abandoned number is suppressed for 72 h (Ofcom), and its contact is not due before then.
    const lockout = await tenantDb.read((trx) => trx.selectFrom('suppressions').select(['reason', 'expires_at', 'contact_id']).where('reason', '=', 'abandoned').where('contact_id', '=', abandoned[0]?.contact_id ?? '').execute());
    expect(lockout).toHaveLength(1);
    const lockedFor = (lockout[0]?.expires_at?.getTime() ?? 0) - start;
    expect(lockedFor).toBeGreaterThanOrEqual(72 * 3_600_000);
    expect(lockedFor).toBeLessThan(72 * 3_600_000 + 60_000);
    const hopper = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select(['state', 'next_at']).where('contact_id', '=', abandoned[0]?.contact_id ?? '').executeTakeFirstOrThrow());
    expect(hopper.state).toBe('ready');
    expect(hopper.next_at.getTime() - start).toBeGreaterThanOrEqual(72 * 3_600_000);
    expect(floor.dialer.counters()).toMatchObject({ dialed: 2, abandoned: 1, errors: 0 });
  });

  it('never dials a number suppressed after its contact entered the hopper', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 4, '+4793');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Suppressed late', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    await availableAgents(tenantDb, handles, campaignId, 4, new Date(start), 'late');
    // All four are in the hopper; then two numbers are suppressed (one tenant-wide, one for this campaign).
    const hopper = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select('contact_id').where('campaign_id', '=', campaignId).execute());
    expect(hopper).toHaveLength(4);
    const crypto = await handles.crypto();
    await tenantDb.transaction(async (trx) => {
      await addSuppression(trx, crypto, { channel: 'phone', value: callees.numbers[1] as string, scope: 'tenant', reason: 'request', source: 'test', createdBy: 'test' });
      await addSuppression(trx, crypto, { channel: 'phone', value: callees.numbers[3] as string, scope: 'campaign', campaignId, reason: 'objection', source: 'test', createdBy: 'test' });
    });
    const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_BUSY, startMs: start, logger: db.logger });
    await floor.run(start + 10_000);

    expect(floor.sent.map((dial) => dial.to).sort()).toEqual([callees.numbers[0], callees.numbers[2]].sort());
    const rows = await attempts(campaignId);
    const skipped = rows.filter((row) => row.state === 'skipped');
    expect(skipped.map((row) => row.contact_id).sort()).toEqual([callees.ids[1], callees.ids[3]].sort());
    for (const row of skipped) {
      expect(row.skip_reason).toBe('suppression');
      expect(row.dialed_at).toBeNull();
    }
    // The matches are recorded as dial-time matches, and the skips as denied compliance records.
    const matches = await tenantDb.read((trx) => trx.selectFrom('suppression_matches').select(['context', 'contact_id']).where('campaign_id', '=', campaignId).execute());
    expect(matches.map((match) => match.context)).toEqual(['dial', 'dial']);
    const denied = (await complianceRecords(campaignId)).rows.filter((record) => record.outcome === 'denied');
    expect(denied.map((record) => record.details.skipped)).toEqual(['suppression', 'suppression']);
    // Done with: a permanent suppression does not come back.
    const states = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select(['contact_id', 'state']).where('campaign_id', '=', campaignId).where('contact_id', 'in', [callees.ids[1] as string, callees.ids[3] as string]).execute());
    expect(states.map((state) => state.state)).toEqual(['done', 'done']);
  });
});
