-- One check value per root key version: a fixed 32 zero bytes wrapped by that root key. At
-- start, Ringvakt unwraps it; a wrong root key (another key file, another RINGVAKT_ROOT_KEY,
-- another Vault key) is refused before anything is written. Holds no tenant data.
CREATE TABLE root_key_checks (
  key_id text PRIMARY KEY CHECK (char_length(key_id) BETWEEN 1 AND 200),
  check_value bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE UPDATE, DELETE, TRUNCATE ON root_key_checks FROM {{runtime_role}};

-- The root key versions that wrap some tenant's keys, across tenants (for the start check and
-- for root key rotation); reveals no tenant and no key.
CREATE FUNCTION root_key_ids_in_use() RETURNS TABLE (key_id text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$ SELECT DISTINCT root_key_id FROM tenant_keys $$;
-- The owner needs to see every tenant's key rows for that function.
CREATE POLICY owner_maintenance ON tenant_keys TO {{owner_role}} USING (true) WITH CHECK (true);
