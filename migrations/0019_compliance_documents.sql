-- The compliance center's documents: manual evidence for organisational controls (a file or a
-- link, with the date it speaks for and when it expires), and the certifications and external
-- audit reports the operator shares in the trust report. Files are sealed under the tenant data
-- key (src/compliance/documents.ts). Documents are withdrawn, never deleted: the evidence of a
-- past observation window stays. See src/compliance/.

CREATE TABLE compliance_documents (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('control_evidence', 'certification', 'audit_report')),
  control_id text CHECK (control_id ~ '^RV-[A-Z]{2,4}-[0-9]{2}$'),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  issuer text CHECK (char_length(issuer) BETWEEN 1 AND 200),
  url text CHECK (url ~ '^https://' AND char_length(url) <= 2000),
  file_name text CHECK (char_length(file_name) BETWEEN 1 AND 200),
  media_type text CHECK (media_type IN ('application/pdf', 'image/png', 'image/jpeg', 'text/plain')),
  file_ciphertext bytea,
  file_sha256 bytea CHECK (octet_length(file_sha256) = 32),
  file_bytes integer CHECK (file_bytes BETWEEN 1 AND 10485760),
  evidence_date date NOT NULL,
  expires_on date NOT NULL,
  shared_in_report boolean NOT NULL DEFAULT false,
  added_by text NOT NULL CHECK (char_length(added_by) BETWEEN 1 AND 100),
  added_at timestamptz NOT NULL DEFAULT now(),
  withdrawn_at timestamptz,
  withdrawn_by text CHECK (char_length(withdrawn_by) BETWEEN 1 AND 100),
  PRIMARY KEY (tenant_id, id),
  CHECK ((kind = 'control_evidence') = (control_id IS NOT NULL)),
  CHECK (kind = 'control_evidence' OR issuer IS NOT NULL),
  CHECK ((file_ciphertext IS NULL) = (file_sha256 IS NULL) AND (file_sha256 IS NULL) = (media_type IS NULL) AND (media_type IS NULL) = (file_bytes IS NULL)),
  CHECK (expires_on > evidence_date),
  CHECK ((withdrawn_at IS NULL) = (withdrawn_by IS NULL))
);
CREATE INDEX compliance_documents_control ON compliance_documents (tenant_id, control_id) WHERE withdrawn_at IS NULL;
REVOKE DELETE, TRUNCATE ON compliance_documents FROM {{runtime_role}};

-- What a document says is fixed once added: only its file (once), whether it is shared in the
-- trust report, and its withdrawal may change — and a withdrawn document changes no more.
CREATE FUNCTION compliance_documents_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A data key rotation re-seals the file under a newer key: the same file (its digest, checked at
  -- every download, stays), a ciphertext of the same length and format under a higher key version,
  -- and nothing else changes with it.
  IF OLD.file_ciphertext IS NOT NULL AND NEW.file_ciphertext IS NOT NULL AND NEW.file_ciphertext <> OLD.file_ciphertext
     AND octet_length(NEW.file_ciphertext) = octet_length(OLD.file_ciphertext)
     AND substring(NEW.file_ciphertext FROM 1 FOR 4) = substring(OLD.file_ciphertext FROM 1 FOR 4)
     AND substring(NEW.file_ciphertext FROM 5 FOR 4) > substring(OLD.file_ciphertext FROM 5 FOR 4)
     AND (NEW.tenant_id, NEW.id, NEW.kind, NEW.control_id, NEW.title, NEW.issuer, NEW.url, NEW.file_name, NEW.media_type, NEW.file_sha256, NEW.file_bytes,
          NEW.evidence_date, NEW.expires_on, NEW.shared_in_report, NEW.added_by, NEW.added_at, NEW.withdrawn_at, NEW.withdrawn_by)
         IS NOT DISTINCT FROM
         (OLD.tenant_id, OLD.id, OLD.kind, OLD.control_id, OLD.title, OLD.issuer, OLD.url, OLD.file_name, OLD.media_type, OLD.file_sha256, OLD.file_bytes,
          OLD.evidence_date, OLD.expires_on, OLD.shared_in_report, OLD.added_by, OLD.added_at, OLD.withdrawn_at, OLD.withdrawn_by) THEN
    RETURN NEW;
  END IF;
  IF OLD.withdrawn_at IS NOT NULL THEN
    RAISE EXCEPTION 'a withdrawn compliance document cannot change' USING ERRCODE = 'check_violation';
  END IF;
  IF (NEW.tenant_id, NEW.id, NEW.kind, NEW.control_id, NEW.title, NEW.issuer, NEW.url, NEW.evidence_date, NEW.expires_on, NEW.added_by, NEW.added_at)
     IS DISTINCT FROM (OLD.tenant_id, OLD.id, OLD.kind, OLD.control_id, OLD.title, OLD.issuer, OLD.url, OLD.evidence_date, OLD.expires_on, OLD.added_by, OLD.added_at) THEN
    RAISE EXCEPTION 'a compliance document cannot be edited: withdraw it and add a new one' USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.file_sha256 IS NOT NULL AND (NEW.file_sha256, NEW.media_type, NEW.file_bytes, NEW.file_name, NEW.file_ciphertext) IS DISTINCT FROM (OLD.file_sha256, OLD.media_type, OLD.file_bytes, OLD.file_name, OLD.file_ciphertext) THEN
    RAISE EXCEPTION 'a compliance document''s file cannot be replaced' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER compliance_documents_fixed BEFORE UPDATE ON compliance_documents FOR EACH ROW EXECUTE FUNCTION compliance_documents_fixed();

-- Which signed tree head each outside witness of the audit ledger took last, per tenant: written
-- by the node that delivered it (src/audit/witness-deliveries.ts), read by the compliance check
-- that the ledger's heads leave the database.
CREATE TABLE audit_witness_deliveries (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  witness text NOT NULL CHECK (witness IN ('file', 'syslog', 'webhook')),
  tree_size bigint NOT NULL CHECK (tree_size > 0),
  delivered_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, witness)
);
REVOKE DELETE, TRUNCATE ON audit_witness_deliveries FROM {{runtime_role}};

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['compliance_documents', 'audit_witness_deliveries'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END
$$;

-- A completed access review is evidence: neither it nor any of its decisions changes afterwards,
-- and a decision, once taken, stands — whoever writes (only the owner role can step around it, by
-- disabling the trigger with its DDL rights; the server never holds them).
CREATE FUNCTION access_reviews_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state = 'completed' THEN
    RAISE EXCEPTION 'a completed access review cannot change' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER access_reviews_fixed BEFORE UPDATE ON access_reviews FOR EACH ROW EXECUTE FUNCTION access_reviews_fixed();

CREATE FUNCTION access_review_items_fixed() RETURNS trigger LANGUAGE plpgsql SET search_path = ringvakt, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM access_reviews r WHERE r.tenant_id = NEW.tenant_id AND r.id = NEW.review_id AND r.state = 'completed') THEN
    RAISE EXCEPTION 'the decisions of a completed access review cannot change' USING ERRCODE = 'check_violation';
  END IF;
  IF TG_OP = 'UPDATE' AND OLD.decision <> 'pending' THEN
    RAISE EXCEPTION 'an access review decision, once taken, stands' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER access_review_items_fixed BEFORE INSERT OR UPDATE ON access_review_items FOR EACH ROW EXECUTE FUNCTION access_review_items_fixed();
REVOKE DELETE, TRUNCATE ON access_review_items FROM {{runtime_role}};
