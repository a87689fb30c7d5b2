import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/server/types.ts';
import { claimImport, importWorkerTick } from '../src/modules/imports/claim-import.ts';
import { runImport } from '../src/modules/imports/import-worker.ts';
import { runImportInThread } from '../src/modules/imports/import-thread.ts';
import { loadConfig } from '../src/config.ts';
import { startEmbeddedPostgres, type EmbeddedCluster } from '../src/db/embedded-postgres.ts';
import { createLogger } from '../src/logger.ts';
import type { TenantDb } from '../src/db/tenant-db.ts';
import { bearer, buildTestApp, PUBLIC_URL, uploadImportFile } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';

/**
 * Import batches commit without waiting for the WAL flush (migration 0030): a database crash can
 * undo the last batches a run was told had committed. A run that began before the database
 * restarted, or whose cursor is no longer where it left it, is refused, hands the import back, and
 * the next run resumes it from what the database kept: every row once, none lost.
 */
function importsOn(getDb: () => TestDatabase, label: string) {
  let app: App;
  let a: SeededTenant;
  let listId = '';
  let tenantDb: TenantDb;
  let crypto: Awaited<ReturnType<TestDatabase['handles']['crypto']>>;

  const call = (method: string, url: string, payload?: unknown) =>
    app.inject({ method: method as 'GET', url, headers: { ...bearer(a.owner.token), origin: PUBLIC_URL }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

  return {
    async setUp() {
      a = await seedTenant(getDb().handles, label);
      tenantDb = getDb().handles.forTenant(a.tenantId);
      crypto = await getDb().handles.crypto();
      app = await buildTestApp(getDb());
      listId = (await call('POST', '/api/v1/lists', { name: `${label} list`, defaultRegion: 'NO' })).json().id;
    },
    close: () => app?.close(),
    tenantId: () => a.tenantId,
    /** An import of `rows` people (name, number from `first` on), uploaded and claimed by `owner`. */
    async fileImport(owner: string, rows: number, first: number): Promise<string> {
      const created = await call('POST', '/api/v1/contact-imports', { listId, mapping: { Navn: 'name', Mobil: 'phone' } });
      expect(created.statusCode, created.body).toBe(201);
      const importId = created.json().id as string;
      const lines = Array.from({ length: rows }, (_, index) => `Avbrutt ${index},${first + index}`);
      const uploaded = await uploadImportFile(app, a.owner.token, importId, `Navn,Mobil\n${lines.join('\n')}\n`);
      expect(uploaded.statusCode).toBe(202);
      expect(await claimImport(tenantDb, owner, importId)).toBe(importId);
      return importId;
    },
    run: (importId: string, owner: string, onBatch?: () => Promise<void>) => runImport(tenantDb, crypto, importId, owner, { batchRows: 2, ...(onBatch ? { onBatch } : {}) }),
    claim: (importId: string, owner: string) => claimImport(tenantDb, owner, importId),
    /** What the import says of itself, and what the database holds of it: its contacts and their distinct numbers. */
    async outcome(importId: string) {
      const view = (await call('GET', `/api/v1/contact-imports/${importId}`)).json() as { state: string; rowsDone: number; created: number; linked: number; rejected: number };
      const held = await getDb().superQuery<{ contacts: number; numbers: number; members: number; lease: string | null }>(
        `SELECT (SELECT count(*)::int FROM ringvakt.contacts WHERE import_id = $1) AS contacts,
                (SELECT count(DISTINCT p.number_index)::int FROM ringvakt.contact_phones p JOIN ringvakt.contacts c ON c.id = p.contact_id WHERE c.import_id = $1) AS numbers,
                (SELECT count(*)::int FROM ringvakt.contact_list_members m JOIN ringvakt.contacts c ON c.id = m.contact_id WHERE c.import_id = $1 AND m.list_id = $2) AS members,
                (SELECT lease_owner FROM ringvakt.contact_imports WHERE id = $1) AS lease`,
        [importId, listId],
      );
      return { ...view, ...held.rows[0] };
    },
  };
}

describe(`import runs interrupted by the database (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  const imports = importsOn(() => db, 'interrupted');

  beforeAll(async () => {
    db = await createTestDatabase();
    await imports.setUp();
  });
  afterAll(async () => {
    await imports.close();
    await db?.drop();
  });

  /** Runs the import; once its `batch`th batch committed, the server's incarnation is gone, as a crash recovery leaves it. */
  const restartAfterBatch = (importId: string, owner: string, batch: number) => {
    let batches = 0;
    return imports.run(importId, owner, async () => {
      if (++batches === batch) await db.superQuery('TRUNCATE ringvakt.server_incarnation');
    });
  };

  it('refuses a run that began before the database restarted, hands the import back, and the next run finishes it', async () => {
    const importId = await imports.fileImport('before-restart', 10, 41_880_000);
    expect(await restartAfterBatch(importId, 'before-restart', 2)).toBe('interrupted');
    // The third batch wrote nothing; the import is free for the next run at once.
    expect(await imports.outcome(importId)).toMatchObject({ state: 'running', rowsDone: 4, contacts: 4, lease: null });
    expect(await imports.claim(importId, 'after-restart')).toBe(importId);
    expect(await imports.run(importId, 'after-restart')).toBe('done');
    expect(await imports.outcome(importId)).toMatchObject({ state: 'done', rowsDone: 10, created: 10, linked: 0, rejected: 0, contacts: 10, numbers: 10, members: 10 });
  });

  it('refuses to end an import whose run began before the database restarted; the next run ends it', async () => {
    const importId = await imports.fileImport('ending-before', 4, 41_886_000);
    // After the last batch, before the end.
    expect(await restartAfterBatch(importId, 'ending-before', 2)).toBe('interrupted');
    expect(await imports.outcome(importId)).toMatchObject({ state: 'running', rowsDone: 4, contacts: 4, lease: null });
    expect(await imports.claim(importId, 'ending-after')).toBe(importId);
    expect(await imports.run(importId, 'ending-after')).toBe('done');
    expect(await imports.outcome(importId)).toMatchObject({ state: 'done', rowsDone: 4, created: 4, contacts: 4 });
  });

  it('leaves an import whose thread finds its database out of reach, with its file, to be resumed', async () => {
    const importId = await imports.fileImport('unreachable', 3, 41_887_000);
    const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-import-thread-'));
    try {
      // Nothing listens on port 1.
      const thread = { connectionString: 'postgresql://nobody:none@127.0.0.1:1/none', config: loadConfig({ RINGVAKT_DATA_DIR: folder }), importId, owner: 'unreachable' };
      expect(await runImportInThread(db.handles.forTenant(imports.tenantId()), thread)).toBe('interrupted');
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    expect(await imports.outcome(importId)).toMatchObject({ state: 'running', rowsDone: 0, contacts: 0 });
    const kept = await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.contact_import_chunks WHERE import_id = $1`, [importId]);
    expect(kept.rows[0]?.n).toBe(1);
    // Its own lease: the same owner takes it again at once, and finishes it.
    expect(await imports.claim(importId, 'unreachable')).toBe(importId);
    expect(await imports.run(importId, 'unreachable')).toBe('done');
    expect(await imports.outcome(importId)).toMatchObject({ state: 'done', created: 3 });
  });

  it('refuses a batch when the import\'s cursor is not where the run left it', async () => {
    const importId = await imports.fileImport('cursor-kept', 10, 41_881_000);
    let batches = 0;
    const outcome = await imports.run(importId, 'cursor-kept', async () => {
      if (++batches === 2) await db.superQuery('UPDATE ringvakt.contact_imports SET rows_done = 2 WHERE id = $1', [importId]);
    });
    expect(outcome).toBe('interrupted');
    // Nothing of the refused batch: the cursor stays where it was put, the contacts are the first two batches'.
    expect(await imports.outcome(importId)).toMatchObject({ state: 'running', rowsDone: 2, contacts: 4, lease: null });
  });
});

describe(`import runs interrupted again and again (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  const first = importsOn(() => db, 'interrupted-again-1');
  const second = importsOn(() => db, 'interrupted-again-2');

  beforeAll(async () => {
    db = await createTestDatabase();
    await first.setUp();
    await second.setUp();
  });
  afterAll(async () => {
    await first.close();
    await second.close();
    await db?.drop();
  });

  it('fails an import whose runs the database interrupts again and again without a row more, and goes on with one that moves on', async () => {
    const stuck = await first.fileImport('tick-node', 4, 41_884_000);
    const moving = await second.fileImport('tick-node', 4, 41_885_000);
    const runs: string[] = [];
    // Every run is interrupted (its lease kept, as when the database did not answer the hand-back);
    // the second tenant's import moves on a row between its runs, the first's never does.
    const run = async (_tenantDb: TenantDb, importId: string) => {
      runs.push(importId);
      if (importId === moving) await db.superQuery(`UPDATE ringvakt.contact_imports SET rows_done = rows_done + 1 WHERE id = $1`, [moving]);
      return 'interrupted' as const;
    };
    const tick = importWorkerTick(db.handles.systemDb, run, db.logger, () => false, { owner: 'tick-node' });
    for (let ticks = 0; ticks < 3; ticks += 1) await tick();
    // Each tick runs each tenant's import once: an interrupted one does not hold up the other tenant's.
    expect(runs.filter((id) => id === stuck)).toHaveLength(3);
    expect(runs.filter((id) => id === moving)).toHaveLength(3);
    expect(await first.outcome(stuck)).toMatchObject({ state: 'running' });
    // Three runs begun at the same cursor, all interrupted: the fourth claim fails it instead of running it.
    const storedChunks = async () => (await db.superQuery(`SELECT 1 FROM ringvakt.contact_import_chunks WHERE import_id = $1`, [stuck])).rowCount;
    expect(await storedChunks()).toBeGreaterThan(0);
    await tick();
    expect(runs.filter((id) => id === stuck)).toHaveLength(3);
    // Its owner is told why, and what to do about the rest.
    expect(await first.outcome(stuck)).toMatchObject({ state: 'failed', lease: null, error: { code: 'import_interrupted', detail: expect.stringMatching(/^The database was interrupted three times at the same row.*Start a new import of the same file/) } });
    expect(await storedChunks()).toBe(0);
    expect(runs.filter((id) => id === moving)).toHaveLength(4);
    expect(await second.outcome(moving)).toMatchObject({ state: 'running', rowsDone: 4 });
  });
});

describe('an import through a crash of its database server', () => {
  // A PostgreSQL server of this test's own: the shared test server must not crash under other tests.
  const folder = mkdtempSync(path.join(os.tmpdir(), 'ringvakt-import-crash-'));
  chmodSync(folder, 0o711);
  let cluster: EmbeddedCluster | undefined;
  let db: TestDatabase | undefined;
  const imports = importsOn(() => db as TestDatabase, 'crashed');

  beforeAll(async () => {
    cluster = await startEmbeddedPostgres({ dataDir: path.join(folder, 'postgres'), logger: createLogger('silent') });
    db = await createTestDatabase({ server: cluster.adminUrl });
    await imports.setUp();
  }, 120_000);
  afterAll(async () => {
    await imports.close();
    await db?.drop();
    await cluster?.stop();
    rmSync(folder, { recursive: true, force: true });
  });

  // The whole path: which check ended the run (the dropped connection, most often, or the
  // incarnation) the tests above tell apart; here the database really loses what it loses.
  it('goes on from what the database kept after it crashed mid-import: every row once, none lost', async () => {
    const database = db as TestDatabase;
    const importId = await imports.fileImport('crash-worker', 40, 41_882_000);
    const incarnation = async () => (await database.superQuery<{ token: string }>('SELECT ringvakt.server_incarnation() AS token')).rows[0]?.token;
    const before = await incarnation();
    let batches = 0;
    const outcome = await imports.run(importId, 'crash-worker', async () => {
      if (++batches !== 5) return;
      // A backend killed: PostgreSQL ends every connection and recovers from its WAL (what a batch
      // committed without its flush may be gone then).
      const backends = await database.superQuery<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`);
      // The first that still lives (one may have ended since it was listed).
      const killed = backends.rows.some(({ pid }) => {
        try {
          process.kill(pid, 'SIGKILL');
          return true;
        } catch {
          return false;
        }
      });
      expect(killed).toBe(true);
      await until(async () => (await database.superQuery('SELECT 1').then(() => true, () => false)), 30_000);
    });
    expect(outcome).toBe('interrupted');
    expect(await incarnation()).not.toBe(before);
    const interrupted = await imports.outcome(importId);
    expect(interrupted.state).toBe('running');
    expect(interrupted.contacts).toBe(interrupted.rowsDone);
    // Taken again by the same worker: handed back, or (the database still recovering) its own lease.
    expect(await imports.claim(importId, 'crash-worker')).toBe(importId);
    expect(await imports.run(importId, 'crash-worker')).toBe('done');
    expect(await imports.outcome(importId)).toMatchObject({ state: 'done', rowsDone: 40, created: 40, linked: 0, rejected: 0, contacts: 40, numbers: 40, members: 40 });
  }, 120_000);
});
