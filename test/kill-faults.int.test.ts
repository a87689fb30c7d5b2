import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealTenantLedger } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey, publicKeys } from '../src/audit/signing-key.ts';
import { verifyTenantLedger } from '../src/audit/verify-audit-log.ts';
import { Readable } from 'node:stream';
import { createContact } from '../src/modules/contacts/contacts.service.ts';
import { storeUpload } from '../src/modules/imports/import-upload.ts';
import { createImport, createImportSchema } from '../src/modules/imports/imports.routes.ts';
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
 * Nodes killed with SIGKILL at 20 random moments — 7 while dialing a campaign, 7 while erasing
 * data subjects, 6 while importing contacts — and started again: afterwards no committed data is
 * lost or half-written, no contact was dialed twice, no attempt is left open, the erasure ledger
 * mirror holds every committed erasure, the import holds every row once, and the audit ledger
 * verifies.
 */
describe(`SIGKILL at random moments during dialing, erasure and import (${serverLabel()} server)`, () => {
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

  it('dialing: seven nodes killed mid-campaign, each taken over by the next; no contact dialed twice, no attempt left open', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const callees = await createCallees(tenantDb, db.handles, 300, '+4796', zoneOpenNow());
    const campaignId = await startedCampaign(tenantDb, callees.ids, { name: 'Kills', retryRules: { busy: { retry: false, afterMinutes: 30 } } });
    // Agents on the floor, so that the dialer dials (progressive: a line per idle agent).
    await availableAgents(tenantDb, db.handles, campaignId, 3, new Date(), 'kills');
    for (const [round, delay] of moments(7, 300, 2_500, 7).entries()) {
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
    // A last node takes over and settles what the seventh left open.
    const last = spawnNode('test/support/dialer-node.ts', { NODE_ID: 'kill-node-last' });
    await until(() => last.output().includes(`running ${campaignId}`), 30_000);
    await until(async () => (await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialer <> 'kill-node-last' AND state <> 'ended'`, [campaignId])).rowCount === 0, 20_000);
    last.child.kill('SIGKILL');

    const dialed = await db.superQuery<{ contact_id: string; n: string }>(`SELECT contact_id, count(*) AS n FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND dialed_at IS NOT NULL GROUP BY contact_id`, [campaignId]);
    expect(dialed.rowCount).toBeGreaterThan(20);
    expect(dialed.rows.filter((row) => Number(row.n) > 1)).toEqual([]);
    // Every takeover is on the record: seven nodes died, seven takeovers.
    const takeovers = await db.superQuery(`SELECT 1 FROM ringvakt.audit_events WHERE action = 'campaign.dialer_takeover' AND target_id = $1`, [campaignId]);
    expect(takeovers.rowCount).toBe(7);
    // Attempts are whole: ended ones have an outcome.
    const broken = await db.superQuery(`SELECT 1 FROM ringvakt.dial_attempts WHERE campaign_id = $1 AND state = 'ended' AND outcome IS NULL`, [campaignId]);
    expect(broken.rowCount).toBe(0);
  }, 240_000);

  it('erasure: seven nodes killed mid-erasure; every subject is erased whole or not at all, and the mirror catches up with every committed erasure', async () => {
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
    for (const delay of moments(7, 100, 600, 11)) {
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

  it('import: six nodes killed mid-import, each taken over by the next within seconds; every row lands once', async () => {
    const tenantDb = db.handles.forTenant(tenant.tenantId);
    const crypto = await db.handles.crypto();
    // 30,000 rows: every 100th a duplicate of the row before it (same customer number and
    // number), every 250th a number that is no number.
    const lines = ['Kundenr,Navn,Mobil'];
    for (let index = 0; index < 30_000; index += 1) {
      if (index % 100 === 99) lines.push(lines[lines.length - 1] ?? '');
      else if (index % 250 === 249) lines.push(`K${index},Feil ${index},ikke-et-nummer`);
      else lines.push(`K${index},Importert ${index},+4790${String(index).padStart(6, '0')}`);
    }
    const importId = await tenantDb.transaction(async (trx) => {
      const list = await trx.insertInto('contact_lists').values({ name: 'Kill import', default_region: 'NO' }).returning('id').executeTakeFirstOrThrow();
      return createImport(trx, createImportSchema.parse({ listId: list.id, mapping: { Kundenr: 'externalId', Navn: 'name', Mobil: 'phone' } }), 'test');
    });
    await storeUpload(tenantDb, crypto.cipher, importId, Readable.from([Buffer.from(`${lines.join('\n')}\n`)]));
    const job = async () => (await db.superQuery<{ state: string; lease_owner: string | null; rows_done: number }>(`SELECT state, lease_owner, rows_done FROM ringvakt.contact_imports WHERE id = $1`, [importId])).rows[0];
    const takeovers: number[] = [];
    for (const [round, delay] of moments(6, 200, 1_500, 13).entries()) {
      const nodeId = `import-node-${round}`;
      const node = spawnNode('test/support/import-node.ts', { NODE_ID: nodeId });
      await until(() => node.output().includes('ready'), 30_000);
      const readyAt = Date.now();
      // It takes the import over (a dead node's lease has ~60 s left: only its presence tells).
      await until(async () => (await job())?.lease_owner === nodeId, 20_000).catch(async (error: unknown) => {
        throw new Error(`round ${round}: ${(error as Error).message}; ${JSON.stringify(await job())}`);
      });
      takeovers.push(Date.now() - readyAt);
      await new Promise((resolve) => setTimeout(resolve, delay));
      expect((await job())?.state).toBe('running');
      node.child.kill('SIGKILL');
      await node.exited;
    }
    const last = spawnNode('test/support/import-node.ts', { NODE_ID: 'import-node-last' });
    await until(async () => (await job())?.state === 'done', 120_000);
    last.child.kill('SIGKILL');
    // Taken over within a few seconds of the new node being able to judge (its lease alone: a minute).
    expect(Math.max(...takeovers)).toBeLessThan(5_000);

    // 300 duplicates and 60 numbers that are none (the other 60 of every-250th rows are duplicates first).
    const view = (await db.superQuery(`SELECT rows_done, file_rows, rows_created, rows_rejected FROM ringvakt.contact_imports WHERE id = $1`, [importId])).rows[0];
    expect(view).toEqual({ rows_done: '30000', file_rows: '30000', rows_created: '29640', rows_rejected: '360' });
    const contacts = await db.superQuery<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT external_id) AS d FROM ringvakt.contacts WHERE import_id = $1`, [importId]);
    expect(contacts.rows[0]).toEqual({ n: '29640', d: '29640' });
    const rejects = await db.superQuery<{ n: string; d: string }>(`SELECT count(*) AS n, count(DISTINCT row_number) AS d FROM ringvakt.contact_import_rejects WHERE import_id = $1`, [importId]);
    expect(rejects.rows[0]).toEqual({ n: '360', d: '360' });
    const members = await db.superQuery<{ n: string }>(`SELECT count(*) AS n FROM ringvakt.contact_list_members m JOIN ringvakt.contact_imports i ON i.list_id = m.list_id AND i.tenant_id = m.tenant_id WHERE i.id = $1`, [importId]);
    expect(members.rows[0]?.n).toBe('29640');
  }, 300_000);

  it('the audit ledger verifies after all of it', async () => {
    const key = await loadSigningKey(db.handles.systemDb, (await db.handles.crypto()).root);
    await db.handles.forTenant(tenant.tenantId).transaction((trx) => sealTenantLedger(trx, key));
    const verdict = await db.handles.forTenant(tenant.tenantId).snapshot(async (trx) => verifyTenantLedger(trx, await publicKeys(db.handles.systemDb)));
    expect(verdict).toMatchObject({ ok: true });
  });
});
