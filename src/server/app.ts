import { contactsRoutes } from '../modules/contacts/contacts.routes.ts';
import { consentsRoutes } from '../modules/contacts/consents.routes.ts';
import { listsRoutes } from '../modules/contacts/lists.routes.ts';
import { campaignsRoutes } from '../modules/campaigns/campaigns.routes.ts';
import { agentsRoutes } from '../modules/agents/agents.routes.ts';
import { reportsRoutes } from '../modules/reports/reports.routes.ts';
import { queuesRoutes } from '../inbound/queues.routes.ts';
import { recordingsRoutes } from '../modules/agents/recordings.routes.ts';
import { listenForCallControl } from '../dialer/call-control.ts';
import websocket from '@fastify/websocket';
import { createRealtimeHub } from '../realtime/realtime.ts';
import { realtimeRoutes } from '../realtime/realtime.routes.ts';
import { onLocalAuthChange } from '../modules/access/auth-changes.ts';
import { suppressionRoutes } from '../modules/suppression/suppression.routes.ts';
import { importsRoutes } from '../modules/imports/imports.routes.ts';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Server as HttpsServer } from 'node:https';
import Fastify, { type FastifyHttpsOptions, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from './zod-provider.ts';
import secureJson from 'secure-json-parse';
import type { Config } from '../config.ts';
import type { DatabaseHandles } from '../db/database.ts';
import type { Logger } from '../logger.ts';
import { setupRoutes } from '../modules/setup/setup.routes.ts';
import { tenantsRoutes } from '../modules/tenants/tenants.routes.ts';
import { usersRoutes } from '../modules/users/users.routes.ts';
import { auditRoutes } from '../modules/audit/audit.routes.ts';
import { floorRoutes } from '../modules/reports/floor.routes.ts';
import { securityCenterRoutes } from '../modules/audit/security-center.routes.ts';
import { agentCallRoutes } from '../modules/agents/agent-call.routes.ts';
import { agentPreviewRoutes } from '../modules/agents/agent-preview.routes.ts';
import cookie from '@fastify/cookie';
import { accessControlPlugin, type CachedPrincipal } from './access-control.ts';
import { createCredentialCache } from '../modules/access/credential-cache.ts';
import { accessRoutes } from '../modules/access/access.routes.ts';
import { apiTokensRoutes } from '../modules/api-tokens/api-tokens.routes.ts';
import { authRoutes } from '../modules/auth/auth.routes.ts';
import { passkeysRoutes } from '../modules/auth/passkeys.routes.ts';
import { ssoRoutes } from '../modules/auth/sso.routes.ts';
import { relyingPartyFor } from '../modules/auth/passkeys.ts';
import { createMailer } from '../modules/mail/mailer.ts';
import { AppError, errorCatalogue, handleError, PROBLEM_CONTENT_TYPE, problemBody, sendProblem } from './errors.ts';
import { healthRoutes } from './health.routes.ts';
import { securityHeaders } from './security-headers.ts';
import { webAppRoutes } from './web-app.ts';
import { createMetrics } from './metrics.ts';
import { probeRootKeys } from '../crypto/root-keys/root-key-provider.ts';
import type { App } from './types.ts';
import type { ErasureLedgerMirror } from '../privacy/erasure.ts';
import { privacyRequestRoutes } from '../privacy/requests.routes.ts';
import { retentionRoutes } from '../privacy/retention.routes.ts';
import { securityMonitoringRoutes } from '../security/security.routes.ts';
import { incidentRoutes } from '../security/incidents.ts';
import { attestationRoutes } from '../security/attestations.ts';
import { securityContactRoutes } from '../security/contacts.ts';
import { workingHoursRoutes } from '../security/working-hours.ts';
import { complianceRoutes } from '../compliance/compliance.routes.ts';
import { loadSigningKey, type SigningKey } from '../audit/signing-key.ts';
import { accessReviewRoutes } from '../compliance/access-reviews.ts';
import { complianceDocumentRoutes } from '../compliance/documents.ts';
import { privacyRegisterRoutes, ropaRoutes } from '../privacy/registers.routes.ts';

export type AppDependencies = {
  config: Pick<Config, 'bodyLimitBytes' | 'trustProxy' | 'tls' | 'publicUrl'> & { metricsToken?: string | undefined };
  logger: Logger;
  database: Pick<DatabaseHandles, 'pool' | 'systemDb' | 'forTenant' | 'migrations' | 'changes' | 'crypto'>;
  isShuttingDown?: () => boolean;
  /** For /readyz: throws when the root key provider is not working (default: probeRootKeys on the database's provider). */
  checkKeyProvider?: () => Promise<void>;
  /** Where committed erasures are mirrored outside the database, for a restore to replay (src/privacy/erasure.ts). */
  erasureMirror?: ErasureLedgerMirror | undefined;
  /** How often open realtime connections re-check their credential (default 15 s). */
  realtimeRecheckMs?: number;
};

/** Longest URL we route; longer ones get 414 (Node's own header limit answers 431 beyond 16 KiB). */
const MAX_URL_LENGTH = 4096;
const REQUEST_ID = /^[A-Za-z0-9._-]{8,64}$/;

/** Answers a request Node's HTTP parser rejected (bad request line, oversize headers) with problem+json. */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const code = error.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : 'bad_request';
  const body = JSON.stringify(problemBody(new AppError(code)));
  socket.end(
    `HTTP/1.1 ${errorCatalogue[code].status} ${errorCatalogue[code].title}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** JSON escapes can spell text that is not Unicode ("\ud800"); such a string is refused, not altered. */
function rejectLoneSurrogates(key: string, value: unknown): unknown {
  if (!key.isWellFormed() || (typeof value === 'string' && !value.isWellFormed())) throw new AppError('invalid_utf8');
  return value;
}

/** Builds the HTTP application. Every route declares its access and its zod schemas. */
export async function buildApp(deps: AppDependencies): Promise<App> {
  const { config, database } = deps;
  const headers = securityHeaders({ tls: Boolean(config.tls) });
  const headerNames = Object.keys(headers);
  const applySecurityHeaders = (reply: FastifyReply) => {
    for (const name of headerNames) reply.header(name, headers[name]);
  };
  const options: FastifyServerOptions = {
    loggerInstance: deps.logger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    // Long parameters reach schema validation (a clear 400) instead of the router's bare 414.
    routerOptions: { maxParamLength: MAX_URL_LENGTH },
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    keepAliveTimeout: 5_000,
    return503OnClosing: true,
    clientErrorHandler: answerClientError,
    // Errors the router raises before any hook runs (bad percent-encoding, bad content types).
    frameworkErrors: (error, request, reply) => {
      applySecurityHeaders(reply);
      handleError(error, request, reply);
    },
    genReqId: (request) => {
      const offered = request.headers['x-request-id'];
      return typeof offered === 'string' && REQUEST_ID.test(offered) ? offered : randomUUID();
    },
  };
  const app = (
    config.tls
      ? Fastify({
          ...options,
          https: { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile), minVersion: 'TLSv1.2' },
        } as FastifyHttpsOptions<HttpsServer>)
      : Fastify(options)
  ).withTypeProvider<ZodTypeProvider>() as unknown as App;

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) => sendProblem(reply, new AppError('not_found')));

  // JSON bodies: strict UTF-8 (invalid bytes are an error, not silently replaced) and no
  // prototype-poisoning keys.
  app.removeContentTypeParser(['application/json']);
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    let text: string;
    try {
      text = strictUtf8.decode(body as Buffer);
    } catch {
      done(new AppError('invalid_utf8'), undefined);
      return;
    }
    if (text.trim() === '') {
      done(new AppError('malformed_json', 'The body is empty.'), undefined);
      return;
    }
    try {
      done(null, secureJson.parse(text, rejectLoneSurrogates, { protoAction: 'error', constructorAction: 'error' }));
    } catch (error) {
      done(error instanceof AppError ? error : new AppError('malformed_json'), undefined);
    }
  });

  app.addHook('onRequest', async (request, reply) => {
    applySecurityHeaders(reply);
    reply.header('x-request-id', request.id);
    if (request.url.length > MAX_URL_LENGTH) throw new AppError('uri_too_long');
    // A percent-encoded path that is not valid UTF-8 cannot name any resource of ours.
    try {
      decodeURIComponent(request.url);
    } catch {
      throw new AppError('invalid_utf8', 'The URL is not valid percent-encoded UTF-8.');
    }
    // Strict input: a route takes a body or query parameters only if its schema declares them, so
    // nothing a client sends is silently ignored.
    const route = request.routeOptions;
    if (route.url === undefined) return;
    const schema = route.schema ?? {};
    const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
    if (hasBody && !schema.body && !route.config.streamedBody) throw new AppError('bad_request', 'This request takes no body.');
    if (request.url.includes('?') && !schema.querystring) {
      throw new AppError('validation_failed', 'This request takes no query parameters.');
    }
  });

  const metrics = createMetrics(database.pool, database.systemDb);
  await app.register(metrics.plugin);
  await app.register(cookie);
  await app.register(accessControlPlugin, {
    forTenant: database.forTenant,
    credentials: createCredentialCache<CachedPrincipal>(database.changes),
    publicOrigin: new URL(config.publicUrl).origin,
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Ringvakt API', version: '1' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API token (rvk_…)' },
          session: { type: 'apiKey', in: 'cookie', name: '__Host-rv_session', description: 'A browser session; changes also need the x-csrf-token header' },
        },
      },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, {
    routePrefix: '/api/docs',
    uiConfig: { validatorUrl: null },
    staticCSP: true,
    transformStaticCSP: (header) =>
      header
        .replace("frame-ancestors 'self'", "frame-ancestors 'none'")
        .replace("base-uri 'self'", "base-uri 'none'")
        .replaceAll(' https:', '')
        .replace(' validator.swagger.io', '')
        .replace(config.tls ? /$^/ : ' upgrade-insecure-requests;', ''),
  });
  app.get('/api/openapi.json', { config: { access: 'public' }, schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, {
    systemDb: database.systemDb,
    expectedMigrations: database.migrations.map((migration) => migration.version),
    registry: metrics.registry,
    metricsToken: config.metricsToken,
    isShuttingDown: deps.isShuttingDown ?? (() => false),
    checkKeyProvider: deps.checkKeyProvider ?? (async () => probeRootKeys((await database.crypto()).root)),
  });
  const { cipher, keyring } = await database.crypto();
  const mailer = createMailer(cipher, deps.logger);
  await app.register(tenantsRoutes);
  const authDeps = { systemDb: database.systemDb, forTenant: database.forTenant, cipher, mailer };
  await app.register(authRoutes, authDeps);
  await app.register(passkeysRoutes, { ...authDeps, relyingParty: relyingPartyFor(config.publicUrl) });
  await app.register(ssoRoutes, { ...authDeps, publicUrl: config.publicUrl });
  await app.register(usersRoutes, { cipher, mailer, publicUrl: config.publicUrl });
  await app.register(accessRoutes);
  await app.register(apiTokensRoutes);
  await app.register(auditRoutes, { systemDb: database.systemDb });
  await app.register(securityCenterRoutes, { systemDb: database.systemDb });
  await app.register(securityMonitoringRoutes, { cipher });
  await app.register(incidentRoutes);
  await app.register(attestationRoutes);
  await app.register(securityContactRoutes);
  await app.register(workingHoursRoutes);
  let signingKey: Promise<SigningKey> | undefined;
  await app.register(complianceRoutes, { crypto: { cipher, keyring }, signingKey: () =>
      (signingKey ??= database
        .crypto()
        .then((crypto) => loadSigningKey(database.systemDb, crypto.root))
        .catch((error: unknown) => {
          signingKey = undefined; // tried again on the next report
          throw error;
        })),
  });
  await app.register(accessReviewRoutes);
  await app.register(complianceDocumentRoutes, { cipher });
  await app.register(setupRoutes, { forTenant: database.forTenant, cipher });
  await app.register(webAppRoutes);
  await app.register(contactsRoutes, { cipher, keyring, erasureMirror: deps.erasureMirror });
  await app.register(consentsRoutes, { cipher, keyring });
  await app.register(listsRoutes, { cipher, keyring });
  await app.register(campaignsRoutes);
  await app.register(agentsRoutes, { cipher, keyring });
  await app.register(agentCallRoutes, { cipher, keyring });
  await app.register(agentPreviewRoutes, { cipher, keyring });
  await app.register(reportsRoutes);
  await app.register(floorRoutes);
  await app.register(queuesRoutes);
  await app.register(recordingsRoutes, { cipher, keyring });
  listenForCallControl(database.changes, deps.logger);
  // Realtime: one hub per process, fed by LISTEN on the shared change listener.
  await app.register(websocket, { options: { maxPayload: 4096 } });
  const hub = createRealtimeHub({ changes: database.changes, logger: deps.logger, ...(deps.realtimeRecheckMs !== undefined ? { recheckMs: deps.realtimeRecheckMs } : {}) });
  const stopAuthWatch = onLocalAuthChange((tenantId) => void hub.recheck(tenantId));
  app.addHook('onClose', async () => {
    stopAuthWatch();
    hub.stop();
  });
  // A refused WebSocket upgrade (no credential, no permission) ends with its connection: the
  // upgrade socket is not an HTTP keep-alive connection, and left open it would let anyone hold
  // sockets on the server without ever authenticating.
  app.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode >= 400 && request.headers.upgrade !== undefined) request.raw.socket.destroy();
  });
  await app.register(realtimeRoutes, { hub, publicOrigin: new URL(config.publicUrl).origin });
  await app.register(suppressionRoutes, { cipher, keyring });
  await app.register(importsRoutes, { cipher, keyring });
  await app.register(privacyRequestRoutes, { crypto: { cipher, keyring }, systemDb: database.systemDb, mirror: deps.erasureMirror });
  await app.register(retentionRoutes, { crypto: { cipher, keyring }, mirror: deps.erasureMirror, logger: deps.logger });
  await app.register(privacyRegisterRoutes);
  await app.register(ropaRoutes);
  return app;
}
