import { createHmac } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { sql } from '../db/kysely.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { TenantDb } from '../db/tenant-db.ts';
import { AppError } from '../server/errors.ts';

/**
 * Alert webhooks: every delivery is a POST of the alert as JSON, signed with the webhook's own
 * secret — `Ringvakt-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` — and
 * the body carries its delivery id (`deliveryId`, so it is signed; also sent as
 * `Idempotency-Key`). A receiver checks the signature, refuses a timestamp more than 5 minutes
 * off, and refuses a delivery id it has seen: a captured request cannot be replayed, not even
 * with other headers. A receiver answering 409 to a repeat has it, and it counts as delivered. Failures are retried with exponential backoff (2 s doubling, at most 30 minutes
 * apart) up to MAX_ATTEMPTS, each attempt bounded by 5 s in all; deliveries run in a task of
 * their own, so the detector never waits for a receiver.
 *
 * Server-side request forgery: unless the operator configured RINGVAKT_ALERT_WEBHOOK_TARGETS=any
 * (development and tests; refused with NODE_ENV=production), a webhook must be https and
 * its host must resolve only to public unicast addresses — checked when it is registered and
 * again at every connection (the address connected to is the address checked, so a DNS answer
 * changed in between cannot point it inward).
 */

/** Attempts over about seven hours (2 s doubling, then every 30 minutes): a receiver down for a while still gets the alert. */
export const MAX_ATTEMPTS = 20;
/** Webhooks a tenant may register (each alert is sent to every one of them). */
export const MAX_WEBHOOKS = 10;
const ATTEMPT_TIMEOUT_MS = 5_000;
const RESPONSE_LIMIT = 64 * 1024;

let targets: 'public' | 'any' = 'public';
/** Set once at start from the configuration (RINGVAKT_ALERT_WEBHOOK_TARGETS); public-only until then. */
export function setWebhookTargets(value: 'public' | 'any'): void {
  targets = value;
}
const guarded = () => targets === 'public';

/** Why an address may not be a webhook's while guarded; undefined when it may. */
function forbiddenAddress(address: string): string | undefined {
  if (!ipaddr.isValid(address)) return 'not an address';
  // IPv4-mapped addresses are judged as the IPv4 address they are.
  const parsed = ipaddr.process(address);
  const range = parsed.range();
  if (range !== 'unicast') return range;
  // IPv6: only global unicast (2000::/3); the rest (IPv4-compatible ::/96 among them) is not public.
  if (parsed.kind() === 'ipv6' && !parsed.match(ipaddr.IPv6.parse('2000::'), 3)) return 'non-global';
  return undefined;
}

/** Checks a webhook URL as given (scheme, credentials, host); while guarded also what its host resolves to. */
export async function checkWebhookUrl(text: string): Promise<URL> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AppError('validation_failed', 'The webhook URL is not a URL.', [{ path: 'body/url', message: 'not a URL' }]);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && !guarded())) {
    throw new AppError('validation_failed', 'A webhook URL must use https.', [{ path: 'body/url', message: 'must be https' }]);
  }
  if (url.username || url.password) throw new AppError('validation_failed', 'A webhook URL must not carry credentials; the payloads are signed instead.', [{ path: 'body/url', message: 'no credentials' }]);
  if (guarded()) {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const addresses = ipaddr.isValid(host) ? [host] : await new Promise<string[]>((resolve) => dnsLookup(host, { all: true }, (error, found) => resolve(error ? [] : found.map((entry) => entry.address))));
    if (addresses.length === 0) throw new AppError('validation_failed', 'The webhook host does not resolve.', [{ path: 'body/url', message: 'host does not resolve' }]);
    const bad = addresses.map(forbiddenAddress).find((reason) => reason !== undefined);
    if (bad) throw new AppError('webhook_forbidden_address', `The webhook host resolves to a ${bad} address: only public addresses are allowed.`, [{ path: 'body/url', message: `${bad} address` }]);
  }
  return url;
}

/** A DNS lookup that refuses non-public answers while guarded (used for every connection). */
const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, found) => {
    if (error) return callback(error, '', 0);
    const addresses = found as unknown as LookupAddress[];
    const allowed = guarded() ? addresses.filter((entry) => forbiddenAddress(entry.address) === undefined) : addresses;
    const first = allowed[0];
    if (!first) return callback(Object.assign(new Error('webhook host resolves to no allowed address'), { code: 'EFORBIDDEN' }), '', 0);
    if ((options as { all?: boolean }).all) return (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, allowed);
    callback(null, first.address, first.family);
  });
};

export function signPayload(secret: Buffer, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * One POST; resolves with the status, or rejects on a network error or when the attempt's whole
 * time (connect, send, answer) passes ATTEMPT_TIMEOUT_MS — a receiver that trickles its answer
 * byte by byte is cut off like one that never answers. Settles exactly once, whatever happens.
 */
function post(url: URL, headers: Record<string, string>, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      outcome();
    };
    const client = url.protocol === 'https:' ? https : http;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (guarded() && ipaddr.isValid(host) && forbiddenAddress(host)) return reject(Object.assign(new Error('forbidden address'), { code: 'EFORBIDDEN' }));
    const request = client.request(url, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup: guardedLookup }, (response) => {
      const status = response.statusCode ?? 0;
      // The body is read (bounded) and dropped: only the status matters.
      let seen = 0;
      response.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > RESPONSE_LIMIT) {
          response.destroy();
          finish(() => resolve(status));
        }
      });
      response.on('end', () => finish(() => resolve(status)));
      response.on('close', () => finish(() => resolve(status)));
      response.on('error', () => finish(() => resolve(status)));
    });
    const deadline = setTimeout(() => {
      request.destroy();
      finish(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    }, ATTEMPT_TIMEOUT_MS);
    request.on('error', (error) => finish(() => reject(error)));
    request.end(body);
  });
}

/** Backoff before attempt n+1: 2 s doubling, at most 10 minutes. */
export const retryDelayMs = (attempts: number) => Math.min(2_000 * 2 ** Math.max(0, attempts - 1), 1_800_000);

/**
 * Sends a tenant's due deliveries (at most `limit`). Each is claimed first (its next attempt
 * pushed a minute out, so a second node does not send it meanwhile), sent outside any
 * transaction, and its result recorded.
 */
export async function deliverDue(tenantDb: TenantDb, cipher: FieldCipher, options: { limit?: number; now?: () => Date } = {}): Promise<{ delivered: number; failed: number; retried: number }> {
  const now = options.now ?? (() => new Date());
  const claimed = await tenantDb.transaction(async (trx) => {
    const due = await trx
      .selectFrom('alert_deliveries as d')
      .innerJoin('security_alerts as a', 'a.id', 'd.alert_id')
      .innerJoin('alert_webhooks as w', 'w.id', 'd.webhook_id')
      .select(['d.id', 'd.attempts', 'd.hits', 'w.id as webhookId', 'w.url', 'w.secret_ciphertext', 'a.id as alertId', 'a.rule_id', 'a.severity', 'a.subject', 'a.summary', 'a.state', 'a.first_seen', 'a.last_seen', 'a.raised_at'])
      .where('d.state', '=', 'pending')
      .where('d.next_at', '<=', now())
      .where('w.enabled', '=', true)
      .orderBy('d.next_at')
      .limit(options.limit ?? 20)
      .forUpdate('d')
      .skipLocked()
      .execute();
    if (due.length > 0) await trx.updateTable('alert_deliveries').set({ next_at: sql<Date>`now() + interval '1 minute'` }).where('id', 'in', due.map((row) => row.id)).execute();
    // A secret that does not decrypt fails its own deliveries, not the others'.
    const ready: ((typeof due)[number] & { secret: Buffer })[] = [];
    for (const row of due) {
      try {
        ready.push({ ...row, secret: Buffer.from(await cipher.decrypt(trx, { table: 'alert_webhooks', recordId: row.webhookId, field: 'secret' }, row.secret_ciphertext), 'base64url') });
      } catch {
        await trx.updateTable('alert_deliveries').set({ state: 'failed', last_error: 'secret_unreadable' }).where('id', '=', row.id).execute();
      }
    }
    return ready;
  });
  const result = { delivered: 0, failed: 0, retried: 0 };
  for (const delivery of claimed) {
    const body = JSON.stringify({
      type: 'security.alert',
      deliveryId: delivery.id,
      tenantId: tenantDb.tenantId,
      alert: { id: delivery.alertId, rule: delivery.rule_id, severity: delivery.severity, subject: delivery.subject, summary: delivery.summary, state: delivery.state, hits: delivery.hits, firstSeen: delivery.first_seen.toISOString(), lastSeen: delivery.last_seen.toISOString(), raisedAt: delivery.raised_at.toISOString() },
    });
    // Signed with the real time (the receiver compares it with its own clock), whatever `now` schedules by.
    const timestamp = Math.floor(Date.now() / 1000);
    let status = 0;
    let error: string | null = null;
    try {
      status = await post(new URL(delivery.url), { 'content-type': 'application/json', 'user-agent': 'Ringvakt-Webhooks/1', 'idempotency-key': delivery.id, 'ringvakt-signature': signPayload(delivery.secret, timestamp, body) }, body);
      // 409: the receiver has this delivery already (an earlier attempt's answer was lost).
      if ((status < 200 || status >= 300) && status !== 409) error = `status ${status}`;
    } catch (failure) {
      const code = (failure as { code?: unknown }).code;
      error = typeof code === 'string' ? code.slice(0, 40) : 'network error';
    }
    const attempts = delivery.attempts + 1;
    const state = error === null ? 'delivered' : attempts >= MAX_ATTEMPTS ? 'failed' : 'pending';
    await tenantDb.transaction((trx) =>
      trx
        .updateTable('alert_deliveries')
        .set({ state, attempts, last_status: status || null, last_error: error, delivered_at: state === 'delivered' ? now() : null, next_at: new Date(now().getTime() + retryDelayMs(attempts)) })
        .where('id', '=', delivery.id)
        .execute(),
    );
    if (state === 'delivered') result.delivered += 1;
    else if (state === 'failed') result.failed += 1;
    else result.retried += 1;
  }
  return result;
}
