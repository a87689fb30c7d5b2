-- Foundation: tenants, users, one-time owner setup links, API tokens.
-- Runs as the owner role with search_path = ringvakt. Every table that holds a tenant's data
-- leads its primary key with tenant_id and carries a forced row-level-security policy on
-- current_tenant_id(); test/tenancy-guard.int.test.ts fails if a table forgets it.

-- The tenant of the current transaction, set by the tenant handle with
-- set_config('app.tenant_id', …, true). NULL when unset; a custom setting reverts to '' rather
-- than NULL after a transaction that set it ends, hence the nullif.
CREATE FUNCTION current_tenant_id() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$'),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
-- A tenant sees its own row only: the runtime role cannot even learn other tenants' ids.
CREATE POLICY tenant_self ON tenants
  USING (id = current_tenant_id())
  WITH CHECK (id = current_tenant_id());
-- The owner role reaches every tenant row, which only the narrow SECURITY DEFINER functions below
-- use on the runtime role's behalf.
CREATE POLICY owner_maintenance ON tenants TO {{owner_role}} USING (true) WITH CHECK (true);
-- Tenants are created and listed only through those functions.
REVOKE INSERT, UPDATE, DELETE ON tenants FROM {{runtime_role}};

CREATE FUNCTION create_tenant(p_slug text, p_name text) RETURNS uuid
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$ INSERT INTO tenants (slug, name) VALUES (p_slug, p_name) RETURNING id $$;

CREATE FUNCTION tenant_id_by_slug(p_slug text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$ SELECT id FROM tenants WHERE slug = p_slug $$;

CREATE FUNCTION list_tenant_ids() RETURNS TABLE (id uuid, slug text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$ SELECT id, slug FROM tenants ORDER BY created_at, id $$;

CREATE TABLE users (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  -- Issue 3 moves e-mail into an encrypted field with a blind index.
  email text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
  display_name text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
  role text NOT NULL CHECK (role IN ('owner', 'admin', 'supervisor', 'agent', 'auditor', 'privacy_officer')),
  status text NOT NULL DEFAULT 'invited' CHECK (status IN ('invited', 'active', 'disabled')),
  password_hash text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, email)
);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- One-time links that let an invited user set a first password. Only a SHA-256 of the secret is
-- stored; the link carries the secret in its fragment, which browsers never send to a server.
CREATE TABLE setup_tokens (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
ALTER TABLE setup_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE setup_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON setup_tokens
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());

-- Bearer tokens for the API. The token names its tenant in clear (not a secret) so the server can
-- set the tenant before looking the hash up: no cross-tenant lookup is ever needed.
CREATE TABLE api_tokens (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
  token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, token_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_tokens
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
