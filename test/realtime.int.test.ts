import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { openDatabase, type DatabaseHandles } from '../src/db/database.ts';
import { setAgentState } from '../src/modules/agents/agent-states.ts';
import { createUser } from '../src/modules/users/users.repo.ts';
import { issueApiToken } from '../src/modules/api-tokens/api-tokens.service.ts';
import { permissions } from '../src/modules/access/permissions.ts';
import type { App } from '../src/server/types.ts';
import { bearer, buildTestApp, PUBLIC_URL } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { registerPersonalData } from './support/canary.ts';
import { until } from './support/until.ts';
import { sessionFor } from './support/auth.ts';

type Received = { messages: Record<string, unknown>[]; closed?: { code: number; reason: string }; socket: WebSocket };

/**
 * Realtime over WebSocket, across two server processes' worth of handles (each its own pool and
 * LISTEN connection): a change committed through one reaches the clients of the other, filtered
 * by tenant and permission; bad origins and lapsed credentials are cut off.
 */
describe(`realtime WebSocket (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let second: DatabaseHandles;
  let writer: App;
  let reader: App;
  let readerUrl = '';
  let a: SeededTenant;
  let b: SeededTenant;
  let campaignId = '';
  const sockets: WebSocket[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    a = await seedTenant(db.handles, 'realtime-a');
    b = await seedTenant(db.handles, 'realtime-b');
    second = await openDatabase(db.config, db.logger, { applyMigrations: false });
    writer = await buildTestApp(db);
    reader = await buildTestApp({ ...db, handles: second }, { realtimeRecheckMs: 100 });
    await reader.listen({ host: '127.0.0.1', port: 0 });
    const address = reader.server.address();
    readerUrl = `ws://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/api/v1/realtime`;
    campaignId = (await db.handles.forTenant(a.tenantId).transaction((trx) => trx.insertInto('campaigns').values({ name: 'Realtime' }).returning('id').executeTakeFirstOrThrow())).id;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.terminate();
    await writer?.close();
    await reader?.close();
    await second?.close();
    await db?.drop();
  });

  const connect = (token: string, headers: Record<string, string> = {}) =>
    new Promise<Received>((resolve, reject) => {
      const socket = new WebSocket(readerUrl, { headers: { ...bearer(token), ...headers } });
      sockets.push(socket);
      const received: Received = { messages: [], socket };
      // Every message is a batch: a JSON array of events.
      socket.on('message', (data: Buffer) => received.messages.push(...(JSON.parse(data.toString()) as Record<string, unknown>[])));
      socket.on('close', (code: number, reason: Buffer) => {
        received.closed = { code, reason: reason.toString() };
        resolve(received);
      });
      // A refused upgrade: the server answers and closes the connection itself (it must not let
      // unauthenticated sockets linger); the client does not hang up first.
      socket.on('unexpected-response', (_request, response) => {
        response.resume();
        response.socket.once('close', () => reject(new Error(`upgrade refused: ${response.statusCode}, connection closed by the server`)));
      });
      socket.on('error', reject);
      socket.on('open', () => setTimeout(() => resolve(received), 50));
    });
  const topics = (received: Received, topic: string) => received.messages.filter((message) => message.topic === topic);
  /** An active user of tenant A with the given role and an API token. */
  const userWithToken = async (name: string, role: 'agent' | 'supervisor' | 'auditor') => {
    const tenantDb = db.handles.forTenant(a.tenantId);
    const { cipher } = await db.handles.crypto();
    const email = `${name}@realtime-a.example`;
    registerPersonalData(email);
    return tenantDb.transaction(async (trx) => {
      const user = await createUser(trx, cipher, { email, displayName: name, role });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', user.id).execute();
      const { token } = await issueApiToken(trx, a.tenantId, { userId: user.id, name: `${name} token`, expiresAt: new Date(Date.now() + 3_600_000), scopes: permissions });
      return { userId: user.id, token };
    });
  };

  it('delivers agent states across processes: the whole floor to a supervisor, only their own to an agent, nothing to another tenant', async () => {
    const supervisor = await connect(a.owner.token);
    const agent = await connect(a.agent.token);
    const otherTenant = await connect(b.owner.token);
    expect(topics(supervisor, 'hello')).toHaveLength(1);

    // A second agent of tenant A, whose state the first agent must not see.
    const tenantDb = db.handles.forTenant(a.tenantId);
    const { cipher } = await db.handles.crypto();
    registerPersonalData('colleague@realtime-a.example');
    const colleague = await tenantDb.transaction((trx) => createUser(trx, cipher, { email: 'colleague@realtime-a.example', displayName: 'Colleague', role: 'agent' }));
    // The change goes through the other process (its own pool); NOTIFY carries it over.
    const response = await writer.inject({ method: 'PUT', url: '/api/v1/agent/state', headers: { ...bearer(a.agent.token), origin: PUBLIC_URL }, payload: { state: 'available', campaignId } });
    expect(response.statusCode).toBe(200);
    await tenantDb.transaction((trx) => setAgentState(trx, colleague.id, { state: 'paused', reason: 'training', now: new Date() }));

    await until(() => topics(supervisor, 'agent.state').length === 2 && topics(agent, 'agent.state').length === 1, 5_000);
    expect(topics(supervisor, 'agent.state')).toEqual([
      expect.objectContaining({ agentId: a.agent.id, state: 'available', campaignId }),
      expect.objectContaining({ agentId: colleague.id, state: 'paused', reason: 'training' }),
    ]);
    expect(topics(agent, 'agent.state')).toEqual([expect.objectContaining({ agentId: a.agent.id, state: 'available' })]);
    // A moment more: nothing else arrives for the agent or the other tenant.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(topics(agent, 'agent.state')).toHaveLength(1);
    expect(otherTenant.messages.filter((message) => message.topic !== 'hello')).toEqual([]);
    // A rolled-back change is never announced.
    await tenantDb
      .transaction(async (trx) => {
        await setAgentState(trx, colleague.id, { state: 'available', campaignId, now: new Date() });
        throw new Error('roll back');
      })
      .catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(topics(supervisor, 'agent.state')).toHaveLength(2);
  });

  it('refuses a page of another origin, a caller without credential, and one without a realtime permission', async () => {
    const foreign = await connect(a.owner.token, { origin: 'https://evil.example' });
    await until(() => foreign.closed !== undefined, 2_000);
    expect(foreign.closed?.code).toBe(4403);
    await expect(connect('rvk_not-a-token')).rejects.toThrow(/upgrade refused: 401, connection closed by the server/);
    const auditor = await userWithToken('auditor', 'auditor');
    const refused = await connect(auditor.token);
    await until(() => refused.closed !== undefined, 2_000);
    expect(refused.closed?.code).toBe(4403);
  });

  it('cuts off a connection whose credential is revoked', async () => {
    const tenantDb = db.handles.forTenant(a.tenantId);
    const leaver = await userWithToken('leaver', 'agent');
    const open = await connect(leaver.token);
    expect(open.closed).toBeUndefined();
    const tokenId = (await tenantDb.read((trx) => trx.selectFrom('api_tokens').select('id').where('name', '=', 'leaver token').executeTakeFirstOrThrow())).id;
    // Revoked by an administrator in a browser session, through the other process.
    const session = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const revoked = await writer.inject({ method: 'DELETE', url: `/api/v1/api-tokens/${tokenId}`, cookies: { '__Host-rv_session': session.cookies['__Host-rv_session'] as string }, headers: { origin: PUBLIC_URL, 'x-csrf-token': session.csrf } });
    expect(revoked.statusCode).toBeLessThan(300);
    await until(() => open.closed !== undefined, 5_000);
    expect(open.closed?.code).toBe(4401);
  });

  it('cuts off a supervisor whose role no longer carries what the connection was opened with', async () => {
    const demoted = await userWithToken('demoted', 'supervisor');
    const open = await connect(demoted.token);
    expect(open.closed).toBeUndefined();
    // Demoted to agent by an administrator, through the other process.
    const session = await sessionFor(db.handles, a.tenantId, a.owner.id);
    const changed = await writer.inject({ method: 'PATCH', url: `/api/v1/users/${demoted.userId}`, cookies: { '__Host-rv_session': session.cookies['__Host-rv_session'] as string }, headers: { origin: PUBLIC_URL, 'x-csrf-token': session.csrf }, payload: { role: 'agent' } });
    expect(changed.statusCode).toBe(200);
    await until(() => open.closed !== undefined, 5_000);
    expect(open.closed?.code).toBe(4401);
  });
});
