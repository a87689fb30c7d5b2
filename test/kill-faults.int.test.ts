import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey, publicKeys } from '../src/audit/signing-key.ts';
import { verifyTenantLedger } from '../src/audit/verify-audit-log.ts';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { catchUpLedgerMirror, readLedgerFile } from '../src/privacy/erasure.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { availableAgents, createCallees, startedCampaign, zoneOpenNow } from './support/dialer-floor.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';

/** A pseudo-random sequence of kill moments (fixed seed: a failure can be replayed). */
function moments(count: number, fromMs: number, toMs: number, seed: number): number[] {
  let state = seed;
  return Array.from({ length: count }, () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return fromMs + (state / 2 ** 31) * (toMs - fromMs);
  });
}

/**
 * Nodes killed with SIGKILL at 20 random moments — 10 while dialing a campaign, 10 while erasing
 * data subjects — and started again: afterwards no committed data is lost or half-written, no
 * contact was dialed twice, no attempt is left open, the erasure ledger mirror holds every
 * committed erasure, and the audit ledger verifies.
 */
describe(`SIGKILL at random moments during dialing and erasure (${serverLabel()} server)`, () => {
  const rootKey = randomBytes(32).toString('base64');
  let db: TestDatabase;
  let tenant: SeededTenant;
  let folder: string;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    db = await createTestDatabase({ env: { RINGVAKT_KEY_PROVIDER: 'env', RINGVAKT_ROOT_KEY: rootKey } });
    tenant = await seedTenant(db.handles, 'kill-faults');
    folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-kill-'));
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const spawnNode = (file: string, env: Record<string, string>) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      env: { ...process.env, DATABASE_URL: db.url, RINGVAKT_DATA_DIR: db.config.dataDir, RINGVAKT_ROOT_KEY: rootKey, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, output: () => out, exited };
  };

  it('dialing: ten nodes killed mid-campaign, each taken over by the next; no contact dialed twice, no attempt left open', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const callees = await createCallees(tenantDb, db.handles, 300, '+4796', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Kills', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    // Agents on the floor, so that the dialer dials (progressive: a line per idle agent).
    await availableAgents(tenantDb, db.handles, campaignId, 3, new Date(), 'kills');
    for (const [round, delay] of moments(10, 300, 2_500, 7).entries()) {
      const node = spawnNode('test/support/dialer-node.ts', { NODE_ID: `kill-node-${round}` });
      // Killed at a random moment after it owns the campaign (mid-round, mid-call, mid-commit).
      await until(() => node.output().includes(`running ${campaignId}`), 30_000).catch(async (error: unknown) => {
        const campaign = await db.superQuery(`SELECT state, dialer_owner, dialer_lease_until FROM ringvakt.campaigns WHERE id = $1`, [campaignId]);
        throw new Error(`round ${round}: ${(error as Error).message}; ${JSON.stringify(campaign.rows[0])}`);
      });
      await new Promise((resolve) => setTimeout(resolve, delay));
      node.child.kill('SIGKILL');
      await node.exited;
    }
    // A last node takes over and settles what the tenth left open.
    const last = spawnNode('test/support/dialer-node.ts', { NODE_ID: 'kill-node-last' });
    await until(() => last.output().includes(`running ${campaignId}`), 30_000);
    await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer <> 'kill-node-last' AND state <> 'ended'`, [campaignId])).rowCount === 0, 20_000);
    last.child.kill('SIGKILL');

    const dialed = await db.superQuery<{ contact_id: string; n: string }>(`SELECT contact_id, count(*) AS n FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialed_at IS NOT NULL GROUP BY contact_id`, [campaignId]);
    expect(dialed.rowCount).toBeGreaterThan(20);
    expect(dialed.rows.filter((row) => Number(row.n) > 1)).toEqual([]);
    // Every takeover is on the record: ten nodes died, ten takeovers.
    const takeovers = await db.superQuery(`SELECT 1 FROM ringvakt.audit_events WHERE action = 'campaign.dialer_takeover' AND target_id = $1`, [campaignId]);
    expect(takeovers.rowCount).toBe(10);
    // Attempts are whole: ended ones have an outcome.
    const broken = await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND state = 'ended' AND outcome IS NULL`, [campaignId]);
    expect(broken.rowCount).toBe(0);
  }, 240_000);

  it('erasure: ten nodes killed mid-erasure; every subject is erased whole or not at all, and the mirror catches up with every committed erasure', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const crypto = await db.handles.crypto();
    const ids = await tenantDb.transaction(async (trx) => {
      const created: string[] = [];
      for (let index = 0; index < 3_000; index += 1) {
        created.push((await createContact(trx, crypto, { name: `Slett ${index}`, phones: [{ kind: 'mobile', number: `+4795${String(index).padStart(6, '0')}` }] }, { defaultRegion: 'NO' })).id);
      }
      return created;
    });
    const mirrorFile = path.join(folder, 'erasure-ledger.jsonl');
    for (const delay of moments(10, 100, 600, 11)) {
      const erased = await db.superQuery<{ id: string }>(`SELECT id FROM ringvakt.contacts WHERE tenant_id = $1 AND status = 'erased'`, [tenant.tenantId]);
      const left = ids.filter((id) => !erased.rows.some((row) => row.id === id));
      const node = spawnNode('test/support/erasure-node.ts', { TENANT_ID: tenant.tenantId, CONTACT_IDS: left.join(','), MIRROR_FILE: mirrorFile });
      await until(() => node.output().includes('started'), 30_000);
      await new Promise((resolve) => setTimeout(resolve, delay));
      node.child.kill('SIGKILL');
      await node.exited;
      // What a restarted node does first.
      await catchUpLedgerMirror(db.handles.systemDb, mirrorFile);
    }
    const contacts = await db.superQuery<{ id: string; status: string; name_ciphertext: Buffer | null }>(
      `SELECT id, status, name_ciphertext FROM ringvakt.contacts WHERE tenant_id = $1 AND id = ANY ($2::uuid[])`,
      [tenant.tenantId, ids],
    );
    const ledger = await db.superQuery<{ subject_id: string }>(`SELECT subject_id FROM ringvakt.erasure_ledger WHERE tenant_id = $1`, [tenant.tenantId]);
    const erased = contacts.rows.filter((row) => row.status === 'erased').map((row) => row.id).sort();
    expect(erased.length).toBeGreaterThan(10);
    expect(erased.length).toBeLessThan(3_000);
    // Whole or nothing: exactly the erased subjects are in the ledger, once each; the others are readable.
    expect(ledger.rows.map((row) => row.subject_id).sort()).toEqual(erased);
    const kept = contacts.rows.filter((row) => row.status !== 'erased').slice(0, 5).map((row) => row.id);
    const readable = await tenantDb.read(async (trx) => (await import('../src/modules/contacts/contacts.service.ts')).loadContacts(trx, crypto, kept));
    expect([...readable.values()].map((contact) => contact.data.name?.slice(0, 6))).toEqual(kept.map(() => 'Slett '));
    // The mirror (kept apart from the database, replayed by restores) holds every committed erasure.
    expect(existsSync(mirrorFile)).toBe(true);
    const mirrored = new Set(readLedgerFile(mirrorFile).map((entry) => entry.subjectId));
    expect(erased.filter((id) => !mirrored.has(id))).toEqual([]);
  }, 240_000);

  it('the audit ledger verifies after all of it', async () => {
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key));
    const verdict = await db.handles.forTenant(tenant.tenantId).snapshot(async (trx) => verifyTenantLedger(trx, await publicKeys(db.handles.systemDb)));
    expect(verdict).toMatchObject({ ok: true });
  });
});
