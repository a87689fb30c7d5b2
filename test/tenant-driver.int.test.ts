import { CompiledQuery, sql } from '../src/db/kysely.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { binaryArray } from '../src/db/binary-array.ts';
import { deferWrite, sendTogether } from '../src/db/tenant-db.ts';
import { TransactionRolledBackError } from '../src/db/tenant-driver.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';

describe(`the pipelined tenant driver (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let tenant: SeededTenant;
  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'driver');
  });
  afterAll(async () => db?.drop());

  it('reports a transaction the database rolled back as failed, and keeps nothing of it', async () => {
    const before = await db.superQuery('SELECT count(*)::int AS n FROM ringvakt.users');
    const { cipher } = await db.handles.crypto();
    const attempt = db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
      await createUser(trx, cipher, { email: 'new@driver.example', displayName: 'New', role: 'agent' });
      // A caller that swallows a failed statement and carries on must not get a success.
      await sql`SELECT 1 / 0`.execute(trx).catch(() => undefined);
      return 'ok';
    });
    await expect(attempt).rejects.toBeInstanceOf(TransactionRolledBackError);
    const after = await db.superQuery('SELECT count(*)::int AS n FROM ringvakt.users');
    expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
  });

  it('survives a database connection killed in the middle of a request', async () => {
    const slow = db.handles
      .forTenant(tenant.tenantId)
      .read((trx) => sql`SELECT pg_sleep(5)`.execute(trx))
      .then(() => 'finished', (error: Error) => error.message);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await db.superQuery(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()`,
    );
    // The request fails with the connection's own error (how it surfaces depends on timing).
    expect(await slow).toMatch(/terminat|ECONNRESET/);
    // The pool recovers: the dead connection is never handed out again; every next request works.
    for (let round = 0; round < 3; round += 1) {
      const reads = await Promise.all(
        Array.from({ length: 12 }, () => db.handles.forTenant(tenant.tenantId).read((trx) => trx.selectFrom('users').select('id').execute())),
      );
      expect(reads.every((rows) => rows.length > 0)).toBe(true);
    }
  });

  it('scopes every query of a read to its tenant and to read-only, and leaves nothing on the pooled connection', async () => {
    const other = await seedTenant(db.handles, 'driver-other');
    const handle = db.handles.forTenant(tenant.tenantId);
    // Several queries in one read, some in parallel: each sees the tenant and only its rows.
    const seen = await handle.read(async (trx) => {
      const first = await sql<{ t: string }>`SELECT current_setting('app.tenant_id', true) AS t`.execute(trx);
      const [users, again] = await Promise.all([
        trx.selectFrom('users').select('tenant_id').execute(),
        sql<{ ro: string }>`SELECT current_setting('transaction_read_only') AS ro`.execute(trx),
      ]);
      return { first: first.rows[0]!.t, tenants: new Set(users.map((user) => user.tenant_id)), readOnly: again.rows[0]!.ro };
    });
    expect(seen).toEqual({ first: tenant.tenantId, tenants: new Set([tenant.tenantId]), readOnly: 'on' });
    // A write later in a read is refused like the first.
    await expect(
      handle.read(async (trx) => {
        await trx.selectFrom('users').select('id').execute();
        await trx.deleteFrom('users').execute();
      }),
    ).rejects.toThrow(/read-only transaction/);
    // Every pooled connection, used by reads of two tenants, is clean afterwards: no tenant, writable.
    const reads = Array.from({ length: 30 }, (_, index) =>
      db.handles.forTenant(index % 2 ? other.tenantId : tenant.tenantId).read((trx) => trx.selectFrom('users').select('id').execute()),
    );
    await Promise.all(reads);
    const probes = await Promise.all(
      Array.from({ length: 30 }, () =>
        db.handles.pool
          .query<{ t: string | null; ro: string; pid: number }>(
            `SELECT current_setting('app.tenant_id', true) AS t, current_setting('transaction_read_only') AS ro, pg_backend_pid() AS pid`,
          )
          .then((result) => result.rows[0]!),
      ),
    );
    expect(new Set(probes.map((probe) => probe.pid)).size).toBeGreaterThan(1);
    for (const probe of probes) expect([probe.t ?? '', probe.ro]).toEqual(['', 'off']);
  });

  it('keeps prepared statements right across failures: a failed parse, a failed execution, pipelined twins', async () => {
    const handle = db.handles.forTenant(tenant.tenantId);
    for (let round = 0; round < 15; round += 1) {
      // Parses, then fails while executing; the same statement must then work with a good value.
      await expect(handle.read((trx) => sql`SELECT 10 / ${0}::int AS q`.execute(trx))).rejects.toThrow(/division by zero/);
      expect((await handle.read((trx) => sql<{ q: number }>`SELECT 10 / ${5}::int AS q`.execute(trx))).rows).toEqual([{ q: 2 }]);
      // Never parses; the connection must go on serving other named statements (reads and writes).
      await expect(handle.read((trx) => sql`SELECT no_such_column FROM users`.execute(trx))).rejects.toThrow(/no_such_column/);
      await expect(handle.transaction((trx) => sql`SELECT no_such_column FROM users`.execute(trx))).rejects.toThrow(/no_such_column/);
      expect((await handle.read((trx) => trx.selectFrom('users').select('id').where('id', '=', tenant.owner.id).execute())).length).toBe(1);
      expect(await handle.transaction((trx) => trx.updateTable('users').set({ updated_at: new Date() }).where('id', '=', tenant.owner.id).executeTakeFirst()).then((result) => Number(result.numUpdatedRows))).toBe(1);
    }
    // Many identical statements in flight on the same connections at once.
    const twins = await Promise.all(
      Array.from({ length: 40 }, (_, index) => handle.read((trx) => sql<{ n: number }>`SELECT ${index}::int + 1 AS n`.execute(trx)).then((result) => result.rows[0]!.n)),
    );
    expect(twins).toEqual(Array.from({ length: 40 }, (_, index) => index + 1));
  });

  it('sends a deferred write (an audit event) with the next query or the COMMIT; its failure fails the transaction with its own error', async () => {
    const handle = db.handles.forTenant(tenant.tenantId);
    const events = async () => (await db.superQuery<{ n: number }>(`SELECT count(*)::int AS n FROM ringvakt.audit_events WHERE tenant_id = $1 AND action = 'role.update'`, [tenant.tenantId])).rows[0]!.n;
    const event = { action: 'role.update', outcome: 'success', actor: { type: 'system' } } as const;
    const start = await events();

    // Alone in its transaction: it commits with the COMMIT.
    await handle.transaction((trx) => recordAuditEvent(trx, event));
    expect(await events()).toBe(start + 1);

    // A later query of the same transaction sees it (it went out first, on the same connection).
    const seenInside = await handle.transaction(async (trx) => {
      await recordAuditEvent(trx, event);
      const rows = await sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_events WHERE action = 'role.update'`.execute(trx);
      return rows.rows[0]!.n;
    });
    expect(seenInside).toBe(start + 2);

    // Work that fails after deferring: nothing of the transaction is kept, the deferred write included.
    await expect(
      handle.transaction(async (trx) => {
        await trx.updateTable('users').set({ updated_at: new Date() }).where('id', '=', tenant.owner.id).execute();
        await recordAuditEvent(trx, event);
        throw new Error('the handler failed');
      }),
    ).rejects.toThrow('the handler failed');
    expect(await events()).toBe(start + 2);

    // A deferred write that fails at COMMIT: the caller gets that statement's own error, the earlier
    // change of the transaction is rolled back with it, and the connection serves the next request.
    const { cipher } = await db.handles.crypto();
    const usersBefore = (await db.superQuery<{ n: number }>('SELECT count(*)::int AS n FROM ringvakt.users')).rows[0]!.n;
    for (let round = 0; round < 12; round += 1) {
      await expect(
        handle.transaction(async (trx) => {
          await createUser(trx, cipher, { email: `deferred-${round}@driver.example`, displayName: 'Deferred', role: 'agent' });
          await recordAuditEvent(trx, event);
          // Deferred: nothing is sent yet, so the call itself succeeds; the failure comes at COMMIT.
          await expect(deferWrite(trx, CompiledQuery.raw(`SELECT 1 / (${round} - ${round})`))).resolves.toBeUndefined();
        }),
      ).rejects.toThrow(/division by zero/);
      // The same with nothing sent before the deferred write: the whole transaction is one batch.
      await expect(
        handle.transaction(async (trx) => {
          await expect(deferWrite(trx, CompiledQuery.raw('SELECT 1 / 0'))).resolves.toBeUndefined();
        }),
      ).rejects.toThrow(/division by zero/);
      // And a deferred INSERT that fails alone (the implicit transaction): a check constraint.
      await expect(
        handle.transaction(async (trx) => {
          await expect(deferWrite(trx, CompiledQuery.raw(`INSERT INTO audit_events (occurred_at, actor_type, action, outcome, leaf_hash) VALUES (now(), 'nobody', 'role.update', 'success', '\\x00')`))).resolves.toBeUndefined();
        }),
      ).rejects.toThrow(/check constraint/);
    }
    expect((await db.superQuery<{ n: number }>('SELECT count(*)::int AS n FROM ringvakt.users')).rows[0]!.n).toBe(usersBefore);
    expect(await events()).toBe(start + 2);
    const after = await Promise.all(Array.from({ length: 12 }, () => handle.transaction((trx) => recordAuditEvent(trx, event))));
    expect(after).toHaveLength(12);
    expect(await events()).toBe(start + 14);
    // The next query of a failed deferred batch's connection is never inside the aborted transaction.
    const probes = await Promise.all(
      Array.from({ length: 20 }, () => db.handles.pool.query<{ status: string }>(`SELECT 'fine' AS status`).then((result) => result.rows[0]!.status)),
    );
    expect(new Set(probes)).toEqual(new Set(['fine']));
  });
  it('sends queries of a transaction together, run in the order given; a failing one fails them with its own error', async () => {
    const handle = db.handles.forTenant(tenant.tenantId);
    const rows = await handle.transaction((trx) =>
      sendTogether(trx, [
        CompiledQuery.raw(`SELECT set_config('ringvakt.probe', 'first', true) AS v`),
        CompiledQuery.raw(`SELECT current_setting('ringvakt.probe') AS v, current_setting('app.tenant_id') AS tenant`),
        CompiledQuery.raw(`SELECT generate_series(1, 3) AS n`),
      ]),
    );
    expect(rows).toEqual([[{ v: 'first' }], [{ v: 'first', tenant: tenant.tenantId }], [{ n: 1 }, { n: 2 }, { n: 3 }]]);
    // The second fails: its error, not the aborted transaction's of the third, and the transaction rolls back.
    await expect(
      handle.transaction((trx) => sendTogether(trx, [CompiledQuery.raw('SELECT 1'), CompiledQuery.raw('SELECT 1 / 0'), CompiledQuery.raw('SELECT 2')])),
    ).rejects.toThrow(/division by zero/);
    // Nothing of it is left on the connection (the setting was the transaction's own).
    const [[left]] = (await handle.transaction((trx) => sendTogether(trx, [CompiledQuery.raw(`SELECT current_setting('ringvakt.probe', true) AS v`)]))) as [[{ v: string | null }]];
    expect(left.v ?? '').toBe('');
  });

  it('passes bulk values as binary arrays, every element type and NULL as the server stores them; a wrong element type is refused', async () => {
    const id = '0190f6a2-1b2c-7d3e-8f40-123456789abc';
    // Far more than the writer's first guess at the size, in two- and three-byte characters.
    const many = Array.from({ length: 3000 }, (_, index) => 'ø€'.repeat(index % 40));
    const back = await db.handles.forTenant(tenant.tenantId).read((trx) =>
      sql<{ ids: string[]; bytes: (Buffer | null)[]; texts: (string | null)[]; small: number[]; ints: number[]; big: string[]; none: string[]; flags: (boolean | null)[]; many: string[] }>`
        SELECT ${binaryArray('uuid', [id.toUpperCase(), null])}::uuid[] AS ids, ${binaryArray('bytea', [Buffer.from([0, 255, 7]), Buffer.alloc(0), null])}::bytea[] AS bytes,
               ${binaryArray('text', ['Åse Ødegård', '', null])}::text[] AS texts, ${binaryArray('int2', [-3, 32767])}::smallint[] AS small,
               ${binaryArray('int4', [1, -2147483648])}::int[] AS ints, ${binaryArray('int8', [9007199254740991])}::bigint[] AS big,
               ${binaryArray('text', [])}::text[] AS none, ${binaryArray('bool', [true, false, null])}::bool[] AS flags,
               ${binaryArray('text', many)}::text[] AS many`.execute(trx),
    );
    expect(back.rows[0]).toEqual({
      ids: [id, null],
      bytes: [Buffer.from([0, 255, 7]), Buffer.alloc(0), null],
      texts: ['Åse Ødegård', '', null],
      small: [-3, 32767],
      ints: [1, -2147483648],
      big: ['9007199254740991'],
      none: [],
      flags: [true, false, null],
      many,
    });
    await expect(db.handles.forTenant(tenant.tenantId).read((trx) => sql`SELECT ${binaryArray('text', [id])}::uuid[]`.execute(trx))).rejects.toThrow(/element type/);
    expect(() => binaryArray('uuid', ['not-a-uuid'])).toThrow(TypeError);
    for (const wrong of [Number.NaN, 1.5]) expect(() => binaryArray('int4', [wrong])).toThrow(TypeError);
    expect(() => binaryArray('int8', [2 ** 53])).toThrow(TypeError);
    expect(() => binaryArray('int2', [40_000])).toThrow(RangeError);
    expect(() => binaryArray('bool', ['yes' as unknown as boolean])).toThrow(TypeError);
  });
});
