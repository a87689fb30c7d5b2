-- Contacts (data subjects), call lists, campaigns (the part lists are assigned to), consent,
-- suppression (do-not-call) and streaming CSV imports. Services: src/modules/contacts,
-- src/modules/suppression, src/modules/imports.
--
-- Every personal value is field ciphertext under the contact's own data-subject key
-- (subject_keys.subject_id = contacts.id), so erasing one person destroys one key and every copy of
-- the contact's data — replicas, backups — becomes unreadable. Deliberately kept: suppression entries
-- (a number or address that must not be contacted again, under the tenant key — honouring an
-- objection outlives erasure) and the blind indexes in them. Lookups go through truncated blind
-- indexes (src/crypto/field-cipher.ts): candidates are decrypted and compared.

CREATE FUNCTION set_updated_at() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- Custom fields a tenant defines. 'personal' fields are encrypted with the contact's other
-- personal data and revealed like it; the others are stored as plain JSON values.
CREATE TABLE contact_fields (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
  label text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 100),
  type text NOT NULL CHECK (type IN ('text', 'number', 'date', 'boolean')),
  personal boolean NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, key)
);

CREATE TABLE contacts (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL,
  -- The customer's CRM id: an identifier, not a personal value, and unique per tenant.
  external_id text CHECK (char_length(external_id) BETWEEN 1 AND 200),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'do_not_contact', 'restricted', 'erased')),
  name_ciphertext bytea CHECK (octet_length(name_ciphertext) <= 2048),
  email_ciphertext bytea CHECK (octet_length(email_ciphertext) <= 2048),
  email_index bytea CHECK (octet_length(email_index) BETWEEN 1 AND 32),
  address_ciphertext bytea CHECK (octet_length(address_ciphertext) <= 4096),
  birth_date_ciphertext bytea CHECK (octet_length(birth_date_ciphertext) <= 256),
  notes_ciphertext bytea CHECK (octet_length(notes_ciphertext) <= 16384),
  -- Personal custom fields as one encrypted JSON object; the others in plain JSON.
  personal_fields_ciphertext bytea CHECK (octet_length(personal_fields_ciphertext) <= 16384),
  fields jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(fields) = 'object'),
  -- Candidate IANA zones for the callee; a calling window must hold in every one of them.
  time_zones text[] NOT NULL DEFAULT '{}' CHECK (cardinality(time_zones) <= 64),
  time_zone_source text NOT NULL DEFAULT 'unknown' CHECK (time_zone_source IN ('override', 'address', 'number', 'region', 'unknown')),
  -- Which import created the contact, and from which row of its file (duplicates name that row).
  import_id uuid,
  import_row integer CHECK (import_row > 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  erased_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  CHECK ((status = 'erased') = (erased_at IS NOT NULL)),
  CHECK (status <> 'erased' OR (name_ciphertext IS NULL AND email_ciphertext IS NULL AND email_index IS NULL
    AND address_ciphertext IS NULL AND birth_date_ciphertext IS NULL AND notes_ciphertext IS NULL
    AND personal_fields_ciphertext IS NULL AND external_id IS NULL))
);
CREATE UNIQUE INDEX contacts_external_id ON contacts (tenant_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX contacts_email_index ON contacts (tenant_id, email_index) WHERE email_index IS NOT NULL;
CREATE TRIGGER contacts_updated_at BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Typed phone numbers, in the order the contact lists them. The number is E.164 field ciphertext
-- under the contact's subject key; number_index is the truncated blind index of the E.164 text.
CREATE TABLE contact_phones (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  contact_id uuid NOT NULL,
  position smallint NOT NULL CHECK (position BETWEEN 0 AND 9),
  kind text NOT NULL CHECK (kind IN ('mobile', 'home', 'work', 'other')),
  number_ciphertext bytea NOT NULL CHECK (octet_length(number_ciphertext) <= 256),
  number_index bytea NOT NULL CHECK (octet_length(number_index) BETWEEN 1 AND 32),
  PRIMARY KEY (tenant_id, contact_id, position),
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_phones_number_index ON contact_phones (tenant_id, number_index);

-- How many full personal values one user may reveal per hour (tenant security policy).
ALTER TABLE tenant_security_policies ADD COLUMN reveals_per_hour integer NOT NULL DEFAULT 50 CHECK (reveals_per_hour BETWEEN 0 AND 10000);
ALTER TABLE tenant_security_policies ADD COLUMN lookups_per_hour integer NOT NULL DEFAULT 600 CHECK (lookups_per_hour BETWEEN 0 AND 100000);

-- Reveals of full personal values, counted per user in minute buckets; the limit applies to the
-- sum over the last 60 minutes (a rolling hour, no burst at the turn of the hour).
-- Per user and minute: reveals of full values, and lookups by phone or e-mail (each answer tells
-- whether a number belongs to a contact, so lookups are budgeted too, or they would enumerate).
CREATE TABLE reveal_counters (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  user_id uuid NOT NULL,
  kind text NOT NULL DEFAULT 'reveal' CHECK (kind IN ('reveal', 'lookup')),
  minute timestamptz NOT NULL,
  uses integer NOT NULL CHECK (uses >= 0),
  PRIMARY KEY (tenant_id, user_id, kind, minute)
);

-- Campaigns: the part that lists and suppressions refer to. The dialer issue adds mode, windows,
-- pacing and the rest.
CREATE TABLE campaigns (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  state text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'active', 'paused', 'finished')),
  purpose text NOT NULL DEFAULT 'sales' CHECK (purpose IN ('sales', 'survey', 'service')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name)
);
CREATE TRIGGER campaigns_updated_at BEFORE UPDATE ON campaigns FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE contact_lists (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  -- ISO 3166 region for numbers written without a country code.
  default_region text NOT NULL CHECK (default_region ~ '^[A-Z]{2}$'),
  campaign_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name),
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id)
);
CREATE INDEX contact_lists_campaign ON contact_lists (tenant_id, campaign_id) WHERE campaign_id IS NOT NULL;
CREATE TRIGGER contact_lists_updated_at BEFORE UPDATE ON contact_lists FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE contact_list_members (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  list_id uuid NOT NULL,
  contact_id uuid NOT NULL,
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, list_id, contact_id),
  FOREIGN KEY (tenant_id, list_id) REFERENCES contact_lists (tenant_id, id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_list_members_contact ON contact_list_members (tenant_id, contact_id);

-- Consent and lawful basis: an append-only history per contact and purpose; the newest entry is
-- in force. An objection to direct marketing also adds a suppression, in the same transaction.
CREATE TABLE consent_events (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  contact_id uuid NOT NULL,
  purpose text NOT NULL CHECK (purpose IN ('sales', 'survey', 'service')),
  action text NOT NULL CHECK (action IN ('grant', 'withdraw', 'object')),
  basis text CHECK (basis IN ('consent', 'legitimate_interest', 'contract')),
  source text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 200),
  evidence_ref text CHECK (char_length(evidence_ref) BETWEEN 1 AND 500),
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  recorded_by text NOT NULL CHECK (char_length(recorded_by) BETWEEN 1 AND 100),
  PRIMARY KEY (tenant_id, id),
  CHECK ((action = 'grant') = (basis IS NOT NULL)),
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX consent_events_contact ON consent_events (tenant_id, contact_id, purpose, recorded_at DESC);
REVOKE UPDATE, DELETE ON consent_events FROM {{runtime_role}};

-- National do-not-call registries, one row per imported file (the newest import of a registry
-- replaces its entries).
CREATE TABLE suppression_registries (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  format text NOT NULL CHECK (format IN ('no_reservasjon', 'uk_tps', 'us_dnc', 'e164_list')),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  entries bigint NOT NULL DEFAULT 0 CHECK (entries >= 0),
  rejected bigint NOT NULL DEFAULT 0 CHECK (rejected >= 0),
  file_sha256 bytea CHECK (octet_length(file_sha256) = 32),
  valid_until timestamptz,
  imported_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, format)
);

-- Suppressed numbers and e-mail addresses. value_index is the blind index of the normalised value
-- (the same index as contact_phones.number_index, or contacts.email_index), value_ciphertext the
-- value under the tenant data key, to discard false candidates of the truncated index.
CREATE TABLE suppressions (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  scope text NOT NULL CHECK (scope IN ('tenant', 'campaign', 'registry')),
  campaign_id uuid,
  registry_id uuid,
  channel text NOT NULL DEFAULT 'phone' CHECK (channel IN ('phone', 'email')),
  value_index bytea NOT NULL CHECK (octet_length(value_index) BETWEEN 1 AND 32),
  value_ciphertext bytea NOT NULL CHECK (octet_length(value_ciphertext) <= 2048),
  reason text NOT NULL CHECK (reason IN ('request', 'objection', 'withdrawal', 'complaint', 'registry', 'abandoned', 'other')),
  source text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 200),
  contact_id uuid,
  expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  -- Lifting keeps the entry (and its matches' meaning): it stops matching, and says who lifted it.
  lifted_at timestamptz,
  lifted_by text CHECK (char_length(lifted_by) BETWEEN 1 AND 100),
  PRIMARY KEY (tenant_id, id),
  CHECK ((lifted_at IS NULL) = (lifted_by IS NULL)),
  CHECK ((scope = 'campaign') = (campaign_id IS NOT NULL)),
  CHECK ((scope = 'registry') = (registry_id IS NOT NULL)),
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id),
  FOREIGN KEY (tenant_id, registry_id) REFERENCES suppression_registries (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX suppressions_value_index ON suppressions (tenant_id, channel, value_index);
CREATE INDEX suppressions_registry ON suppressions (tenant_id, registry_id) WHERE registry_id IS NOT NULL;

-- Every match of a suppression: who or what checked, where, and when (no value, only references).
CREATE TABLE suppression_matches (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  suppression_id uuid NOT NULL,
  context text NOT NULL CHECK (context IN ('check', 'import', 'dial', 'contact')),
  contact_id uuid,
  import_id uuid,
  campaign_id uuid,
  matched_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX suppression_matches_suppression ON suppression_matches (tenant_id, suppression_id);
REVOKE UPDATE, DELETE ON suppression_matches FROM {{runtime_role}};

-- CSV imports. The uploaded file is kept only as encrypted chunks (tenant data key) until the
-- import ends; the worker commits each batch of rows together with the import's cursor, so an
-- import stopped anywhere resumes exactly after the last committed row.
CREATE TABLE contact_imports (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  list_id uuid NOT NULL,
  state text NOT NULL DEFAULT 'awaiting_file' CHECK (state IN ('awaiting_file', 'queued', 'running', 'done', 'failed', 'cancelled')),
  mapping jsonb NOT NULL CHECK (jsonb_typeof(mapping) = 'object'),
  options jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
  file_bytes bigint NOT NULL DEFAULT 0 CHECK (file_bytes >= 0),
  file_rows bigint NOT NULL DEFAULT 0 CHECK (file_rows >= 0),
  file_sha256 bytea CHECK (octet_length(file_sha256) = 32),
  delimiter text CHECK (delimiter IN (',', ';')),
  rows_done bigint NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
  rows_created bigint NOT NULL DEFAULT 0 CHECK (rows_created >= 0),
  rows_linked bigint NOT NULL DEFAULT 0 CHECK (rows_linked >= 0),
  rows_rejected bigint NOT NULL DEFAULT 0 CHECK (rows_rejected >= 0),
  rows_suppressed bigint NOT NULL DEFAULT 0 CHECK (rows_suppressed >= 0),
  error_code text CHECK (char_length(error_code) <= 100),
  error_detail text CHECK (char_length(error_detail) <= 500),
  lease_owner text,
  lease_until timestamptz,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, list_id) REFERENCES contact_lists (tenant_id, id)
);
CREATE INDEX contact_imports_pending ON contact_imports (tenant_id) WHERE state IN ('queued', 'running');

CREATE TABLE contact_import_chunks (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  import_id uuid NOT NULL,
  seq integer NOT NULL CHECK (seq >= 0),
  ciphertext bytea NOT NULL,
  PRIMARY KEY (tenant_id, import_id, seq),
  FOREIGN KEY (tenant_id, import_id) REFERENCES contact_imports (tenant_id, id) ON DELETE CASCADE
);

-- Rejected rows: row number, column and reason code. No cell values: the reject file is safe to
-- mail around, and the uploader has the file.
CREATE TABLE contact_import_rejects (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  import_id uuid NOT NULL,
  row_number bigint NOT NULL CHECK (row_number > 0),
  reason text NOT NULL CHECK (char_length(reason) <= 60),
  column_name text CHECK (char_length(column_name) <= 200),
  detail text CHECK (char_length(detail) <= 200),
  PRIMARY KEY (tenant_id, import_id, row_number),
  FOREIGN KEY (tenant_id, import_id) REFERENCES contact_imports (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['contact_fields', 'contacts', 'contact_phones', 'reveal_counters', 'campaigns',
    'contact_lists', 'contact_list_members', 'consent_events', 'suppression_registries', 'suppressions',
    'suppression_matches', 'contact_imports', 'contact_import_chunks', 'contact_import_rejects'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END
$$;

-- The import worker finds tenants with work across tenants through this function alone.
CREATE POLICY owner_maintenance ON contact_imports FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_with_pending_imports() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT DISTINCT tenant_id FROM contact_imports WHERE state IN ('queued', 'running')
  $$;

-- A bulk import grows contacts from nothing to millions faster than autovacuum refreshes the
-- planner's statistics; with stale ones, lookups by external id turn into scans. The import worker
-- refreshes them as the tables double (the runtime role cannot ANALYZE tables it does not own).
CREATE FUNCTION refresh_contact_statistics() RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
  BEGIN
    ANALYZE contacts;
    ANALYZE contact_phones;
    ANALYZE contact_list_members;
  END
  $$;
