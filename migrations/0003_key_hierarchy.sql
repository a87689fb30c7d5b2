-- The key hierarchy: root key (outside the database) → per-tenant keys → per-data-subject keys.
-- Only wrapped keys are stored. See src/crypto/ for formats and contexts.

-- Per-tenant keys, by purpose: 'data' keys encrypt fields and wrap subject keys, and rotate;
-- 'index' keys derive blind-index keys and stay fixed (rotating them means rebuilding indexes).
CREATE TABLE tenant_keys (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  purpose text NOT NULL CHECK (purpose IN ('data', 'index')),
  version integer NOT NULL CHECK (version > 0),
  root_key_id text NOT NULL CHECK (char_length(root_key_id) BETWEEN 1 AND 200),
  wrapped_key bytea NOT NULL,
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired')),
  -- Encryptions reserved under this key, in blocks, by all processes together. Reserving more
  -- than the limit in src/crypto/keyring.ts makes the next encryption rotate first, far below
  -- the 2^32 random-nonce bound of AES-GCM.
  encryptions_reserved bigint NOT NULL DEFAULT 0 CHECK (encryptions_reserved >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, purpose, version)
);
CREATE UNIQUE INDEX tenant_keys_one_active ON tenant_keys (tenant_id, purpose) WHERE state = 'active';
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keys
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
-- Keys are never deleted by the runtime role; retiring one is an UPDATE.
REVOKE DELETE ON tenant_keys FROM {{runtime_role}};

-- Per-data-subject keys, wrapped by a tenant data key. Destroying one (crypto-shredding) blanks
-- the wrapped key and keeps a tombstone, so reads of that subject's fields say "erased" rather
-- than "missing", and every copy of the ciphertext — replicas, exports, backups — is unreadable.
CREATE TABLE subject_keys (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  subject_id uuid NOT NULL,
  tenant_key_version integer,
  wrapped_key bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  destroyed_at timestamptz,
  PRIMARY KEY (tenant_id, subject_id),
  CHECK ((destroyed_at IS NULL) = (wrapped_key IS NOT NULL AND tenant_key_version IS NOT NULL))
);
ALTER TABLE subject_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE subject_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subject_keys
  USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
REVOKE DELETE ON subject_keys FROM {{runtime_role}};

-- A destroyed key stays destroyed: no UPDATE may give a tombstone a key again.
CREATE FUNCTION subject_keys_stay_destroyed() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  IF OLD.destroyed_at IS NOT NULL THEN
    RAISE EXCEPTION 'a destroyed subject key cannot be restored'
      USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.destroyed_at IS NOT NULL THEN
    PERFORM pg_notify('ringvakt_keys', OLD.tenant_id::text || ':' || OLD.subject_id::text);
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER subject_keys_stay_destroyed
  BEFORE UPDATE ON subject_keys
  FOR EACH ROW EXECUTE FUNCTION subject_keys_stay_destroyed();
