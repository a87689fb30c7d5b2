-- Identity and access: custom roles, tenant security policy (MFA, session timeouts, IP
-- allow-list), browser sessions, TOTP and recovery codes, scoped API tokens, invitations, login
-- throttling and the e-mail outbox. Services: src/modules/auth, src/modules/access.

-- Custom roles: a named set of permissions from the catalogue (src/modules/access/permissions.ts;
-- the service refuses names outside it). A user holds a built-in role or, with role = 'custom', one
-- of these.
CREATE TABLE roles (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{1,39}$'),
  description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
  permissions text[] NOT NULL CHECK (cardinality(permissions) <= 100),
  requires_mfa boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);
ALTER TABLE roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON roles
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
CREATE TRIGGER roles_auth_change
  AFTER UPDATE OR DELETE ON roles
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
  CHECK (role IN ('owner', 'admin', 'supervisor', 'agent', 'auditor', 'privacy_officer', 'custom'));
ALTER TABLE users ADD COLUMN custom_role_id uuid;
ALTER TABLE users ADD CONSTRAINT users_custom_role
  FOREIGN KEY (tenant_id, custom_role_id) REFERENCES roles (tenant_id, id);
ALTER TABLE users ADD CONSTRAINT users_custom_role_named CHECK ((role = 'custom') = (custom_role_id IS NOT NULL));

-- Second factors. The TOTP secret is field ciphertext (fields 'totp_secret' and, while enrolment
-- is unconfirmed, 'totp_pending'); totp_last_step makes every code usable once.
ALTER TABLE users ADD COLUMN totp_secret_ciphertext bytea CHECK (octet_length(totp_secret_ciphertext) <= 512);
ALTER TABLE users ADD COLUMN totp_pending_ciphertext bytea CHECK (octet_length(totp_pending_ciphertext) <= 512);
ALTER TABLE users ADD COLUMN totp_last_step bigint;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
-- Failed second-factor codes, counted apart from passwords: a correct password never forgives them.
ALTER TABLE users ADD COLUMN second_factor_failures integer NOT NULL DEFAULT 0 CHECK (second_factor_failures >= 0);
ALTER TABLE users ADD COLUMN second_factor_locked_until timestamptz;

-- A credential's power can change with these columns too: tell every process at commit.
DROP TRIGGER users_auth_change ON users;
CREATE TRIGGER users_auth_change
  AFTER UPDATE OF status, role, custom_role_id, totp_secret_ciphertext OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

-- One-time recovery codes: SHA-256 of the code (80 random bits each), never the code.
CREATE TABLE recovery_codes (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  code_hash bytea NOT NULL CHECK (octet_length(code_hash) = 32),
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, user_id, code_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
ALTER TABLE recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recovery_codes
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- The tenant's security policy. No row means the defaults below.
CREATE TABLE tenant_security_policies (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  mfa_required_for_all boolean NOT NULL DEFAULT false,
  session_idle_minutes integer NOT NULL DEFAULT 30 CHECK (session_idle_minutes BETWEEN 5 AND 720),
  session_absolute_hours integer NOT NULL DEFAULT 12 CHECK (session_absolute_hours BETWEEN 1 AND 72),
  -- Empty: any address. Otherwise login and every request must come from one of these networks.
  ip_allow_list cidr[] NOT NULL DEFAULT '{}' CHECK (cardinality(ip_allow_list) <= 200),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);
ALTER TABLE tenant_security_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_security_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_security_policies
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
REVOKE DELETE, TRUNCATE ON tenant_security_policies FROM {{runtime_role}};
CREATE FUNCTION notify_auth_change_new() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM pg_notify('ringvakt_auth', NEW.tenant_id::text);
  RETURN NULL;
END
$$;
CREATE TRIGGER tenant_security_policies_auth_change
  AFTER INSERT OR UPDATE ON tenant_security_policies
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change_new();

-- Browser sessions. The cookie holds `rvc_<tenant hex>_<256 random bits>`; only its SHA-256 is
-- stored. stage says what the holder still has to do: 'mfa' (prove a second factor),
-- 'mfa_enrollment' (enrol one), or nothing ('active'). A new token replaces the old at every stage
-- change (rotation). authenticated_at is the last time the user proved who they are (step-up).
CREATE TABLE sessions (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
  stage text NOT NULL CHECK (stage IN ('mfa', 'mfa_enrollment', 'active')),
  methods text[] NOT NULL CHECK (cardinality(methods) BETWEEN 1 AND 5),
  created_at timestamptz NOT NULL DEFAULT now(),
  authenticated_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoke_reason text CHECK (revoke_reason IN ('logout', 'revoked', 'rotated', 'idle', 'user_disabled', 'role_changed', 'password_changed', 'mfa_changed')),
  source_ip inet,
  user_agent text CHECK (char_length(user_agent) <= 300),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX sessions_live_by_user ON sessions (tenant_id, user_id) WHERE revoked_at IS NULL;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
-- An ended or rotated session must leave every cache at once; last_seen_at and authenticated_at
-- move often and must not flush them (a cached answer that looks too old is re-read instead).
CREATE TRIGGER sessions_auth_change
  AFTER UPDATE OF revoked_at, token_hash, stage OR DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

-- Scoped API tokens (`rvk_…`): permissions a subset of the creator's, expiry at most a year.
ALTER TABLE api_tokens ADD COLUMN scopes text[] NOT NULL DEFAULT '{}' CHECK (cardinality(scopes) <= 100);
ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_expiry_within_a_year
  CHECK (expires_at <= created_at + interval '366 days') NOT VALID;
-- last_used_at moves with use and must not flush the caches: only changes of power notify.
DROP TRIGGER api_tokens_auth_change ON api_tokens;
CREATE TRIGGER api_tokens_auth_change
  AFTER UPDATE OF revoked_at, expires_at, token_hash, user_id, scopes OR DELETE ON api_tokens
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change();

-- Setup links now serve invitations too.
ALTER TABLE setup_tokens ADD COLUMN purpose text NOT NULL DEFAULT 'setup' CHECK (purpose IN ('setup', 'invitation'));

-- Trusted devices (OWASP "device cookies"): a browser that has logged in as a user before gets a
-- token that lets it try that account even while the account is locked for everyone else, with a
-- lockout of its own. Stuffing attacks therefore cannot lock a real user out of their own browser.
CREATE TABLE trusted_devices (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
  failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
  locked_until timestamptz,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
ALTER TABLE trusted_devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE trusted_devices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON trusted_devices
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- Failed logins per account, keyed by a full-length keyed hash of the e-mail address (so an
-- unknown address is throttled exactly like a known one, and no address is stored).
CREATE TABLE account_throttle (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  subject bytea NOT NULL CHECK (octet_length(subject) = 32),
  window_started_at timestamptz NOT NULL,
  failures integer NOT NULL CHECK (failures >= 0),
  consecutive integer NOT NULL CHECK (consecutive >= 0),
  locked_until timestamptz,
  lock_notified_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, subject)
);
ALTER TABLE account_throttle ENABLE ROW LEVEL SECURITY;
ALTER TABLE account_throttle FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON account_throttle
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- Failed logins per source network, across tenants (one address attacks many organisations).
-- IPv4 addresses count alone, IPv6 by /64. Rows older than a day are removed by the throttle.
CREATE TABLE source_throttle (
  source cidr PRIMARY KEY,
  window_started_at timestamptz NOT NULL,
  failures integer NOT NULL CHECK (failures >= 0),
  locked_until timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX source_throttle_age ON source_throttle (updated_at);

-- Outgoing e-mail: written in the transaction that causes it (sent if and only if that commits),
-- recipient and message as field ciphertext (they hold personal data and one-time links).
CREATE TABLE email_outbox (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  template text NOT NULL CHECK (template ~ '^[a-z_]{1,40}$'),
  recipient_ciphertext bytea NOT NULL CHECK (octet_length(recipient_ciphertext) <= 2048),
  message_ciphertext bytea NOT NULL CHECK (octet_length(message_ciphertext) <= 65536),
  created_at timestamptz NOT NULL DEFAULT now(),
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  sent_at timestamptz,
  failed_at timestamptz,
  last_error text CHECK (char_length(last_error) <= 300),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX email_outbox_due ON email_outbox (tenant_id, next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
ALTER TABLE email_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON email_outbox
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
-- The sender wakes at commit instead of polling.
CREATE FUNCTION notify_email_queued() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  PERFORM pg_notify('ringvakt_email', NEW.tenant_id::text);
  RETURN NULL;
END
$$;
CREATE TRIGGER email_outbox_queued
  AFTER INSERT ON email_outbox
  FOR EACH ROW EXECUTE FUNCTION notify_email_queued();

-- For the sender at start: which tenants have mail waiting (tenant ids only).
CREATE POLICY owner_maintenance ON email_outbox FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_with_queued_email() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$ SELECT DISTINCT tenant_id FROM email_outbox WHERE sent_at IS NULL AND failed_at IS NULL $$;
