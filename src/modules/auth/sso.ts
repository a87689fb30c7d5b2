import { createHash, timingSafeEqual } from 'node:crypto';
import { sql } from '../../db/kysely.ts';
import type * as Oidc from 'openid-client';
import type { BuiltInRole, RoleMapping, SessionStage } from '../../db/schema.ts';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { recordAuditEvent } from '../../audit/audit-event.ts';
import { AppError } from '../../server/errors.ts';
import { announceAuthChange } from '../access/auth-changes.ts';
import { addressRefusal, loadSecurityPolicy } from '../access/security-policy.ts';
import { createUser, findUserByEmail, findUserById } from '../users/users.repo.ts';
import { createSession, loadUserAccess, revokeSessions, stageAfterFirstFactor, type NewSession } from './sessions.ts';

/**
 * Single sign-on with OpenID Connect, one provider per tenant (openid-client): authorization code
 * flow with PKCE (S256), state and nonce; the ID token's signature, issuer, audience, expiry and
 * nonce are checked by the library. Users are provisioned just in time and their role follows the
 * provider's group claim on every sign-in (first matching mapping wins; no match ends a linked
 * user's access too); an identity is its issuer and subject. An existing account is linked by
 * e-mail only while it is an invitation nobody has taken up (no password, no second factor, not an
 * owner) and only when the provider says the address is verified: a provider — which an
 * administrator sets — can never take over an account someone already uses. No mapping can give
 * the owner role, nor a role with permissions the administrator who set it lacks.
 *
 * The state, nonce and PKCE verifier are bound to the browser that started the sign-in by a
 * cookie (`__Host-rv_sso`), so a callback URL cannot be finished in another browser (login CSRF).
 *
 * A second factor done at the provider counts only when the tenant trusts the provider's `amr`
 * claim, and never for owners; otherwise the role's MFA requirement applies as after a password.
 */
export const SSO_BROWSER_COOKIE = '__Host-rv_sso';
export type SsoProvider = {
  issuer: string;
  clientId: string;
  clientSecret: string | undefined;
  scopes: string;
  groupsClaim: string;
  roleMappings: RoleMapping[];
  defaultRole: BuiltInRole | null;
  /** Count a second factor the provider reports (amr) as ours; never for owners. */
  trustProviderMfa: boolean;
  enabled: boolean;
};

const STATE_MS = 10 * 60_000;
const MFA_AMR = new Set(['mfa', 'otp', 'hwk', 'swk', 'sc', 'fpt', 'face', 'iris', 'retina', 'vbm']);
const secretField = (id: string) => ({ table: 'oidc_providers', recordId: id, field: 'client_secret' });
const verifierField = (id: string) => ({ table: 'oidc_login_states', recordId: id, field: 'code_verifier' });

/** An issuer must be https, except on loopback (tests, and a provider on the same host). */
export function isAcceptableIssuer(issuer: string): boolean {
  if (!URL.canParse(issuer)) return false;
  const url = new URL(issuer);
  if (url.username || url.password || url.hash || url.search) return false;
  return url.protocol === 'https:' || (url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname));
}

export async function loadSsoProvider(trx: TenantTransaction, cipher: FieldCipher): Promise<(SsoProvider & { id: string }) | undefined> {
  const row = await trx.selectFrom('oidc_providers').selectAll().executeTakeFirst();
  if (!row) return undefined;
  return {
    id: row.id,
    issuer: row.issuer,
    clientId: row.client_id,
    clientSecret: row.client_secret_ciphertext ? await cipher.decrypt(trx, secretField(row.id), row.client_secret_ciphertext) : undefined,
    scopes: row.scopes,
    groupsClaim: row.groups_claim,
    roleMappings: row.role_mappings,
    defaultRole: row.default_role as BuiltInRole | null,
    trustProviderMfa: row.trust_provider_mfa,
    enabled: row.enabled,
  };
}

export async function saveSsoProvider(trx: TenantTransaction, cipher: FieldCipher, provider: SsoProvider): Promise<void> {
  if (!isAcceptableIssuer(provider.issuer)) throw new AppError('validation_failed', 'The issuer must be an https URL (http only on loopback).');
  if (provider.roleMappings.some((mapping) => mapping.role === 'owner') || provider.defaultRole === ('owner' as BuiltInRole)) {
    throw new AppError('validation_failed', 'Single sign-on cannot give the owner role.');
  }
  const existing = await trx.selectFrom('oidc_providers').select('id').executeTakeFirst();
  const id = existing?.id ?? crypto.randomUUID();
  const values = {
    issuer: provider.issuer,
    client_id: provider.clientId,
    client_secret_ciphertext: provider.clientSecret ? await cipher.encrypt(trx, secretField(id), provider.clientSecret) : null,
    scopes: provider.scopes,
    groups_claim: provider.groupsClaim,
    role_mappings: JSON.stringify(provider.roleMappings),
    default_role: provider.defaultRole,
    trust_provider_mfa: provider.trustProviderMfa,
    enabled: provider.enabled,
    updated_at: new Date(),
  };
  if (existing) await trx.updateTable('oidc_providers').set(values).where('id', '=', id).execute();
  else await trx.insertInto('oidc_providers').values({ id, ...values }).execute();
  forgetConfiguration(trx.tenantId);
}

/** Discovered provider metadata, per tenant, for an hour (or until the provider is changed). */
/** The OpenID Connect library, loaded with the first single sign-on, not at start-up. */
const openidClient = () => import('openid-client');

const configurations = new Map<string, { key: string; at: number; configuration: Promise<Oidc.Configuration> }>();

function forgetConfiguration(tenantId: string): void {
  configurations.delete(tenantId);
}

function configurationFor(tenantId: string, provider: SsoProvider): Promise<Oidc.Configuration> {
  const key = `${provider.issuer}\u0000${provider.clientId}\u0000${provider.clientSecret ?? ''}`;
  const known = configurations.get(tenantId);
  if (known && known.key === key && Date.now() - known.at < 3600_000) return known.configuration;
  const insecure = new URL(provider.issuer).protocol === 'http:';
  const configuration = openidClient().then((oidc) =>
    oidc.discovery(
      new URL(provider.issuer),
      provider.clientId,
      provider.clientSecret ? { client_secret: provider.clientSecret } : {},
      provider.clientSecret ? oidc.ClientSecretBasic(provider.clientSecret) : oidc.None(),
      { timeout: 10, ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}) },
    ),
  );
  configuration.catch(() => configurations.delete(tenantId));
  configurations.set(tenantId, { key, at: Date.now(), configuration });
  return configuration;
}

export const redirectUriFor = (publicUrl: string, slug: string) => `${publicUrl}/api/v1/auth/sso/${slug}/callback`;
const stateHash = (state: string) => createHash('sha256').update(state).digest();

/** Starts a sign-in: stores state, nonce and PKCE verifier; answers the provider URL to go to. */
export async function startSsoLogin(tenantDb: TenantDb, cipher: FieldCipher, input: { slug: string; publicUrl: string; browserSecret: string }): Promise<URL> {
  const provider = await tenantDb.read((trx) => loadSsoProvider(trx, cipher));
  if (!provider?.enabled) throw new AppError('not_found', 'This organisation has no single sign-on.');
  const configuration = await configurationFor(tenantDb.tenantId, provider).catch(() => {
    throw new AppError('service_unavailable', 'The identity provider cannot be reached.');
  });
  const oidc = await openidClient();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const verifier = oidc.randomPKCECodeVerifier();
  await tenantDb.transaction(async (trx) => {
    const id = crypto.randomUUID();
    await trx.deleteFrom('oidc_login_states').where('expires_at', '<', new Date()).execute();
    await trx
      .insertInto('oidc_login_states')
      .values({
        id,
        state_hash: stateHash(state),
        nonce,
        code_verifier_ciphertext: await cipher.encrypt(trx, verifierField(id), verifier),
        browser_hash: stateHash(input.browserSecret),
        expires_at: new Date(Date.now() + STATE_MS),
      })
      .execute();
  });
  return oidc.buildAuthorizationUrl(configuration, {
    redirect_uri: redirectUriFor(input.publicUrl, input.slug),
    scope: provider.scopes,
    state,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
}

/** The role the groups map to: the first mapping that matches, else the default (or none). */
export function roleFromGroups(provider: SsoProvider, groups: readonly string[]): { role: BuiltInRole } | { customRoleId: string } | undefined {
  for (const mapping of provider.roleMappings) {
    if (!groups.includes(mapping.group)) continue;
    if (mapping.customRoleId) return { customRoleId: mapping.customRoleId };
    if (mapping.role && mapping.role !== 'owner') return { role: mapping.role as BuiltInRole };
  }
  return provider.defaultRole ? { role: provider.defaultRole } : undefined;
}

export type SsoResult = { userId: string; stage: SessionStage; session: NewSession };

/** Finishes a sign-in at the callback: checks everything, links or provisions the user, opens a session. */
export async function completeSsoLogin(
  tenantDb: TenantDb,
  cipher: FieldCipher,
  input: { slug: string; publicUrl: string; callbackUrl: URL; state: string; browserSecret: string | undefined; sourceIp: string; requestId: string; userAgent?: string | undefined },
): Promise<SsoResult> {
  const fail = async (reason: string, userId?: string): Promise<never> => {
    await tenantDb.transaction((trx) =>
      recordAuditEvent(trx, {
        action: 'auth.login',
        outcome: 'failed',
        actor: userId ? { type: 'user', id: userId } : { type: 'anonymous' },
        sourceIp: input.sourceIp,
        requestId: input.requestId,
        details: { method: 'sso', reason },
      }),
    );
    throw new AppError('sso_failed');
  };
  const pending = await tenantDb.transaction(async (trx) => {
    const row = await trx
      .deleteFrom('oidc_login_states')
      .where('state_hash', '=', stateHash(input.state))
      .where('expires_at', '>', new Date())
      .returning(['id', 'nonce', 'code_verifier_ciphertext', 'browser_hash'])
      .executeTakeFirst();
    // Spent either way; only the browser that started it may finish it.
    if (!row || !input.browserSecret || !timingSafeEqual(row.browser_hash, stateHash(input.browserSecret))) return undefined;
    return { nonce: row.nonce, verifier: await cipher.decrypt(trx, verifierField(row.id), row.code_verifier_ciphertext) };
  });
  if (!pending) return fail('unknown_state_or_other_browser');
  const provider = await tenantDb.read((trx) => loadSsoProvider(trx, cipher));
  if (!provider?.enabled) return fail('provider_disabled');
  let claims: Oidc.IDToken | undefined;
  try {
    const oidc = await openidClient();
    const configuration = await configurationFor(tenantDb.tenantId, provider);
    const tokens = await oidc.authorizationCodeGrant(configuration, input.callbackUrl, {
      pkceCodeVerifier: pending.verifier,
      expectedState: input.state,
      expectedNonce: pending.nonce,
      idTokenExpected: true,
    });
    claims = tokens.claims();
  } catch {
    return fail('token_exchange_or_validation');
  }
  if (!claims) return fail('no_id_token');
  const subject = claims.sub;
  const email = typeof claims.email === 'string' ? claims.email : undefined;
  const emailVerified = claims.email_verified === true;
  const rawGroups = claims[provider.groupsClaim];
  const groups = Array.isArray(rawGroups) ? rawGroups.filter((group): group is string => typeof group === 'string') : [];
  const amr = Array.isArray(claims.amr) ? claims.amr.filter((method): method is string => typeof method === 'string') : [];
  const mapped = roleFromGroups(provider, groups);

  const outcome = await tenantDb.transaction(async (trx): Promise<SsoResult | { refused: string; userId?: string }> => {
    const policy = await loadSecurityPolicy(trx);
    const refusal = addressRefusal(policy, input.sourceIp);
    if (refusal) return { refused: refusal };
    const linked = await trx.selectFrom('sso_identities').select('user_id').where('issuer', '=', provider.issuer).where('subject', '=', subject).executeTakeFirst();
    let userId = linked?.user_id;
    if (!userId && email && emailVerified) {
      const existing = await findUserByEmail(trx, cipher, email);
      if (existing) {
        // Only an untaken invitation may be claimed through the provider.
        const state = await trx
          .selectFrom('users')
          .select(['password_hash', 'totp_secret_ciphertext', sql<boolean>`EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.tenant_id = users.tenant_id AND w.user_id = users.id)`.as('has_passkey')])
          .where('id', '=', existing.id)
          .executeTakeFirstOrThrow();
        const untaken = existing.status === 'invited' && existing.role !== 'owner' && !state.password_hash && !state.totp_secret_ciphertext && !state.has_passkey;
        if (!untaken) return { refused: 'account_exists_not_linked', userId: existing.id };
        userId = existing.id;
      }
    }
    if (!userId) {
      if (!mapped) return { refused: 'no_role_for_groups' };
      if (!email || !emailVerified) return { refused: 'no_verified_email' };
      const custom = 'customRoleId' in mapped ? await trx.selectFrom('roles').select('id').where('id', '=', mapped.customRoleId).executeTakeFirst() : undefined;
      if ('customRoleId' in mapped && !custom) return { refused: 'mapped_role_missing' };
      const displayName = (typeof claims.name === 'string' && claims.name.trim()) || email;
      const created = await createUser(trx, cipher, {
        email,
        displayName: displayName.slice(0, 200),
        role: custom ? 'custom' : (mapped as { role: BuiltInRole }).role,
        customRoleId: custom?.id ?? null,
      });
      await trx.updateTable('users').set({ status: 'active' }).where('id', '=', created.id).execute();
      await recordAuditEvent(trx, { action: 'user.create', outcome: 'success', actor: { type: 'system' }, target: { type: 'user', id: created.id }, sourceIp: input.sourceIp, requestId: input.requestId, details: { via: 'sso', role: created.role } });
      userId = created.id;
    }
    const user = await findUserById(trx, cipher, userId);
    if (!user || user.status === 'disabled') return { refused: 'user_disabled', userId };
    // No matching group (and no default role): a linked user's access ends with the provider's say.
    if (!mapped && user.role !== 'owner') return { refused: 'no_role_for_groups', userId };
    if (!linked) {
      await trx.insertInto('sso_identities').values({ issuer: provider.issuer, subject, user_id: userId }).execute();
      await recordAuditEvent(trx, { action: 'user.update', outcome: 'success', actor: { type: 'system' }, target: { type: 'user', id: userId }, sourceIp: input.sourceIp, requestId: input.requestId, details: { via: 'sso', linked: true } });
    }
    await trx.updateTable('sso_identities').set({ last_login_at: new Date() }).where('issuer', '=', provider.issuer).where('subject', '=', subject).execute();
    if (user.status === 'invited') await trx.updateTable('users').set({ status: 'active' }).where('id', '=', userId).execute();
    // The provider's groups decide the role on every sign-in (owners excepted: only an owner changes an owner).
    if (mapped && user.role !== 'owner') {
      const target = 'customRoleId' in mapped ? { role: 'custom' as const, custom_role_id: mapped.customRoleId } : { role: mapped.role, custom_role_id: null };
      if (target.role !== user.role || target.custom_role_id !== user.customRoleId) {
        if (target.custom_role_id) {
          const custom = await trx.selectFrom('roles').select('id').where('id', '=', target.custom_role_id).executeTakeFirst();
          if (!custom) return { refused: 'mapped_role_missing', userId };
        }
        await trx.updateTable('users').set({ ...target, updated_at: new Date() }).where('id', '=', userId).execute();
        announceAuthChange(trx);
        await revokeSessions(trx, { userId }, 'role_changed');
        await recordAuditEvent(trx, {
          action: 'user.update',
          outcome: 'success',
          actor: { type: 'system' },
          target: { type: 'user', id: userId },
          sourceIp: input.sourceIp,
          requestId: input.requestId,
          details: { via: 'sso', from: user.role, fromCustomRole: user.customRoleId, to: target.role, toCustomRole: target.custom_role_id },
        });
      }
    }
    const access = await loadUserAccess(trx, userId, policy);
    if (!access || access.status !== 'active') return { refused: 'user_not_active', userId };
    const mfaAtProvider = provider.trustProviderMfa && user.role !== 'owner' && amr.some((method) => MFA_AMR.has(method));
    const stage: SessionStage = mfaAtProvider ? 'active' : stageAfterFirstFactor(access);
    const session = await createSession(trx, {
      userId,
      stage,
      methods: mfaAtProvider ? ['sso', 'sso_mfa'] : ['sso'],
      policy,
      sourceIp: input.sourceIp,
      ...(input.userAgent ? { userAgent: input.userAgent } : {}),
    });
    await recordAuditEvent(trx, {
      action: 'auth.login',
      outcome: 'success',
      actor: { type: 'user', id: userId },
      target: { type: 'user', id: userId },
      sourceIp: input.sourceIp,
      requestId: input.requestId,
      details: { method: 'sso', stage, mfaAtProvider, session: session.id },
    });
    return { userId, stage, session };
  });
  if ('refused' in outcome) {
    if (outcome.refused === 'ip_not_allowed' || outcome.refused === 'ip_blocked') throw new AppError('ip_not_allowed');
    return fail(outcome.refused, outcome.userId);
  }
  return outcome;
}
