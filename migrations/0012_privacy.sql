-- GDPR in the product: retention policies and legal holds, retention sweeps, data-subject
-- requests as cases, the erasure ledger, export bundles, the processor register, the breach
-- register and the controller's privacy profile. See src/privacy/.

-- Who the controller is, for the records of processing and breach notifications (business
-- contact details of the organisation and its data protection officer).
CREATE TABLE privacy_profiles (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  controller_name text NOT NULL CHECK (char_length(controller_name) BETWEEN 1 AND 200),
  controller_address text CHECK (char_length(controller_address) <= 500),
  dpo_name text CHECK (char_length(dpo_name) <= 200),
  dpo_email text CHECK (char_length(dpo_email) <= 254),
  supervisory_authority text CHECK (char_length(supervisory_authority) <= 200),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);

-- One retention policy per data category: how long, then delete or anonymise.
CREATE TABLE retention_policies (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  category text NOT NULL CHECK (category IN ('contacts_inactive', 'interactions', 'notes', 'recordings', 'audit_events', 'import_rejects', 'exports')),
  retain_days integer NOT NULL CHECK (retain_days BETWEEN 1 AND 36500),
  action text NOT NULL CHECK (action IN ('delete', 'anonymise')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL CHECK (char_length(updated_by) BETWEEN 1 AND 100),
  PRIMARY KEY (tenant_id, category)
);

-- Legal holds: a contact, or everything of a campaign, kept whatever the retention policy or an
-- erasure request says, until released. Released holds stay, as the record that they were.
CREATE TABLE legal_holds (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  scope text NOT NULL CHECK (scope IN ('contact', 'campaign')),
  contact_id uuid,
  campaign_id uuid,
  reason text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz,
  released_by text CHECK (char_length(released_by) <= 100),
  PRIMARY KEY (tenant_id, id),
  CHECK ((scope = 'contact') = (contact_id IS NOT NULL)),
  CHECK ((scope = 'campaign') = (campaign_id IS NOT NULL)),
  CHECK ((released_at IS NULL) = (released_by IS NULL)),
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id),
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id)
);
CREATE INDEX legal_holds_contact ON legal_holds (tenant_id, contact_id) WHERE released_at IS NULL AND contact_id IS NOT NULL;
CREATE INDEX legal_holds_campaign ON legal_holds (tenant_id, campaign_id) WHERE released_at IS NULL AND campaign_id IS NOT NULL;
REVOKE DELETE ON legal_holds FROM {{runtime_role}};

-- Retention sweeps: one running per tenant at a time (the partial unique index is the lease; a
-- sweep whose node died is ended by the next one once its heartbeat is stale), with what it
-- found and did per category.
CREATE TABLE retention_sweeps (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  dry_run boolean NOT NULL,
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed', 'abandoned')),
  node text NOT NULL CHECK (char_length(node) BETWEEN 1 AND 100),
  requested_by text NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 100),
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  -- Per category: { due, done, held, action, cutoff } — counts only.
  report jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(report) = 'object'),
  error_code text CHECK (char_length(error_code) <= 100),
  PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX retention_sweeps_one_running ON retention_sweeps (tenant_id) WHERE state = 'running';

-- Data-subject requests, as cases. The requester's name and contact details are personal data
-- and kept encrypted under the tenant data key; the subject is found through blind indexes and
-- linked by contact id.
CREATE TABLE privacy_requests (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  reference text NOT NULL CHECK (reference ~ '^DSR-[0-9]{4}-[0-9]{4,}$'),
  kind text NOT NULL CHECK (kind IN ('access', 'portability', 'rectification', 'restriction', 'objection', 'erasure')),
  status text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'verified', 'completed', 'rejected')),
  channel text NOT NULL CHECK (channel IN ('email', 'phone', 'letter', 'web', 'in_person', 'other')),
  requester_ciphertext bytea NOT NULL CHECK (octet_length(requester_ciphertext) <= 4096),
  -- Keyed hash of the request's kind and the identifiers given: a second open request for the
  -- same thing is a duplicate.
  duplicate_key bytea NOT NULL CHECK (octet_length(duplicate_key) = 32),
  subject_ids uuid[] NOT NULL DEFAULT '{}',
  officer_id uuid,
  received_at timestamptz NOT NULL,
  due_at timestamptz NOT NULL,
  extension_months smallint NOT NULL DEFAULT 0 CHECK (extension_months BETWEEN 0 AND 2),
  extension_reason text CHECK (char_length(extension_reason) <= 1000),
  verified_at timestamptz,
  verified_by text CHECK (char_length(verified_by) <= 100),
  verification_method text CHECK (verification_method IN ('known_channel', 'document', 'callback', 'signed_letter', 'account_login', 'other')),
  -- How the identity was proved, in the officer's words: sealed under the tenant data key.
  verification_note_ciphertext bytea CHECK (octet_length(verification_note_ciphertext) <= 4096),
  closed_at timestamptz,
  outcome text CHECK (char_length(outcome) <= 1000),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, reference),
  CHECK ((verified_at IS NULL) = (verified_by IS NULL)),
  CHECK ((extension_months = 0) = (extension_reason IS NULL)),
  CHECK ((status IN ('completed', 'rejected')) = (closed_at IS NOT NULL)),
  FOREIGN KEY (tenant_id, officer_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX privacy_requests_open_duplicate ON privacy_requests (tenant_id, duplicate_key) WHERE status IN ('received', 'verified');
CREATE INDEX privacy_requests_due ON privacy_requests (tenant_id, due_at) WHERE status IN ('received', 'verified');
REVOKE DELETE ON privacy_requests FROM {{runtime_role}};

-- The case's timeline: every step, by whom, with ids and counts only.
CREATE TABLE privacy_request_events (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  request_id uuid NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 100),
  step text NOT NULL CHECK (char_length(step) BETWEEN 1 AND 60),
  details jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, request_id) REFERENCES privacy_requests (tenant_id, id)
);
CREATE INDEX privacy_request_events_request ON privacy_request_events (tenant_id, request_id, id);
REVOKE UPDATE, DELETE ON privacy_request_events FROM {{runtime_role}};

-- The erasure ledger: one entry per erased subject, with no personal data — the subject's id
-- and keyed hashes (HMAC-SHA256 under the tenant's 'erasure-ledger' index key) of the
-- identifiers it had. A restore from backup replays it before serving traffic, so a subject
-- erased after the backup was taken stays erased. Append-only.
CREATE TABLE erasure_ledger (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  seq bigint GENERATED ALWAYS AS IDENTITY,
  subject_id uuid NOT NULL,
  identifier_hashes bytea[] NOT NULL DEFAULT '{}' CHECK (cardinality(identifier_hashes) <= 20),
  method text NOT NULL CHECK (method IN ('crypto_shredding')),
  reason text NOT NULL CHECK (reason IN ('request', 'retention', 'operator')),
  request_id uuid,
  erased_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX erasure_ledger_subject ON erasure_ledger (tenant_id, subject_id);
REVOKE UPDATE, DELETE, TRUNCATE ON erasure_ledger FROM {{runtime_role}};

-- Export bundles for access and portability. The bundle is sealed with a key that exists only in
-- the download token handed to the requester (the database keeps its SHA-256): whoever holds a
-- backup of this table cannot read a bundle. Downloaded once, then the ciphertext is dropped.
CREATE TABLE privacy_exports (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  request_id uuid NOT NULL,
  token_sha256 bytea NOT NULL CHECK (octet_length(token_sha256) = 32),
  bundle_sealed bytea,
  bundle_bytes integer NOT NULL CHECK (bundle_bytes >= 0),
  files integer NOT NULL CHECK (files >= 0),
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  downloaded_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (token_sha256),
  CHECK (downloaded_at IS NULL OR bundle_sealed IS NULL),
  FOREIGN KEY (tenant_id, request_id) REFERENCES privacy_requests (tenant_id, id)
);

-- Processors (carrier, hosting, e-mail…): the agreement, where they process, what they hold.
CREATE TABLE processors (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  service text NOT NULL CHECK (char_length(service) BETWEEN 1 AND 200),
  data_categories text[] NOT NULL DEFAULT '{}' CHECK (cardinality(data_categories) <= 20),
  location text NOT NULL CHECK (char_length(location) BETWEEN 2 AND 100),
  transfer_safeguard text CHECK (char_length(transfer_safeguard) <= 200),
  dpa_signed_on date,
  dpa_expires_on date,
  -- Each certification: { kind: soc2|iso27001|other, reference, expiresOn }.
  certifications jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(certifications) = 'array'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, name, service)
);

-- Reminders e-mailed to the privacy officers: each item once per due date.
CREATE TABLE privacy_reminders_sent (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  kind text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 60),
  item_id uuid NOT NULL,
  due_at timestamptz NOT NULL,
  sent_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, kind, item_id, due_at)
);

-- Personal-data breaches: awareness starts the 72-hour clock of Art. 33.
CREATE TABLE breaches (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  reference text NOT NULL CHECK (reference ~ '^BR-[0-9]{4}-[0-9]{3,}$'),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  description text NOT NULL CHECK (char_length(description) BETWEEN 1 AND 4000),
  occurred_at timestamptz,
  detected_at timestamptz NOT NULL,
  aware_at timestamptz NOT NULL,
  data_categories text[] NOT NULL DEFAULT '{}' CHECK (cardinality(data_categories) <= 20),
  subject_categories text[] NOT NULL DEFAULT '{}' CHECK (cardinality(subject_categories) <= 20),
  approx_subjects integer CHECK (approx_subjects >= 0),
  approx_records integer CHECK (approx_records >= 0),
  data_encrypted boolean NOT NULL DEFAULT false,
  consequences text CHECK (char_length(consequences) <= 4000),
  measures text CHECK (char_length(measures) <= 4000),
  -- Decisions, each with its reason: notify the authority; notify the people.
  authority_decision text CHECK (authority_decision IN ('notify', 'not_required')),
  authority_reason text CHECK (char_length(authority_reason) <= 2000),
  authority_notified_at timestamptz,
  subjects_decision text CHECK (subjects_decision IN ('notify', 'not_required_low_risk', 'not_required_encrypted', 'not_required_mitigated', 'public_communication')),
  subjects_reason text CHECK (char_length(subjects_reason) <= 2000),
  subjects_notified_at timestamptz,
  late_reason text CHECK (char_length(late_reason) <= 2000),
  status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
  closed_at timestamptz,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, reference),
  CHECK ((authority_decision IS NULL) = (authority_reason IS NULL)),
  CHECK ((subjects_decision IS NULL) = (subjects_reason IS NULL)),
  CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
REVOKE DELETE ON breaches FROM {{runtime_role}};

CREATE TABLE breach_events (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  breach_id uuid NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 100),
  entry text NOT NULL CHECK (char_length(entry) BETWEEN 1 AND 2000),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, breach_id) REFERENCES breaches (tenant_id, id)
);
CREATE INDEX breach_events_breach ON breach_events (tenant_id, breach_id, id);
REVOKE UPDATE, DELETE ON breach_events FROM {{runtime_role}};

-- A contact's last call, kept when its calls are anonymised or deleted by retention: an
-- anonymised call still counts as activity when deciding whether the contact is inactive.
CREATE TABLE contact_activity (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  contact_id uuid NOT NULL,
  last_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, contact_id),
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);

-- An interaction kept past its retention as anonymous statistics loses its link to the person.
ALTER TABLE dial_attempts ALTER COLUMN contact_id DROP NOT NULL;
ALTER TABLE dial_attempts ADD COLUMN anonymised_at timestamptz;
ALTER TABLE inbound_calls ADD COLUMN anonymised_at timestamptz;
CREATE INDEX dial_attempts_ended ON dial_attempts (tenant_id, ended_at) WHERE contact_id IS NOT NULL;
CREATE INDEX inbound_calls_ended ON inbound_calls (tenant_id, ended_at) WHERE caller_index IS NOT NULL;
CREATE INDEX recordings_saved ON recordings (tenant_id, saved_at) WHERE audio_ciphertext IS NOT NULL;
CREATE INDEX contact_imports_finished ON contact_imports (tenant_id, finished_at);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['contact_activity', 'privacy_reminders_sent', 'privacy_profiles', 'retention_policies', 'legal_holds', 'retention_sweeps', 'privacy_requests',
    'privacy_request_events', 'erasure_ledger', 'privacy_exports', 'processors', 'breaches', 'breach_events'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END
$$;

-- What an erasure destroys or clears, written once: used by an erasure (as the runtime role,
-- under row-level security, after the keyring has destroyed the key under its lock) and by a
-- restore's replay of the erasure ledger (as the restoring superuser, in the restore's own
-- transaction). Returns whether the contact was still there to erase, and what went with it.
CREATE FUNCTION erase_subject_rows(p_tenant uuid, p_subject uuid, p_at timestamptz)
  RETURNS TABLE (contact_erased boolean, recordings_deleted bigint, notes_cleared bigint)
  LANGUAGE plpgsql SECURITY INVOKER SET search_path = ringvakt, pg_temp
  AS $$
DECLARE
  erased bigint;
  recordings bigint;
  notes bigint;
BEGIN
  UPDATE subject_keys SET wrapped_key = NULL, tenant_key_version = NULL, destroyed_at = p_at
   WHERE tenant_id = p_tenant AND subject_id = p_subject AND destroyed_at IS NULL;
  INSERT INTO subject_keys (tenant_id, subject_id, tenant_key_version, wrapped_key, destroyed_at)
    VALUES (p_tenant, p_subject, NULL, NULL, p_at) ON CONFLICT DO NOTHING;
  DELETE FROM contact_phones WHERE tenant_id = p_tenant AND contact_id = p_subject;
  DELETE FROM campaign_contacts WHERE tenant_id = p_tenant AND contact_id = p_subject;
  DELETE FROM recordings WHERE tenant_id = p_tenant AND contact_id = p_subject;
  GET DIAGNOSTICS recordings = ROW_COUNT;
  UPDATE dial_attempts SET notes_ciphertext = NULL WHERE tenant_id = p_tenant AND contact_id = p_subject AND notes_ciphertext IS NOT NULL;
  GET DIAGNOSTICS notes = ROW_COUNT;
  UPDATE suppressions SET contact_id = NULL WHERE tenant_id = p_tenant AND contact_id = p_subject;
  UPDATE contacts
     SET status = 'erased', erased_at = p_at, external_id = NULL, name_ciphertext = NULL, email_ciphertext = NULL,
         email_index = NULL, address_ciphertext = NULL, birth_date_ciphertext = NULL, notes_ciphertext = NULL,
         personal_fields_ciphertext = NULL, fields = '{}'
   WHERE tenant_id = p_tenant AND id = p_subject AND status <> 'erased';
  GET DIAGNOSTICS erased = ROW_COUNT;
  RETURN QUERY SELECT erased > 0, recordings, notes;
END
$$;

-- The sweeper on every node finds the tenants with retention policies through this alone.
CREATE POLICY owner_maintenance ON retention_policies FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_with_retention_policies() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT DISTINCT tenant_id FROM retention_policies
  $$;

-- A download carries only its token: the tenant of the export is found through this alone.
CREATE POLICY owner_maintenance ON privacy_exports FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION privacy_export_tenant(p_token_sha256 bytea) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT tenant_id FROM privacy_exports WHERE token_sha256 = p_token_sha256
  $$;
