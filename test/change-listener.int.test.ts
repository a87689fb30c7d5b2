import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChangeListener } from '../src/db/change-listener.ts';
import { createLogger } from '../src/logger.ts';
import { until } from './support/until.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';


describe(`change listener (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  // Freezing the database backend needs the right to signal it: root, or the embedded server's own user.
  const canSignal = process.getuid?.() === 0 || serverLabel() === 'embedded';
  it.runIf(canSignal)('delivers notifications, and reports a connection that is alive but silent as down', async () => {
    const listener = await startChangeListener(db.runtimeUrl, createLogger('silent'), { heartbeatMs: 200 });
    const received: string[] = [];
    let downs = 0;
    listener.subscribe('ringvakt_test', (payload) => received.push(payload), () => (downs += 1));
    await until(() => listener.isUp(), 2000);
    await db.superQuery(`SELECT pg_notify('ringvakt_test', 'hello')`);
    await until(() => received.includes('hello'), 2000);

    const backend = await db.superQuery<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = 'ringvakt-listen' AND datname = current_database() AND usename = $1`,
      [db.handles.roles.runtime],
    );
    // Freeze the listener's backend (as root): the TCP connection stays up, nothing arrives.
    const pids = backend.rows.map((row) => row.pid);
    const downsBefore = downs;
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      await until(() => !listener.isUp(), 3000);
      expect(downs).toBeGreaterThan(downsBefore);
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
    await until(() => listener.isUp(), 5000);
    await db.superQuery(`SELECT pg_notify('ringvakt_test', 'again')`);
    await until(() => received.includes('again'), 2000);
    await listener.close();
    expect(listener.isUp()).toBe(false);
  });
});
