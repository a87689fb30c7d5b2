import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDialerService } from '../src/dialer/dialer-service.ts';
import { startNodePresence } from '../src/operations/node-presence.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { startRetentionService } from '../src/privacy/retention.routes.ts';
import { beginSweep, runSweep } from '../src/privacy/retention.ts';
import { VirtualClock } from '../src/telephony/clock.ts';
import { seededRandom } from '../src/telephony/random.ts';
import { createSimulator } from '../src/telephony/simulator.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { ALL_BUSY, ALL_LIVE, availableAgents, createCallees, startedCampaign, zoneOpenNow } from './support/dialer-floor.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';

/**
 * Failover of singleton work between real processes: a node owning a campaign's dialer is killed
 * (SIGKILL: no shutdown, no release) and another node takes the campaign over; a node that is
 * frozen (SIGSTOP: alive, its sessions open) is not taken over early. The takeover time is
 * measured by `npm run bench -- failover`; here it only has to happen.
 */
describe(`failover of a campaign's dialer between nodes (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let tenant: SeededTenant;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'failover');
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await db?.drop();
  });

  /** Starts node A in its own process; resolves once it owns `campaignId`. */
  const startNodeA = (campaignId: string, env: Record<string, string> = {}) =>
    new Promise<ChildProcess>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/dialer-node.ts'], {
        env: { ...process.env, DATABASE_URL: db.url, RINGVAKT_DATA_DIR: db.config.dataDir, NODE_ID: 'node-a', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let err = '';
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes(`running ${campaignId}`)) resolve(child);
      });
      child.on('exit', (code) => reject(new Error(`node A exited (${code}) before owning the campaign: ${err.slice(0, 2000)}`)));
    });
  const owner = async (campaignId: string) =>
    (await db.handles.forTenant(tenant.tenantId).read((trx) => trx.selectFrom('campaigns').select('dialer_owner').where('id', '=', campaignId).executeTakeFirstOrThrow())).dialer_owner;

  const startNodeB = (model = ALL_BUSY) => {
    const clock = new VirtualClock(Date.now());
    const stopClock = clock.followRealTime();
    const presence = startNodePresence({ connectionString: String(db.handles.pool.options.connectionString), nodeId: 'node-b', logger: db.logger });
    const service = startDialerService({ systemDb: db.handles.systemDb, crypto: db.handles.crypto, provider: createSimulator({ clock, random: seededRandom(4), model }), clock, nodeId: 'node-b', logger: db.logger, presence });
    return {
      async stop() {
        await service.stop();
        await presence.stop();
        stopClock();
      },
    };
  };

  it('a killed node’s campaign moves to a live node, its open attempts settled and the takeover audited', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const callees = await createCallees(tenantDb, db.handles, 50, '+4798', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Failover', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const nodeA = await startNodeA(campaignId);
    const nodeB = startNodeB();
    try {
      // While A lives, B leaves its campaign alone.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(await owner(campaignId)).toBe('node-a');
      nodeA.kill('SIGKILL');
      await until(async () => (await owner(campaignId)) === 'node-b', 20_000);
      const takeover = await db.superQuery(`SELECT 1 FROM ringvakt.audit_events WHERE action = 'campaign.dialer_takeover' AND target_id = $1`, [campaignId]);
      expect(takeover.rowCount).toBe(1);
      // No attempt is left open by the dead node; nothing was dialed twice.
      await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer = 'node-a' AND state <> 'ended'`, [campaignId])).rowCount === 0, 10_000);
      const twice = await db.superQuery(`SELECT contact_id FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialed_at IS NOT NULL GROUP BY contact_id, attempt HAVING count(*) > 1`, [campaignId]);
      expect(twice.rowCount).toBe(0);
    } finally {
      await nodeB.stop();
    }
  }, 60_000);

  it('a frozen node (alive, sessions open) keeps its campaign past its lease: no early takeover', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused', dialer_owner: null, dialer_lease_until: null }).execute());
    const callees = await createCallees(tenantDb, db.handles, 20, '+4797', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Frozen', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    const nodeA = await startNodeA(campaignId);
    const nodeB = startNodeB();
    try {
      nodeA.kill('SIGSTOP');
      // Three times its lease, and more than enough for a takeover of a dead node.
      await new Promise((resolve) => setTimeout(resolve, 9_000));
      expect(await owner(campaignId)).toBe('node-a');
    } finally {
      nodeA.kill('SIGKILL');
      await nodeB.stop();
    }
  }, 60_000);

  it('after a database restart (every presence lock briefly free), a node back first does not take a live node\'s campaign', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused', dialer_owner: null, dialer_lease_until: null }).execute());
    const callees = await createCallees(tenantDb, db.handles, 5, '+4793', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Restart', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    // Node X is alive, but the restart cost it its lock and let its lease lapse; it is back a moment later.
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ dialer_owner: 'node-x', dialer_lease_until: new Date(Date.now() - 2_000) }).where('id', '=', campaignId).execute());
    const nodeB = startNodeB();
    let presenceX: ReturnType<typeof startNodePresence> | undefined;
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      presenceX = startNodePresence({ connectionString: String(db.handles.pool.options.connectionString), nodeId: 'node-x', logger: db.logger });
      await until(() => presenceX?.held() === true, 5_000);
      // X renews its lease every round, as a live owner does.
      for (let round = 0; round < 8; round += 1) {
        await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ dialer_lease_until: new Date(Date.now() + 3_000) }).where('id', '=', campaignId).where('dialer_owner', '=', 'node-x').execute());
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      expect(await owner(campaignId)).toBe('node-x');
    } finally {
      await presenceX?.stop();
      await nodeB.stop();
    }
  }, 60_000);

  it('a node stopped with SIGTERM mid-call hands its campaign over at once and finishes its calls: none cut, none dialed twice', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused', dialer_owner: null, dialer_lease_until: null }).execute());
    const callees = await createCallees(tenantDb, db.handles, 40, '+4792', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Handover', wrapUpMs: 500 });
    await availableAgents(tenantDb, db.handles, campaignId, 3, new Date(), 'handover');
    // Everyone answers after 3 s and talks 5 s.
    const nodeA = await startNodeA(campaignId, { MODEL: 'live', TALK_MS: '5000' });
    let out = '';
    nodeA.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => nodeA.once('exit', (code) => resolve(code)));
    const nodeB = startNodeB({ ...ALL_LIVE, talkMs: { kind: 'fixed', ms: 5_000 } });
    try {
      const openOfA = async () => (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer = 'node-a' AND state = 'connected'`, [campaignId])).rows.map((row) => row.id);
      await until(async () => (await openOfA()).length > 0, 20_000);
      const talking = await openOfA();
      nodeA.kill('SIGTERM');
      const stoppedAt = Date.now();
      // The campaign is B's within a round or two; A has not exited yet (its calls go on).
      await until(async () => (await owner(campaignId)) === 'node-b', 5_000);
      const handedOverAfterMs = Date.now() - stoppedAt;
      expect(out).toMatch(/handed over with [1-9]\d* calls/);
      expect(out).not.toContain('stopped');
      expect(await exited).toBe(0);
      expect(out).toContain('stopped');
      // A's calls ended as calls do (talked to their end), not cancelled as a lost node's are.
      const ended = await db.superQuery<{ id: string; state: string; outcome: string; skip_reason: string | null }>(`SELECT id, state, outcome, skip_reason FROM ringvakt.dial_attempts WHERE id = ANY ($1::uuid[])`, [talking]);
      expect(ended.rows.map((row) => [row.state, row.outcome, row.skip_reason])).toEqual(talking.map(() => ['ended', 'live', null]));
      const lost = await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND skip_reason = 'dialer_lost'`, [campaignId]);
      expect(lost.rowCount).toBe(0);
      // B goes on dialing; nobody is dialed twice.
      await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer = 'node-b' AND dialed_at IS NOT NULL`, [campaignId])).rowCount! > 0, 15_000);
      const twice = await db.superQuery(`SELECT contact_id FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialed_at IS NOT NULL GROUP BY contact_id HAVING count(*) > 1`, [campaignId]);
      expect(twice.rowCount).toBe(0);
      expect(handedOverAfterMs).toBeLessThan(3_000);
    } finally {
      nodeA.kill('SIGKILL');
      await nodeB.stop();
    }
  }, 90_000);

  /**
   * Node A dials a campaign of long calls (a minute), is stopped with SIGTERM mid-call, hands the
   * campaign over to B and follows its calls; the test then kills A during that drain.
   */
  const handOverMidCall = async (name: string, prefix: string, modelOfB: Parameters<typeof startNodeB>[0]) => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused', dialer_owner: null, dialer_lease_until: null }).execute());
    const callees = await createCallees(tenantDb, db.handles, 40, prefix, zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name, wrapUpMs: 500 });
    await availableAgents(tenantDb, db.handles, campaignId, 3, new Date(), name.toLowerCase().replace(/\W+/g, '-'));
    const nodeA = await startNodeA(campaignId, { MODEL: 'live', TALK_MS: '60000' });
    let out = '';
    nodeA.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const nodeB = startNodeB(modelOfB);
    const openOfA = async () => (await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer = 'node-a' AND state <> 'ended'`, [campaignId])).rows.map((row) => row.id);
    const settledAsLost = async (open: string[]) => {
      // Settled once A's presence lock is free (a live node looks every few rounds).
      await until(async () => (await openOfA()).length === 0, 20_000);
      const settled = await db.superQuery<{ outcome: string; skip_reason: string }>(`SELECT outcome, skip_reason FROM ringvakt.dial_attempts WHERE id = ANY ($1::uuid[])`, [open]);
      expect(settled.rows.map((row) => [row.outcome, row.skip_reason])).toEqual(open.map(() => ['cancelled', 'dialer_lost']));
    };
    await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer = 'node-a' AND state = 'connected'`, [campaignId])).rowCount! > 0, 20_000);
    nodeA.kill('SIGTERM');
    await until(() => out.includes('handed over'), 5_000);
    return { tenantDb, campaignId, nodeA, nodeB, openOfA, settledAsLost };
  };

  it('a node killed while it finishes its calls after a handover: the campaign\'s new node settles those calls', async () => {
    const { campaignId, nodeA, nodeB, openOfA, settledAsLost } = await handOverMidCall('Handover killed', '+4794', { ...ALL_LIVE, talkMs: { kind: 'fixed', ms: 60_000 } });
    try {
      await until(async () => (await owner(campaignId)) === 'node-b', 5_000);
      const open = await openOfA();
      expect(open.length).toBeGreaterThan(0);
      nodeA.kill('SIGKILL');
      await settledAsLost(open);
    } finally {
      nodeA.kill('SIGKILL');
      await nodeB.stop();
    }
  }, 90_000);

  it('the same on a campaign paused meanwhile, that nobody dials any more: a live node settles the dead one\'s calls', async () => {
    // B's own calls end at once (busy): once the campaign is paused, nobody holds its lease.
    const { tenantDb, campaignId, nodeA, nodeB, openOfA, settledAsLost } = await handOverMidCall('Handover paused', '+4795', ALL_BUSY);
    try {
      await tenantDb.transaction((trx) => trx.updateTable('campaigns').set({ state: 'paused' }).where('id', '=', campaignId).execute());
      await until(async () => (await owner(campaignId)) === null, 10_000);
      const open = await openOfA();
      expect(open.length).toBeGreaterThan(0);
      nodeA.kill('SIGKILL');
      await settledAsLost(open);
      // Its agents are free again.
      const stuck = await db.superQuery(`SELECT 1 FROM ringvakt.agent_states WHERE attempt_id = ANY ($1::uuid[]) AND state IN ('reserved', 'on_call')`, [open]);
      expect(stuck.rowCount).toBe(0);
    } finally {
      nodeA.kill('SIGKILL');
      await nodeB.stop();
    }
  }, 90_000);

  describe('the retention sweeper', () => {
    let sweeper: { tenantId: string };
    const contactsIn = async (status: string) =>
      Number((await db.superQuery<{ n: string }>(`SELECT count(*) AS n FROM ringvakt.contacts WHERE tenant_id = $1 AND status = $2`, [sweeper.tenantId, status])).rows[0]?.n);
    /** Node B: a server's sweeper (its schedule an hour: only resumes happen here), with its presence settled. */
    const startSweeperB = async () => {
      const presence = startNodePresence({ connectionString: String(db.handles.pool.options.connectionString), nodeId: 'sweep-b', logger: db.logger });
      await until(() => presence.settled(), 10_000);
      const service = startRetentionService({ systemDb: db.handles.systemDb, crypto: db.handles.crypto, logger: db.logger, node: 'sweep-b', presence });
      return {
        async stop() {
          await service.stop();
          await presence.stop();
        },
      };
    };
    /** Inactive contacts (untouched for 400 days) under a policy that erases them after 365. */
    const inactiveContacts = async (count: number, prefix: string) => {
      const tenantDb = db.handles.forTenant(sweeper.tenantId);
      const crypto = await db.handles.crypto();
      await tenantDb.transaction(async (trx) => {
        for (let index = 0; index < count; index += 1) {
          await createContact(trx, crypto, { name: `Gammel ${index}`, phones: [{ kind: 'mobile', number: `${prefix}${String(index).padStart(5, '0')}` }] }, { defaultRegion: 'NO' });
        }
      });
      // Back-dated past the trigger that stamps every update (replica mode skips triggers).
      await db.superQuery(`BEGIN; SET LOCAL session_replication_role = replica;
        UPDATE ringvakt.contacts SET updated_at = now() - interval '400 days' WHERE tenant_id = '${sweeper.tenantId}' AND status = 'active'; COMMIT`);
    };
    beforeAll(async () => {
      sweeper = await seedTenant(db.handles, 'failover-sweeps');
      await db.handles.forTenant(sweeper.tenantId).transaction(async (trx) => {
        await trx.insertInto('retention_policies').values({ category: 'contacts_inactive', retain_days: 365, action: 'anonymise', updated_by: 'test' }).execute();
      });
      // Swept a moment ago: node B's schedule has nothing due; only resumes happen.
      await db.superQuery(`INSERT INTO ringvakt.retention_sweeps (tenant_id, dry_run, state, node, requested_by, finished_at) VALUES ($1, false, 'done', 'earlier', 'test', now())`, [sweeper.tenantId]);
    });

    it('a sweep whose node is killed part-way is resumed by another node within seconds, and finishes the work once', async () => {
      await inactiveContacts(2_000, '+47950');
      const nodeB = await startSweeperB();
      try {
        const nodeA = spawn(process.execPath, ['--import', 'tsx', 'test/support/retention-node.ts'], {
          env: { ...process.env, DATABASE_URL: db.url, RINGVAKT_DATA_DIR: db.config.dataDir, NODE_ID: 'sweep-a', TENANT_ID: sweeper.tenantId },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        children.push(nodeA);
        let out = '';
        nodeA.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        await until(() => out.includes('sweeping '), 30_000);
        const sweepA = /sweeping (\S+)/.exec(out)?.[1];
        // Killed once it has erased some and not all.
        await until(async () => (await contactsIn('erased')) >= 200, 30_000);
        nodeA.kill('SIGKILL');
        const killedAt = Date.now();
        expect(out).not.toContain('done');
        expect(await contactsIn('active')).toBeGreaterThan(0);
        await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.retention_sweeps WHERE tenant_id = $1 AND node = 'sweep-b'`, [sweeper.tenantId])).rowCount === 1, 15_000);
        const resumedAfterMs = Date.now() - killedAt;
        await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.retention_sweeps WHERE tenant_id = $1 AND node = 'sweep-b' AND state = 'done'`, [sweeper.tenantId])).rowCount === 1, 60_000);
        // A's sweep is on the record as lost, found by B; B finished the work, every subject erased once.
        const sweeps = await db.superQuery<{ id: string; state: string; error_code: string | null }>(`SELECT id, state, error_code FROM ringvakt.retention_sweeps WHERE tenant_id = $1 AND node = 'sweep-a'`, [sweeper.tenantId]);
        expect(sweeps.rows).toEqual([{ id: sweepA, state: 'abandoned', error_code: 'node_lost' }]);
        const lost = await db.superQuery<{ details: Record<string, unknown> }>(`SELECT details FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'privacy.retention_sweep' AND target_id = $2 AND outcome = 'failed'`, [sweeper.tenantId, sweepA]);
        expect(lost.rows.map((row) => row.details)).toEqual([expect.objectContaining({ error: 'node_lost', previousNode: 'sweep-a' })]);
        expect(await contactsIn('active')).toBe(0);
        const ledger = await db.superQuery<{ n: string; distinct: string }>(`SELECT count(*) AS n, count(DISTINCT subject_id) AS distinct FROM ringvakt.erasure_ledger WHERE tenant_id = $1`, [sweeper.tenantId]);
        expect(ledger.rows[0]).toEqual({ n: '2000', distinct: '2000' });
        // Within the 5 s resume check, plus a round of slack on a loaded machine.
        expect(resumedAfterMs).toBeLessThan(8_000);
      } finally {
        await nodeB.stop();
      }
    }, 120_000);

    it('a sweep given up by a stopping node is resumed by another at once', async () => {
      await inactiveContacts(600, '+47951');
      const nodeB = await startSweeperB();
      const presenceC = startNodePresence({ connectionString: String(db.handles.pool.options.connectionString), nodeId: 'sweep-c', logger: db.logger });
      try {
        await presenceC.ready();
        const tenantDb = db.handles.forTenant(sweeper.tenantId);
        // Node C is asked to stop after its first batches (SIGTERM while sweeping).
        let asked = 0;
        const options = { dryRun: false, requestedBy: 'schedule', node: 'sweep-c', stopping: () => (asked += 1) > 1 };
        const id = await beginSweep(tenantDb, options);
        await expect(runSweep(tenantDb, await db.handles.crypto(), id ?? '', options)).rejects.toThrow('sweep_stopped');
        const given = await db.superQuery<{ state: string; error_code: string }>(`SELECT state, error_code FROM ringvakt.retention_sweeps WHERE id = $1`, [id]);
        expect(given.rows[0]).toEqual({ state: 'abandoned', error_code: 'node_stopped' });
        expect(await contactsIn('active')).toBeGreaterThan(0);
        const earlier = await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.retention_sweeps WHERE tenant_id = $1 AND node = 'sweep-b' AND id <> $2`, [sweeper.tenantId, id]);
        await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.retention_sweeps WHERE tenant_id = $1 AND node = 'sweep-b' AND state = 'done' AND NOT (id = ANY ($2::uuid[]))`, [sweeper.tenantId, earlier.rows.map((row) => row.id)])).rowCount === 1, 30_000);
        expect(await contactsIn('active')).toBe(0);
      } finally {
        await presenceC.stop();
        await nodeB.stop();
      }
    }, 120_000);
  });
});
