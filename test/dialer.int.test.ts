import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandles } from '../src/db/database.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import { addSuppression } from '../src/modules/suppression/suppression.service.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import type { TelephonyEvent } from '../src/telephony/provider.ts';
import { startDialerService } from '../src/dialer/dialer-service.ts';
import { VirtualClock } from '../src/telephony/clock.ts';
import { seededRandom } from '../src/telephony/random.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { until } from './support/until.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { ALL_BUSY, ALL_LIVE, availableAgents, createCallees, floorFor, openMinuteInOslo, startedCampaign, steadyPacer, zoneOpenNow } from './support/dialer-floor.ts';

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
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });
  let app: App | undefined;
  const reported: Record<string, { campaignId: string; start: number; agents?: string[] }> = {};

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
    reported.connect = { campaignId, start, agents };
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
    reported.abandon = { campaignId, start };
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

  it('two dialer processes on one campaign never dial the same contact twice', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 300, '+4794');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Two processes', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const runProcess = (dialerId: string, seed: number) =>
      new Promise<{ dialed: string[]; counters: Record<string, number> }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/dialer-process.ts'], {
          env: { ...process.env, DATABASE_URL: db.url, RINGVAKT_DATA_DIR: db.config.dataDir, TENANT_ID: tenant.tenantId, CAMPAIGN_ID: campaignId, START_MS: String(start), DIALER_ID: dialerId, SEED: String(seed) },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
        child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { dialed: string[]; counters: Record<string, number> }) : reject(new Error(`dialer ${dialerId} exited ${code}: ${err.slice(0, 2000)}`))));
      });
    const [first, second] = await Promise.all([runProcess('dialer-1', 1), runProcess('dialer-2', 2)]);
    // Both took part, together they dialed every number, and no number twice.
    expect(first.dialed.length).toBeGreaterThan(0);
    expect(second.dialed.length).toBeGreaterThan(0);
    const all = [...first.dialed, ...second.dialed];
    expect(all).toHaveLength(300);
    expect(new Set(all).size).toBe(300);
    expect(new Set(all)).toEqual(new Set(callees.numbers));
    const rows = await attempts(campaignId);
    expect(rows).toHaveLength(300);
    expect(new Set(rows.map((row) => row.contact_id)).size).toBe(300);
    expect(rows.every((row) => row.outcome === 'busy' && row.attempt === 1)).toBe(true);
    expect([first.counters.errors, second.counters.errors]).toEqual([0, 0]);
  }, 120_000);

  it('dials only inside the callee-local window, across the New York daylight-saving change', async () => {
    const crypto = await handles.crypto();
    // A callee in New York (zone given explicitly), on the US profile: 08:00-21:00 local.
    const contactId = await tenantDb.transaction(async (trx) => (await createContact(trx, crypto, { name: 'New York callee', phones: [{ kind: 'mobile', number: '+4795000001' }], timeZone: 'America/New_York' }, { defaultRegion: 'NO' })).id);
    const campaignId = await startedCampaign(tenantDb, [contactId], { name: 'Window', jurisdiction: 'us_tsr', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    await tenantDb.transaction((trx) => trx.updateTable('campaign_contacts').set({ next_at: new Date('2026-03-01T00:00:00Z') }).where('campaign_id', '=', campaignId).execute());
    // Saturday 7 March, 12:30 UTC = 07:30 EST: closed; the contact is due again at 08:00 EST.
    const before = await floorFor({ tenantDb, handles, campaignId, model: ALL_BUSY, startMs: Date.parse('2026-03-07T12:30:00Z'), logger: db.logger, pacer: steadyPacer(5) });
    await before.run(Date.parse('2026-03-07T12:30:05Z'));
    expect(before.sent).toEqual([]);
    const skipped = await attempts(campaignId);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ state: 'skipped', skip_reason: 'window', checks: ['status', 'attempts'] });
    const due = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select(['state', 'next_at', 'dials']).where('campaign_id', '=', campaignId).executeTakeFirstOrThrow());
    expect(due).toMatchObject({ state: 'ready', dials: 0 });
    expect(due.next_at.toISOString()).toBe('2026-03-07T13:00:00.000Z');

    // Sunday 8 March (clocks went forward at 02:00), 12:30 UTC = 08:30 EDT: open — dialed.
    await tenantDb.transaction((trx) => trx.updateTable('campaign_contacts').set({ next_at: new Date('2026-03-08T00:00:00Z') }).where('campaign_id', '=', campaignId).execute());
    const after = await floorFor({ tenantDb, handles, campaignId, model: ALL_BUSY, startMs: Date.parse('2026-03-08T12:30:00Z'), logger: db.logger, pacer: steadyPacer(5) });
    await after.run(Date.parse('2026-03-08T12:30:05Z'));
    expect(after.sent).toEqual([{ to: '+4795000001', legId: expect.any(String) }]);
    const rows = await attempts(campaignId);
    expect(rows.map((row) => row.state)).toEqual(['skipped', 'ended']);
    expect(rows[1]?.attempt).toBe(2);
    expect(rows[1]?.dialed_at?.toISOString()).toBe('2026-03-08T12:30:00.000Z');
  });

  it('under a profile that requires a lawful basis, dials only contacts with one in force, and never after an objection', async () => {
    const callees = await createCallees(tenantDb, handles, 3, '+4796');
    const granted = callees.ids[0] as string;
    const objected = callees.ids[1] as string;
    await tenantDb.transaction(async (trx) => {
      const occurredAt = new Date();
      await trx.insertInto('consent_events').values({ contact_id: granted, purpose: 'sales', action: 'grant', basis: 'consent', source: 'web form', occurred_at: occurredAt, recorded_by: 'test' }).execute();
      await trx.insertInto('consent_events').values({ contact_id: objected, purpose: 'sales', action: 'grant', basis: 'consent', source: 'web form', occurred_at: occurredAt, recorded_by: 'test', recorded_at: new Date(Date.now() - 60_000) }).execute();
      await trx.insertInto('consent_events').values({ contact_id: objected, purpose: 'sales', action: 'object', source: 'phone call', occurred_at: occurredAt, recorded_by: 'test' }).execute();
    });
    const start = openMinuteInOslo([
      [
        { start: '09:00', end: '20:00', days: [1, 2, 3, 4, 5] },
        { start: '10:00', end: '16:00', days: [6] },
      ],
    ]);
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Lawful basis', jurisdiction: 'nordic_eu', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_BUSY, startMs: start, logger: db.logger, pacer: steadyPacer(5) });
    await floor.run(start + 5_000);
    expect(floor.sent.map((dial) => dial.to)).toEqual([callees.numbers[0]]);
    const rows = await attempts(campaignId);
    const reasons = Object.fromEntries(rows.map((row) => [row.contact_id, row.skip_reason]));
    expect(reasons).toEqual({ [granted]: null, [objected]: 'consent', [callees.ids[2] as string]: 'consent' });
  });

  it('keeps the record of calls whose provider times carry fractions of a millisecond', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 6, '+4790');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Fractions', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    // Uniformly drawn set-up and ring times: never whole milliseconds.
    const model = { ...ALL_BUSY, outcomes: { live: 0, machine: 0, busy: 0.5, noAnswer: 0.5, failed: 0 }, setupMs: { kind: 'uniform' as const, minMs: 100, maxMs: 400 } };
    const floor = await floorFor({ tenantDb, handles, campaignId, model, startMs: start, logger: db.logger, pacer: steadyPacer(6) });
    await floor.run(start + 60_000);
    const rows = await attempts(campaignId);
    expect(rows).toHaveLength(6);
    expect(rows.every((row) => row.state === 'ended' && Number.isInteger(row.ring_ms))).toBe(true);
    expect(floor.dialer.counters()).toMatchObject({ dialed: 6, ended: 6, errors: 0 });
  });

  it('ignores and counts duplicate events and events for calls it does not know, losing no call record', async () => {
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 1, '+4797');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Stray events', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_LIVE, startMs: start, logger: db.logger, pacer: steadyPacer(1) });
    const events: TelephonyEvent[] = [];
    floor.simulator.onEvent((event) => events.push(event));
    await floor.run(start + 1_000);
    const legId = floor.sent[0]?.legId ?? '';
    // The network repeats the ringing event, and sends events for a leg nobody dialed.
    const ringing = events.find((event) => event.legId === legId && event.type === 'ringing');
    expect(ringing).toBeDefined();
    floor.inject(ringing as TelephonyEvent);
    floor.inject({ legId: 'not-a-call-of-ours', at: start + 1_000, seq: 1, type: 'answered' });
    floor.inject({ legId: 'not-a-call-of-ours', at: start + 1_000, seq: 2, type: 'completed', by: 'remote', talkMs: 0, raw: { sipStatus: 200, q850: 16, reason: 'NORMAL_CLEARING' } });
    await floor.run(start + 120_000);
    expect(floor.dialer.counters()).toMatchObject({ duplicateEvents: 1, unknownEvents: 2, errors: 0 });
    // The real call went its way: answered, nobody free (no agents), abandoned with the message.
    const rows = await attempts(campaignId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ state: 'ended', outcome: 'abandoned', information_message: true });
  });

  it('takes over a campaign whose dialer died: settles its open attempts, frees its agent, then dials, and explains its pacing', async () => {
    // Real time: the callees live where it is daytime now. Progressive pacing with one agent.
    const callees = await createCallees(tenantDb, handles, 2, '+4799', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Takeover', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const [agentId] = await availableAgents(tenantDb, handles, campaignId, 1, new Date(), 'takeover');
    // The earlier tests' campaigns are done with; the service must find only this one to run.
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused' }).where('id', '<>', campaignId).execute());
    // A node that died mid-call: its lease has lapsed, its attempt is open, its agent on the call.
    const orphan = '00000000-0000-4000-8000-0000000000aa';
    await tenantDb.transaction(async (trx) => {
      await trx.updateTable('campaigns').set({ dialer_owner: 'dead-node', dialer_lease_until: new Date(Date.now() - 60_000) }).where('id', '=', campaignId).execute();
      await trx.updateTable('campaign_contacts').set({ state: 'reserved', attempts: 1, dials: 1 }).where('contact_id', '=', callees.ids[0] as string).execute();
      await trx.insertInto('dial_attempts').values({ id: orphan, campaign_id: campaignId, contact_id: callees.ids[0] as string, attempt: 1, dialer: 'dead-node', state: 'connected', dialed_at: new Date(), answered_at: new Date(), agent_id: agentId ?? null }).execute();
      await trx.updateTable('agent_states').set({ state: 'reserved', attempt_id: orphan }).where('user_id', '=', agentId as string).execute();
      await setAgentState(trx, agentId as string, { state: 'on_call', attemptId: orphan, now: new Date() });
    });
    const open = (await tenantDb.read((trx) => trx.selectFrom('agent_states').select('state').where('user_id', '=', agentId as string).executeTakeFirstOrThrow())).state;
    expect(open).toBe('on_call');

    const clock = new VirtualClock(Date.now());
    const stopClock = clock.followRealTime();
    const simulator = createSimulator({ clock, random: seededRandom(5), model: ALL_BUSY });
    const service = startDialerService({ systemDb: handles.systemDb, crypto: handles.crypto, provider: simulator, clock, nodeId: 'node-b', logger: db.logger, roundMs: 100 });
    try {
      await until(async () => (await attempts(campaignId)).filter((row) => row.state === 'ended').length === 2, 15_000);
      const rows = await attempts(campaignId);
      expect(rows.find((row) => row.id === orphan)).toMatchObject({ state: 'ended', outcome: 'cancelled', skip_reason: 'dialer_lost' });
      // The other contact is dialed by the new owner; the one who was on the line when the node
      // died is not rung again at once, but in 4 hours.
      const mine = rows.filter((row) => row.id !== orphan);
      expect(mine.map((row) => [row.contact_id, row.outcome])).toEqual([[callees.ids[1], 'busy']]);
      const due = await tenantDb.read((trx) => trx.selectFrom('campaign_contacts').select(['state', 'next_at']).where('contact_id', '=', callees.ids[0] as string).executeTakeFirstOrThrow());
      expect(due.state).toBe('ready');
      expect(due.next_at.getTime() - Date.now()).toBeGreaterThan(3.9 * 3_600_000);
      const freed = await tenantDb.read((trx) => trx.selectFrom('agent_states').select(['state', 'attempt_id']).where('user_id', '=', agentId as string).executeTakeFirstOrThrow());
      expect(freed.attempt_id).not.toBe(orphan);
      const campaign = await tenantDb.read((trx) => trx.selectFrom('campaigns').select(['dialer_owner']).where('id', '=', campaignId).executeTakeFirstOrThrow());
      expect(campaign.dialer_owner).toBe('node-b');
      const pacing = await tenantDb.read((trx) => trx.selectFrom('campaign_pacing').select(['pacer', 'explanation', 'dialer']).where('campaign_id', '=', campaignId).executeTakeFirstOrThrow());
      expect(pacing).toMatchObject({ pacer: 'progressive', dialer: 'node-b' });
      expect(pacing.explanation).toMatch(/^dialing \d+ lines for 1 idle agents/);
      const takeover = await db.superQuery<{ details: Record<string, unknown> }>(`SELECT details FROM ringvakt.audit_events WHERE action = 'campaign.dialer_takeover' AND target_id = $1`, [campaignId]);
      expect(takeover.rows.map((row) => row.details)).toEqual([{ orphanedAttempts: 1, agentsFreed: 1, previousDialer: 'dead-node' }]);

      // Paused: the node winds the campaign down and gives up its lease.
      await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused' }).where('id', '=', campaignId).execute());
      await until(async () => (await tenantDb.read((trx) => trx.selectFrom('campaigns').select('dialer_owner').where('id', '=', campaignId).executeTakeFirstOrThrow())).dialer_owner === null, 10_000);
      expect(service.running()).not.toContain(campaignId);
    } finally {
      await service.stop();
      stopClock();
    }
  }, 60_000);

  it('reports abandonment on both legal measures, handle time and outcomes per campaign, and time in state per agent (JSON and CSV)', async () => {
    app ??= await buildTestApp(db);
    const get = (url: string) => (app as App).inject({ method: 'GET', url, headers: bearer(tenant.owner.token) });
    const around = (start: number) => `from=${encodeURIComponent(new Date(start - 3_600_000).toISOString())}&to=${encodeURIComponent(new Date(start + 86_400_000).toISOString())}`;
    const abandon = reported.abandon as { campaignId: string; start: number };
    let response = await get(`/api/v1/reports/campaigns/${abandon.campaignId}?${around(abandon.start)}`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({
      jurisdiction: 'uk_ofcom',
      dials: 2,
      // The connected call is still talking when that test stopped its clock.
      outcomes: { in_progress: 1, abandoned: 1 },
      contactRate: 1,
      informationMessages: 1,
      cap: 0.03,
      abandonment: { us: { rate: 0.5, abandoned: 1, liveAnswers: 2 }, uk: { rate: 0.5, estimatedAmdFalsePositives: 0 } },
    });
    const connect = reported.connect as { campaignId: string; start: number; agents: string[] };
    response = await get(`/api/v1/reports/campaigns/${connect.campaignId}?${around(connect.start)}`);
    const figures = response.json() as { averageTalkMs: number; averageHandleMs: number; abandonment: { us: { rate: number } } };
    expect(figures.averageTalkMs).toBe(30_000);
    // Handle = talk + the wrap-up measured from the agents' state changes (5 s, ended on a 250 ms pacing round).
    expect(figures.averageHandleMs).toBeGreaterThanOrEqual(35_000);
    expect(figures.averageHandleMs).toBeLessThanOrEqual(35_250);
    expect(figures.abandonment.us.rate).toBe(0);
    response = await get(`/api/v1/reports/campaigns/${connect.campaignId}?${around(connect.start)}&format=csv`);
    expect(response.headers['content-type']).toContain('text/csv');
    expect(response.body).toContain('"average_talk_ms","30000"');
    expect(response.body).toContain('"outcome.live","3"');

    response = await get(`/api/v1/reports/agents?${around(connect.start)}`);
    const agents = (response.json() as { items: { userId: string; msInState: Record<string, number>; occupancy: number }[] }).items.filter((item) => connect.agents.includes(item.userId));
    expect(agents).toHaveLength(3);
    for (const agent of agents) {
      expect(agent.msInState.on_call).toBe(30_000);
      expect(agent.msInState.wrap_up).toBeGreaterThanOrEqual(5_000);
      expect(agent.occupancy).toBeGreaterThan(0);
      expect(agent.occupancy).toBeLessThan(1);
    }
    expect((await get(`/api/v1/reports/campaigns/${connect.campaignId}?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z`)).statusCode).toBe(400);
  });

  it('records connected calls under the contact\'s key; the agent pauses for a card payment; playback only with recordings:play, audited', async () => {
    app ??= await buildTestApp(db);
    const start = openMinuteInOslo();
    const callees = await createCallees(tenantDb, handles, 1, '+4798');
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Recorded' });
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ record_calls: true }).where('id', '=', campaignId).execute());
    // The seeded agent (who holds an API token) takes the call.
    await tenantDb.transaction((trx) => setAgentState(trx, tenant.agent.id, { state: 'available', campaignId, now: new Date(start - 1000) }));
    const floor = await floorFor({ tenantDb, handles, campaignId, model: ALL_LIVE, startMs: start, logger: db.logger, pacer: steadyPacer(1) });
    const recordingEvents: { state: string; at: number }[] = [];
    floor.simulator.onEvent((event) => {
      if (event.type === 'recording-state') recordingEvents.push({ state: event.state, at: event.at });
    });
    await floor.run(start + 5_000);
    const [call] = await attempts(campaignId);
    expect(call).toMatchObject({ state: 'connected', agent_id: tenant.agent.id });
    const attemptId = call?.id as string;
    const recordingState = async () => (await tenantDb.read((trx) => trx.selectFrom('recordings').select(['state', 'pauses']).where('attempt_id', '=', attemptId).executeTakeFirstOrThrow())).state;
    expect(await recordingState()).toBe('recording');

    const control = (action: string, token = tenant.agent.token) =>
      (app as App).inject({ method: 'POST', url: `/api/v1/agent/calls/${attemptId}/recording`, headers: { ...bearer(token), origin: 'http://127.0.0.1:8080' }, payload: { action } });
    // Resuming what runs, and another agent's attempt, are refused.
    expect((await control('resume')).statusCode).toBe(409);
    expect((await control('pause', tenant.owner.token)).statusCode).toBe(404);
    // Paused at 5 s of the call's clock (the command travels by NOTIFY to the dialer), resumed 10 s later.
    expect((await control('pause')).statusCode).toBe(202);
    await until(async () => {
      await floor.run(floor.clock.now() + 1);
      return (await recordingState()) === 'paused';
    }, 5_000);
    const pausedAt = floor.clock.now();
    await floor.run(pausedAt + 10_000);
    expect((await control('resume')).statusCode).toBe(202);
    await until(async () => {
      await floor.run(floor.clock.now() + 1);
      return (await recordingState()) === 'recording';
    }, 5_000);
    await floor.run(start + 60_000);

    const saved = await db.superQuery<{ state: string; pauses: number; duration_ms: number; audio_bytes: number; audio_ciphertext: Buffer }>(
      'SELECT state, pauses, duration_ms, audio_bytes, audio_ciphertext FROM ringvakt.recordings WHERE attempt_id = $1',
      [attemptId],
    );
    const recording = saved.rows[0];
    expect(recording).toMatchObject({ state: 'saved', pauses: 1 });
    // 30 s of talk, of which the paused stretch (at least the 10 s the agent waited) is left out:
    // the payment is not in the file.
    const pausedAtEvent = recordingEvents.find((event) => event.state === 'paused')?.at ?? Number.NaN;
    const resumedAtEvent = recordingEvents.find((event) => event.state === 'resumed')?.at ?? Number.NaN;
    expect(resumedAtEvent - pausedAtEvent).toBeGreaterThanOrEqual(10_000);
    const startedAtEvent = recordingEvents.find((event) => event.state === 'started')?.at ?? Number.NaN;
    const savedAtEvent = recordingEvents.find((event) => event.state === 'saved')?.at ?? Number.NaN;
    // Started as the call reached the agent (within one pacing step), saved as the call ended.
    expect(savedAtEvent - startedAtEvent).toBeGreaterThan(29_500);
    expect(savedAtEvent - startedAtEvent).toBeLessThanOrEqual(30_000);
    expect(Math.abs((recording?.duration_ms ?? 0) - (savedAtEvent - startedAtEvent - (resumedAtEvent - pausedAtEvent)))).toBeLessThanOrEqual(1);
    expect(recording?.audio_ciphertext.includes(Buffer.from('RIFF'))).toBe(false);

    // An agent may not play it back; a supervisor (here the owner) may, and that is audited.
    expect((await (app as App).inject({ method: 'GET', url: `/api/v1/recordings/${attemptId}/audio`, headers: bearer(tenant.agent.token) })).statusCode).toBe(403);
    const played = await (app as App).inject({ method: 'GET', url: `/api/v1/recordings/${attemptId}/audio`, headers: bearer(tenant.owner.token) });
    expect(played.statusCode).toBe(200);
    expect(played.headers['content-type']).toBe('audio/wav');
    expect(played.headers['cache-control']).toBe('no-store');
    const wav = played.rawPayload;
    expect(wav.subarray(0, 4).toString('ascii')).toBe('RIFF');
    expect(wav.length).toBe(recording?.audio_bytes);
    expect(wav.length).toBe(44 + Math.round(((recording?.duration_ms ?? 0) / 1000) * 8000) * 2);
    const audited = await db.superQuery<{ action: string }>(`SELECT action FROM ringvakt.audit_events WHERE target_id = $1 AND action LIKE 'recording.%' ORDER BY id`, [attemptId]);
    expect(audited.rows.map((row) => row.action)).toEqual(['recording.pause', 'recording.resume', 'recording.play']);
  });
});
