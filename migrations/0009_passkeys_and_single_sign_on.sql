-- WebAuthn passkeys (second factor and passwordless login) and OpenID Connect single sign-on.
-- Services: src/modules/auth/passkeys.ts, src/modules/auth/sso.ts.

-- A user's passkeys: the credential id (base64url, as browsers give it), its COSE public key and
-- signature counter. Nothing secret is stored: the private key never leaves the authenticator.
CREATE TABLE webauthn_credentials (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  credential_id text NOT NULL CHECK (char_length(credential_id) BETWEEN 16 AND 1400 AND credential_id ~ '^[A-Za-z0-9_-]+$'),
  public_key bytea NOT NULL CHECK (octet_length(public_key) <= 2048),
  counter bigint NOT NULL DEFAULT 0 CHECK (counter >= 0),
  transports text[] NOT NULL DEFAULT '{}' CHECK (cardinality(transports) <= 10),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  backed_up boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, credential_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
ALTER TABLE webauthn_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE webauthn_credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webauthn_credentials
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
CREATE TRIGGER webauthn_credentials_auth_change
  AFTER DELETE ON webauthn_credentials
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

-- One-time WebAuthn challenges, spent on first use, valid 5 minutes. 'registration' and 'mfa'
-- belong to a session; 'login' (passwordless) to no one yet.
CREATE TABLE webauthn_challenges (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  challenge text NOT NULL CHECK (challenge ~ '^[A-Za-z0-9_-]{32,128}$'),
  purpose text NOT NULL CHECK (purpose IN ('registration', 'mfa', 'login')),
  session_id uuid,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, challenge)
);
ALTER TABLE webauthn_challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE webauthn_challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webauthn_challenges
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- A tenant's OpenID Connect provider. The client secret is field ciphertext ('client_secret').
-- role_mappings: [{"group": "...", "role": "agent"} | {"group": "...", "customRoleId": "..."}],
-- first match wins; default_role is given when no group matches (NULL: no access without a match).
CREATE TABLE oidc_providers (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  issuer text NOT NULL CHECK (char_length(issuer) BETWEEN 8 AND 500),
  client_id text NOT NULL CHECK (char_length(client_id) BETWEEN 1 AND 200),
  client_secret_ciphertext bytea CHECK (octet_length(client_secret_ciphertext) <= 2048),
  scopes text NOT NULL DEFAULT 'openid email profile' CHECK (char_length(scopes) <= 300),
  groups_claim text NOT NULL DEFAULT 'groups' CHECK (groups_claim ~ '^[A-Za-z0-9_:./-]{1,100}$'),
  role_mappings jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(role_mappings) = 'array'),
  default_role text CHECK (default_role IN ('admin', 'supervisor', 'agent', 'auditor', 'privacy_officer')),
  -- Whether a second factor the provider reports (the ID token's amr) counts here; never for owners.
  trust_provider_mfa boolean NOT NULL DEFAULT false,
  enabled boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX oidc_providers_one_per_tenant ON oidc_providers (tenant_id);
ALTER TABLE oidc_providers ENABLE ROW LEVEL SECURITY;
ALTER TABLE oidc_providers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oidc_providers
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- A sign-in started at the provider: state (stored hashed), nonce and PKCE verifier (ciphertext),
-- and the hash of a cookie set in the browser that started it (the callback must come back with
-- it, so a callback URL cannot be finished in another browser); spent on the callback, valid 10 minutes.
CREATE TABLE oidc_login_states (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  state_hash bytea NOT NULL CHECK (octet_length(state_hash) = 32),
  nonce text NOT NULL CHECK (char_length(nonce) BETWEEN 16 AND 128),
  code_verifier_ciphertext bytea NOT NULL CHECK (octet_length(code_verifier_ciphertext) <= 1024),
  browser_hash bytea NOT NULL CHECK (octet_length(browser_hash) = 32),
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, state_hash)
);
ALTER TABLE oidc_login_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE oidc_login_states FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oidc_login_states
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- Which user an identity at the provider is (issuer + subject, never the e-mail alone).
CREATE TABLE sso_identities (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  issuer text NOT NULL,
  subject text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 255),
  user_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_login_at timestamptz,
  PRIMARY KEY (tenant_id, issuer, subject),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
ALTER TABLE sso_identities ENABLE ROW LEVEL SECURITY;
ALTER TABLE sso_identities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sso_identities
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
