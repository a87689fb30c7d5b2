import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';

/**
 * A real OpenID Connect provider (oidc-provider) on loopback, with accounts whose claims a test
 * sets, and a browser that signs in through its own login and consent pages.
 */
export type Account = { sub: string; email: string; emailVerified: boolean; name: string; groups: string[]; amr?: string[] };

export async function startIdentityProvider(client: { clientId: string; clientSecret: string; redirectUris: string[] }) {
  const accounts = new Map<string, Account>();
  let server: Server | undefined;
  const listening = await new Promise<number>((resolve) => {
    server = createServer();
    server.listen(0, '127.0.0.1', () => resolve((server!.address() as AddressInfo).port));
  });
  const issuer = `http://127.0.0.1:${listening}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: client.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    cookies: { keys: ['identity-provider-test-cookie-key'] },
    features: { devInteractions: { enabled: true } },
    findAccount: async (_context, id) => {
      const account = accounts.get(id);
      if (!account) return undefined;
      return {
        accountId: id,
        claims: async () => ({ sub: account.sub, email: account.email, email_verified: account.emailVerified, name: account.name, groups: account.groups }),
      };
    },
    loadExistingGrant: async (context) => {
      // Consent is implied for the one client: the grant covers what it asks for.
      const grantId = context.oidc.result?.consent?.grantId ?? context.oidc.session?.grantIdFor(context.oidc.client!.clientId);
      if (grantId) return context.oidc.provider.Grant.find(grantId);
      const grant = new context.oidc.provider.Grant({ clientId: context.oidc.client!.clientId, accountId: context.oidc.session!.accountId! });
      grant.addOIDCScope('openid email profile groups');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
      await grant.save();
      return grant;
    },
    extraTokenClaims: async () => ({}),
  });
  provider.on('server_error', () => undefined);
  server!.on('request', provider.callback());

  /** Follows the provider's pages as a browser would, signing in as `accountId`; returns the callback URL. */
  async function signIn(startUrl: string, accountId: string, callbackPrefix: string): Promise<string> {
    const jar = new Map<string, string>();
    const cookieHeader = () => [...jar.entries()].map(([name, value]) => `${name}=${value}`).join('; ');
    const remember = (response: Response) => {
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';');
        const index = pair!.indexOf('=');
        jar.set(pair!.slice(0, index), pair!.slice(index + 1));
      }
    };
    let url = startUrl;
    let body: URLSearchParams | undefined;
    for (let step = 0; step < 12; step += 1) {
      if (url.startsWith(callbackPrefix)) return url;
      const response = await fetch(url, {
        method: body ? 'POST' : 'GET',
        redirect: 'manual',
        headers: { cookie: cookieHeader(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
        ...(body ? { body } : {}),
      });
      remember(response);
      body = undefined;
      const location = response.headers.get('location');
      if (location) {
        url = new URL(location, url).href;
        await response.arrayBuffer();
        continue;
      }
      const html = await response.text();
      const form = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html);
      if (!form) throw new Error(`the identity provider answered ${response.status} without a form`);
      url = new URL(form[1]!.replaceAll('&amp;', '&'), url).href;
      const prompt = /name="prompt" value="([a-z]+)"/.exec(html)?.[1] ?? 'login';
      body = new URLSearchParams(prompt === 'login' ? { prompt, login: accountId, password: 'any' } : { prompt });
    }
    throw new Error('the sign-in did not come back to the callback');
  }

  return {
    issuer,
    accounts,
    signIn,
    close: () => new Promise<void>((resolve) => server!.close(() => resolve())),
  };
}
