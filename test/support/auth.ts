import { generate } from 'otplib';
import type { DatabaseHandles } from '../../src/db/database.ts';
import type { SessionStage } from '../../src/db/schema.ts';
import { hashPassword } from '../../src/modules/access/passwords.ts';
import { defaultSecurityPolicy } from '../../src/modules/access/security-policy.ts';
import { createSession, csrfTokenFor } from '../../src/modules/auth/sessions.ts';
import type { App } from '../../src/server/types.ts';
import { PUBLIC_URL } from './app.ts';

/** Browser-side helpers: a cookie jar and the headers a same-origin page sends. */
export type Browser = { cookies: Record<string, string>; csrf: string };

const cleared = (line: string) => /Max-Age=0|Expires=Thu, 01 Jan 1970/i.test(line);

export const newBrowser = (): Browser => ({ cookies: {}, csrf: '' });

type Injected = { statusCode: number; headers: Record<string, unknown>; body: string; json(): unknown };

/** Stores the cookies a response sets (and forgets cleared ones). */
export function keepCookies(browser: Browser, response: Injected): void {
  const setCookie = response.headers['set-cookie'];
  for (const line of [setCookie ?? []].flat() as string[]) {
    const [pair] = line.split(';');
    const index = pair!.indexOf('=');
    const name = pair!.slice(0, index);
    const value = pair!.slice(index + 1);
    browser.cookies = Object.fromEntries(Object.entries(browser.cookies).filter(([key]) => key !== name));
    if (value !== '' && !cleared(line)) browser.cookies[name] = value;
  }
  const body = response.headers['content-type']?.toString().includes('json') ? (JSON.parse(response.body || 'null') as { csrfToken?: string } | null) : null;
  if (body?.csrfToken) browser.csrf = body.csrfToken;
}

/** A request as our own page sends it: cookies, Origin and the CSRF token on changes. */
export async function send(app: App, browser: Browser, method: string, url: string, payload?: unknown, extraHeaders: Record<string, string> = {}): Promise<Injected> {
  const response = (await app.inject({
    method: method as 'GET',
    url,
    cookies: browser.cookies,
    headers: {
      ...(method === 'GET' ? {} : { origin: PUBLIC_URL, 'x-csrf-token': browser.csrf }),
      ...extraHeaders,
    },
    ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
  })) as unknown as Injected;
  keepCookies(browser, response);
  return response;
}

export async function setPassword(handles: DatabaseHandles, tenantId: string, userId: string, password: string): Promise<void> {
  const hash = await hashPassword(password);
  await handles.forTenant(tenantId).transaction((trx) => trx.updateTable('users').set({ password_hash: hash, status: 'active' }).where('id', '=', userId).execute());
}

/** A signed-in browser for a user, made directly (for tests about what sessions may do, not login). */
export async function sessionFor(handles: DatabaseHandles, tenantId: string, userId: string, stage: SessionStage = 'active'): Promise<Browser> {
  const session = await handles.forTenant(tenantId).transaction((trx) =>
    createSession(trx, { userId, stage, methods: ['password', 'totp'], policy: defaultSecurityPolicy }),
  );
  return { cookies: { '__Host-rv_session': session.token }, csrf: csrfTokenFor(session.token) };
}

/** The TOTP code of a secret at a moment (seconds). */
export const totpAt = (secret: string, epochSeconds: number): Promise<string> => generate({ secret, epoch: epochSeconds });
