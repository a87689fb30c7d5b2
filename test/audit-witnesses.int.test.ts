import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/audit-event.ts';
import { createCheckpointPublishers } from '../src/audit/checkpoint-publishers.ts';
import { startWitnessDeliveryRecorder } from '../src/audit/witness-deliveries.ts';
import { startAuditSealer } from '../src/audit/seal-audit-log.ts';
import { loadSigningKey, type SigningKey } from '../src/audit/signing-key.ts';
import { checkWitnessSignatures, readWitness, type WitnessedCheckpoint } from '../src/audit/witness.ts';
import { createLocalKeyProvider } from '../src/crypto/root-keys/local-key-provider.ts';
import { capturingLogger } from './support/app.ts';
import { createTestDatabase, serverLabel, type TestDatabase } from './support/database.ts';
import { seedTenant, type SeededTenant } from './support/seed.ts';
import { until } from './support/until.ts';

const SYSLOG_LINE = /^<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ ringvakt \d+ audit-checkpoint - (\{.*\})$/;

function parseSyslog(message: string): WitnessedCheckpoint {
  const match = SYSLOG_LINE.exec(message);
  if (!match) throw new Error(`not an RFC 5424 checkpoint message: ${message.slice(0, 80)}`);
  const { type, ...checkpoint } = JSON.parse(match[1]!) as WitnessedCheckpoint & { type: string };
  expect(type).toBe('ringvakt.audit.checkpoint');
  return checkpoint;
}

/** Splits an RFC 6587 octet-counted stream into messages, checking every count. */
function octetFrames(stream: Buffer): string[] {
  const messages: string[] = [];
  let at = 0;
  while (at < stream.length) {
    const space = stream.indexOf(0x20, at);
    const length = Number(stream.subarray(at, space).toString());
    messages.push(stream.subarray(space + 1, space + 1 + length).toString());
    at = space + 1 + length;
  }
  expect(at).toBe(stream.length);
  return messages;
}

describe(`outside witnesses of audit checkpoints (${serverLabel()} server)`, () => {
  let db: TestDatabase;
  let key: SigningKey;
  let tenant: SeededTenant;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'rv-witness-'));
  let udp: UdpSocket;
  let tcp: TcpServer;
  let http: HttpServer;
  const udpMessages: string[] = [];
  const tcpStreams: Buffer[] = [];
  const webhookBodies: WitnessedCheckpoint[] = [];
  const webhookAuthorizations: (string | undefined)[] = [];
  let webhookFailuresLeft = 0;
  const webhookToken = 'witness-token-0123456789abcdef';
  const secretPath = '/hooks/T0P-S3CRET-PATH';

  beforeAll(async () => {
    db = await createTestDatabase();
    tenant = await seedTenant(db.handles, 'witnessed');
    key = await loadSigningKey(db.handles.systemDb, createLocalKeyProvider(path.join(folder, 'root-keys.json')));
    udp = createSocket('udp4');
    udp.on('message', (message) => udpMessages.push(message.toString()));
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    tcp = createTcpServer((socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk) => chunks.push(chunk));
      socket.on('end', () => tcpStreams.push(Buffer.concat(chunks)));
    }).listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    http = createHttpServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        webhookAuthorizations.push(request.headers.authorization);
        if (request.url !== secretPath || webhookFailuresLeft > 0) {
          webhookFailuresLeft -= 1;
          response.writeHead(503).end();
          return;
        }
        const { type, ...checkpoint } = JSON.parse(Buffer.concat(chunks).toString()) as WitnessedCheckpoint & { type: string };
        expect(type).toBe('ringvakt.audit.checkpoint');
        webhookBodies.push(checkpoint);
        response.writeHead(204).end();
      });
    }).listen(0, '127.0.0.1');
    await once(http, 'listening');
  });
  afterAll(async () => {
    udp?.close();
    tcp?.close();
    http?.close();
    await db?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  const append = (count: number) =>
    db.handles.forTenant(tenant.tenantId).transaction(async (trx) => {
      for (let index = 0; index < count; index += 1) {
        await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' }, details: { index } });
      }
    });

  it('publishes each signed checkpoint to a file, syslog over UDP and TCP, and a webhook that is retried until it answers', async () => {
    const capture = capturingLogger('trace');
    const port = (server: { address(): unknown }) => (server.address() as AddressInfo).port;
    const witnessFile = path.join(folder, 'witness.jsonl');
    const webhook = { url: `http://127.0.0.1:${port(http)}${secretPath}`, token: webhookToken };
    // What each witness took is recorded per tenant, as the server records it (the compliance center's evidence).
    const recorder = startWitnessDeliveryRecorder(db.handles.forTenant, capture.logger, 60_000);
    const publishers = [
      ...createCheckpointPublishers({ file: witnessFile, syslog: `udp://127.0.0.1:${port(udp)}`, webhook }, capture.logger, recorder.onDelivered),
      ...createCheckpointPublishers({ file: undefined, syslog: `tcp://127.0.0.1:${port(tcp)}`, webhook: undefined }, capture.logger),
    ];
    const sealer = startAuditSealer({ systemDb: db.handles.systemDb, signingKey: key, logger: capture.logger, intervalMs: 60_000, publishers });
    try {
      // The webhook is down for the first two attempts.
      webhookFailuresLeft = 2;
      await append(3);
      await sealer.runOnce();
      const first = readWitness(witnessFile);
      expect(first.map((entry) => entry.treeSize)).toEqual([5]); // setup's two events and three more
      await until(() => udpMessages.length === 1 && tcpStreams.length === 1, 5_000);
      expect(webhookBodies).toEqual([]);

      // A newer head while the webhook is still failing replaces the waiting one.
      await append(2);
      await sealer.runOnce();
      await until(() => webhookBodies.length > 0, 10_000);
      expect(webhookBodies.map((body) => body.treeSize)).toEqual([7]);
      expect(webhookAuthorizations.every((header) => header === `Bearer ${webhookToken}`)).toBe(true);
      expect(webhookAuthorizations.length).toBeGreaterThanOrEqual(3);

      await until(() => udpMessages.length === 2 && tcpStreams.length === 2, 5_000);
      const syslogged = [...udpMessages, ...tcpStreams.flatMap(octetFrames)].map(parseSyslog);
      const filed = readWitness(witnessFile);
      expect(filed.map((entry) => entry.treeSize)).toEqual([5, 7]);
      // Every witness got the same signed heads, and every signature checks out without the database.
      for (const entries of [syslogged.slice(0, 2), syslogged.slice(2), webhookBodies]) {
        expect(entries).toEqual(entries === webhookBodies ? [filed[1]] : filed);
        expect(checkWitnessSignatures(entries)).toBeUndefined();
      }
      const deliveries = async () => (await db.superQuery<{ witness: string; tree_size: string }>(`SELECT witness, tree_size FROM ringvakt.audit_witness_deliveries WHERE tenant_id = $1 ORDER BY witness`, [tenant.tenantId])).rows;
      // Gathered in memory, written at the flush (every 30 s in the server): after the publishers
      // finished their deliveries, as the server stops them (sealer first, then the recorder).
      await sealer.stop();
      await recorder.stop();
      expect(await deliveries()).toEqual([{ witness: 'file', tree_size: '7' }, { witness: 'syslog', tree_size: '7' }, { witness: 'webhook', tree_size: '7' }]);
    } finally {
      await sealer.stop();
    }
    // The failed deliveries were logged, without the webhook's secret path or token.
    const logged = capture.lines.join('\n');
    expect(logged).toContain('could not deliver audit checkpoints to a witness');
    expect(logged).not.toContain('T0P-S3CRET-PATH');
    expect(logged).not.toContain(webhookToken);
  });

  it('keeps the newest head of an unreachable witness and delivers it once the witness is back', async () => {
    const capture = capturingLogger('warn');
    // Nothing listens on this port yet.
    const probe = createTcpServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const freePort = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const [syslog] = createCheckpointPublishers({ file: undefined, syslog: `tcp://127.0.0.1:${freePort}`, webhook: undefined }, capture.logger);
    const sealer = startAuditSealer({ systemDb: db.handles.systemDb, signingKey: key, logger: capture.logger, intervalMs: 60_000, publishers: [syslog!] });
    const received: Buffer[] = [];
    let late: TcpServer | undefined;
    try {
      await append(1);
      await sealer.runOnce();
      await syslog!.flush();
      expect(capture.lines.join('\n')).toContain('ECONNREFUSED');
      late = createTcpServer((socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk) => chunks.push(chunk));
        socket.on('end', () => received.push(Buffer.concat(chunks)));
      }).listen(freePort, '127.0.0.1');
      await once(late, 'listening');
      await until(() => received.length === 1, 5_000);
      const [delivered] = octetFrames(received[0]!).map(parseSyslog);
      expect(delivered?.tenantId).toBe(tenant.tenantId);
      expect(delivered?.treeSize).toBe(8);
    } finally {
      await sealer.stop();
      late?.close();
    }
  });
});
