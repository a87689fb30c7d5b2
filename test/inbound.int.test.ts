import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { createInboundRouter } from '../src/inbound/inbound-router.ts';
import { VirtualClock } from '../src/telephony/clock.ts';
import { seededRandom } from '../src/telephony/random.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';
import { ALL_LIVE } from './support/dialer-floor.ts';
import { REALTIME_CHANNEL } from '../src/realtime/realtime.ts';

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Inbound queues on the telephony simulator: skills, longest-idle routing, priorities, overflow,
 * business hours, callers who give up, and the service level a supervisor reads.
 */
describe(`inbound queues (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let app: App;
  let tenant: SeededTenant;

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'inbound-a');
    app = await buildTestApp(db);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(tenant.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  it('routes by skill and priority, overflows, closes outside hours, and measures the service level', async () => {
    // Queues: Support needs Norwegian and overflows after 10 s to General; VIP outranks General;
    // Night is open only on Sunday nights.
    const general = (await call('POST', '/api/v1/queues', { name: 'General', number: '+4722000002' })).json() as { id: string };
    const support = await call('POST', '/api/v1/queues', { name: 'Support', number: '+4722000001', skills: ['norwegian'], maxWaitSeconds: 10, overflowQueueId: general.id });
    expect(support.statusCode).toBe(201);
    const supportId = (support.json() as { id: string }).id;
    const vipId = ((await call('POST', '/api/v1/queues', { name: 'VIP', number: '+4722000003', priority: 10 })).json() as { id: string }).id;
    expect((await call('POST', '/api/v1/queues', { name: 'Night', number: '+4722000004', hours: [{ start: '03:00', end: '04:00', days: [0] }] })).statusCode).toBe(201);
    // Bad input: hours that never open, an unknown overflow queue, a taken number.
    expect((await call('POST', '/api/v1/queues', { name: 'Never', number: '+4722000005', hours: [{ start: '10:00', end: '09:00' }] })).statusCode).toBe(400);
    expect((await call('POST', '/api/v1/queues', { name: 'Lost', number: '+4722000006', overflowQueueId: '00000000-0000-4000-8000-000000000000' })).statusCode).toBe(404);
    expect((await call('POST', '/api/v1/queues', { name: 'Twin', number: '+4722000001' })).statusCode).toBe(409);
    // Agents list the queues too (the desktop names the queue of an inbound call).
    const listed = await app.inject({ url: '/api/v1/queues', headers: bearer(tenant.agent.token) });
    expect(listed.statusCode).toBe(200);
    expect((listed.json() as { items: { name: string }[] }).items.map((queue) => queue.name)).toEqual(['General', 'Night', 'Support', 'VIP']);

    // Agents: A speaks Norwegian, B does not; A has been idle longer.
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const { cipher } = await db.handles.crypto();
    const start = Date.parse('2026-06-10T10:00:00Z'); // a Wednesday: Night is closed
    const agents: string[] = [];
    for (const [index, skills] of [['norwegian'], []].entries()) {
      registerPersonalData(`inbound${index}@inbound-a.example`);
      const user = await tenantDb.transaction((trx) => createUser(trx, cipher, { email: `inbound${index}@inbound-a.example`, displayName: `Inbound ${index}`, role: 'agent' }));
      expect((await call('PUT', `/api/v1/agents/${user.id}/skills`, { skills, takesInbound: true })).statusCode).toBe(200);
      await tenantDb.transaction((trx) => setAgentState(trx, user.id, { state: 'available', now: new Date(start - 2_000 + index * 1_000) }));
      agents.push(user.id);
    }
    const [agentA, agentB] = agents as [string, string];

    const clock = new VirtualClock(start);
    const simulator = createSimulator({ clock, random: seededRandom(3), model: ALL_LIVE });
    const router = createInboundRouter({ tenantDb, crypto: await db.handles.crypto(), provider: simulator, clock, logger: db.logger });
    await router.listen();
    // What a supervisor's realtime stream shows of each inbound call.
    const inboundEvents: { callId: string; queueId: string; agentId: string | null; state: string; outcome: string | null }[] = [];
    db.handles.changes.subscribe(REALTIME_CHANNEL, (payload) => {
      const { event } = JSON.parse(payload) as { event: { topic: string; callId: string; queueId: string; agentId: string | null; state: string; outcome: string | null } };
      if (event.topic === 'inbound.call') inboundEvents.push({ callId: event.callId, queueId: event.queueId, agentId: event.agentId, state: event.state, outcome: event.outcome });
    }, () => undefined);
    const offer = (at: number, id: string, to: string, patienceMs: number) =>
      clock.schedule(at - clock.now(), () => simulator.offerInbound({ legId: id, from: '+4790000099', to, patienceMs }));
    const ids = {
      s1: '00000000-0000-4000-8000-000000000001',
      s2: '00000000-0000-4000-8000-000000000002',
      c1: '00000000-0000-4000-8000-000000000003',
      s3: '00000000-0000-4000-8000-000000000004',
      s4: '00000000-0000-4000-8000-000000000005',
      g1: '00000000-0000-4000-8000-000000000006',
      v1: '00000000-0000-4000-8000-000000000007',
    };
    offer(start, ids.s1, '+4722000001', 120_000); // A takes it at once (B lacks the skill)
    offer(start + 500, ids.s2, '+4722000001', 120_000); // waits; overflows to General at 10 s
    offer(start + 1_000, ids.g1, '+4722000002', 120_000); // B takes it at once
    offer(start + 2_000, ids.c1, '+4722000004', 120_000); // closed: the message, then goodbye
    offer(start + 3_000, ids.s3, '+4722000001', 4_000); // gives up within 5 s: a short abandon
    offer(start + 4_000, ids.s4, '+4722000001', 8_000); // gives up after 8 s: abandoned
    offer(start + 20_000, ids.v1, '+4722000003', 120_000); // VIP outranks s2 when an agent frees
    while (clock.now() < start + 120_000) {
      await router.tick();
      clock.runUntil(clock.now() + 250);
      await router.settled();
    }

    const rows = await tenantDb.read((trx) => trx.selectFrom('inbound_calls').select(['id', 'queue_id', 'first_queue_id', 'outcome', 'agent_id', 'wait_ms', 'caller_index']).execute());
    const byId = Object.fromEntries(rows.map((row) => [row.id, row]));
    expect(byId[ids.s1]).toMatchObject({ outcome: 'answered', agent_id: agentA });
    expect(byId[ids.s1]?.wait_ms).toBeLessThanOrEqual(250);
    expect(byId[ids.g1]).toMatchObject({ outcome: 'answered', agent_id: agentB });
    expect(byId[ids.c1]).toMatchObject({ outcome: 'closed', agent_id: null });
    expect(byId[ids.s3]).toMatchObject({ outcome: 'abandoned', agent_id: null });
    expect(byId[ids.s4]).toMatchObject({ outcome: 'abandoned', agent_id: null });
    // A frees first (s1 ended at ~30 s, 10 s wrap-up): the VIP caller goes before s2, who waited longer.
    expect(byId[ids.v1]).toMatchObject({ outcome: 'answered', agent_id: agentA });
    expect(byId[ids.s2]).toMatchObject({ outcome: 'answered', agent_id: agentB, queue_id: general.id, first_queue_id: supportId });
    expect(byId[ids.s2]?.wait_ms).toBeGreaterThan(40_000);
    // The caller's number is kept only as a blind index.
    expect(rows.every((row) => row.caller_index !== null && row.caller_index.length <= 32)).toBe(true);
    expect(router.counters()).toMatchObject({ offered: 7, closed: 1, overflowed: 1, errors: 0 });
    // The realtime stream: queued, connected (with the agent), ended — on the queue's own topic.
    await until(() => inboundEvents.filter((event) => event.state === 'ended').length === 7);
    expect(inboundEvents.filter((event) => event.callId === ids.s1)).toEqual([
      { callId: ids.s1, queueId: supportId, agentId: null, state: 'queued', outcome: null },
      { callId: ids.s1, queueId: supportId, agentId: agentA, state: 'connected', outcome: null },
      { callId: ids.s1, queueId: supportId, agentId: agentA, state: 'ended', outcome: 'answered' },
    ]);
    expect(inboundEvents.filter((event) => event.callId === ids.s2).map((event) => [event.queueId, event.state])).toEqual([
      [supportId, 'queued'],
      [general.id, 'connected'],
      [general.id, 'ended'],
    ]);
    expect(inboundEvents.filter((event) => event.callId === ids.s3).map((event) => [event.state, event.agentId, event.outcome])).toEqual([
      ['queued', null, null],
      ['ended', null, 'abandoned'],
    ]);

    const report = await call('GET', `/api/v1/reports/queues/${supportId}?from=${encodeURIComponent(new Date(start - 60_000).toISOString())}&to=${encodeURIComponent(new Date(start + 3_600_000).toISOString())}`);
    expect(report.statusCode).toBe(200);
    // Offered 4 (s1–s4); answered 2, one within 20 s; one short abandon left out of the service level.
    expect(report.json()).toMatchObject({ offered: 4, answered: 2, abandoned: 1, shortAbandons: 1, closed: 0, serviceLevel: 1 / 3, abandonmentRate: 0.25, serviceLevelSeconds: 20 });
    const csv = await call('GET', `/api/v1/reports/queues/${supportId}?from=${encodeURIComponent(new Date(start - 60_000).toISOString())}&to=${encodeURIComponent(new Date(start + 3_600_000).toISOString())}&format=csv`);
    expect(csv.headers['content-type']).toContain('text/csv');
    expect(csv.body).toContain('"offered","4"');
    expect(csv.body).toContain('"shortAbandons","1"');
    const vip = await call('GET', `/api/v1/reports/queues/${vipId}?from=${encodeURIComponent(new Date(start - 60_000).toISOString())}&to=${encodeURIComponent(new Date(start + 3_600_000).toISOString())}`);
    expect(vip.json()).toMatchObject({ offered: 1, answered: 1, serviceLevel: 0 });
    await router.stop();
  });
});
