-- Users' personal data moves into field encryption (src/crypto/field-cipher.ts), and tenant data
-- key rotation gets its background re-encryption jobs (src/crypto/reencrypt.ts).

-- E-mail and display name, encrypted under the tenant data key; e-mail also gets a truncated
-- blind index for lookups (candidates are decrypted and compared). The plaintext columns stay
-- nullable until the re-encryption job has moved every existing row (it runs at start for any
-- tenant that still has plaintext); a later migration drops them.
ALTER TABLE users ADD COLUMN email_ciphertext bytea CHECK (octet_length(email_ciphertext) <= 2048);
ALTER TABLE users ADD COLUMN email_index bytea CHECK (octet_length(email_index) BETWEEN 1 AND 32);
ALTER TABLE users ADD COLUMN display_name_ciphertext bytea CHECK (octet_length(display_name_ciphertext) <= 2048);
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
ALTER TABLE users ALTER COLUMN display_name DROP NOT NULL;
-- Uniqueness of an e-mail per tenant is now checked by the service (under an advisory lock on the
-- index value); a unique constraint cannot see through encryption.
ALTER TABLE users DROP CONSTRAINT users_tenant_id_email_key;
ALTER TABLE users ADD CONSTRAINT users_email_stored CHECK ((email IS NOT NULL) OR (email_ciphertext IS NOT NULL AND email_index IS NOT NULL));
ALTER TABLE users ADD CONSTRAINT users_display_name_stored CHECK ((display_name IS NOT NULL) OR (display_name_ciphertext IS NOT NULL));
CREATE INDEX users_email_index ON users (tenant_id, email_index);
-- Until the plaintext columns are dropped: lookups of not yet encrypted e-mails, and the worker's
-- search for tenants that still have plaintext, stay index scans.
CREATE INDEX users_legacy_email ON users (tenant_id, email) WHERE email IS NOT NULL;
CREATE INDEX users_legacy_plaintext ON users (tenant_id) WHERE email IS NOT NULL OR display_name IS NOT NULL;

-- One job per data key rotation: re-encrypts every registered encrypted column and rewraps every
-- subject key under the new version, a batch per transaction, with its cursor and counts stored
-- in the same transaction as the batch — so a job stopped anywhere resumes exactly there.
CREATE TABLE key_rotation_jobs (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  target_version integer NOT NULL CHECK (target_version > 0),
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
  -- Which registered column the job is at, and the last record id done there.
  step integer NOT NULL DEFAULT 0 CHECK (step >= 0),
  cursor text NOT NULL DEFAULT '',
  reencrypted bigint NOT NULL DEFAULT 0 CHECK (reencrypted >= 0),
  skipped bigint NOT NULL DEFAULT 0 CHECK (skipped >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX key_rotation_jobs_one_running ON key_rotation_jobs (tenant_id) WHERE state = 'running';
ALTER TABLE key_rotation_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE key_rotation_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON key_rotation_jobs
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
REVOKE DELETE, TRUNCATE ON key_rotation_jobs FROM {{runtime_role}};

-- For the worker: which tenants have a running job, or users still in plaintext. Tenant ids only;
-- the owner reads across tenants for this function alone (both tables force row-level security).
CREATE POLICY owner_maintenance ON users FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON key_rotation_jobs FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_needing_reencryption() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT tenant_id FROM key_rotation_jobs WHERE state = 'running'
    UNION
    SELECT DISTINCT tenant_id FROM users WHERE email IS NOT NULL OR display_name IS NOT NULL
  $$;
