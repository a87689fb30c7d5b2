-- Incident response and security awareness: who is on call for security, incident cases with
-- their timeline, links and containment, blocked address ranges, the security policy and training
-- documents each user acknowledges, and the acknowledgements themselves. See src/security/.

-- The tenant's security contacts: they receive high and critical alerts by e-mail. Each one is a
-- user of the tenant who may manage security (checked when added).
CREATE TABLE security_contacts (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  user_id uuid NOT NULL,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

-- The on-call rota: whoever's shift covers now is on call, and receives every alert of medium
-- severity or more. Shifts of a tenant do not overlap (checked when added, under a lock).
CREATE TABLE security_on_call (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  starts_at timestamptz NOT NULL,
  ends_at timestamptz NOT NULL,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
  CHECK (ends_at > starts_at),
  CHECK (ends_at - starts_at <= interval '31 days')
);
CREATE INDEX security_on_call_time ON security_on_call (tenant_id, starts_at, ends_at);

-- An incident case. Opened from an alert or by hand; contained, then resolved. Its title and
-- description are written by the security team and name ids, not people (the form says so).
CREATE TABLE incidents (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  reference text NOT NULL CHECK (reference ~ '^INC-[0-9]{4}-[0-9]{3,}$'),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 4000),
  severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'contained', 'resolved')),
  owner_id uuid,
  personal_data boolean NOT NULL DEFAULT false,
  breach_id uuid,
  -- When the first sign of it was seen (its earliest alert, or when it was opened by hand):
  -- time to contain is measured from here.
  detected_at timestamptz NOT NULL,
  opened_at timestamptz NOT NULL DEFAULT now(),
  opened_by text NOT NULL CHECK (char_length(opened_by) BETWEEN 1 AND 100),
  contained_at timestamptz,
  resolved_at timestamptz,
  resolution text CHECK (char_length(resolution) <= 2000),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, reference),
  UNIQUE (tenant_id, breach_id),
  FOREIGN KEY (tenant_id, owner_id) REFERENCES users (tenant_id, id),
  FOREIGN KEY (tenant_id, breach_id) REFERENCES breaches (tenant_id, id),
  CHECK ((state = 'open') = (contained_at IS NULL)),
  CHECK ((state = 'resolved') = (resolved_at IS NOT NULL)),
  CHECK ((state = 'resolved') = (resolution IS NOT NULL)),
  CHECK (detected_at <= opened_at)
);
CREATE INDEX incidents_live ON incidents (tenant_id, opened_at DESC) WHERE state <> 'resolved';
REVOKE DELETE ON incidents FROM {{runtime_role}};

-- The incident's timeline: every step, note and containment action, in order. Append-only.
CREATE TABLE incident_events (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  incident_id uuid NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 100),
  kind text NOT NULL CHECK (kind IN ('opened', 'note', 'severity', 'owner', 'alert_linked', 'events_linked', 'containment', 'contained', 'resolved', 'breach_opened')),
  entry text NOT NULL CHECK (char_length(entry) BETWEEN 1 AND 2000),
  details jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);
CREATE INDEX incident_events_incident ON incident_events (tenant_id, incident_id, id);
REVOKE UPDATE, DELETE ON incident_events FROM {{runtime_role}};

-- The alerts an incident grew from or took in (an alert belongs to one incident at most).
CREATE TABLE incident_alerts (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  incident_id uuid NOT NULL,
  alert_id uuid NOT NULL,
  linked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, alert_id),
  FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES security_alerts (tenant_id, id)
);
CREATE INDEX incident_alerts_incident ON incident_alerts (tenant_id, incident_id);
REVOKE UPDATE, DELETE ON incident_alerts FROM {{runtime_role}};

-- Audit events that are part of the incident (the ledger's own ids: provable with its proofs).
CREATE TABLE incident_audit_events (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  incident_id uuid NOT NULL,
  audit_event_id bigint NOT NULL,
  PRIMARY KEY (tenant_id, incident_id, audit_event_id),
  FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id)
);
REVOKE UPDATE, DELETE ON incident_audit_events FROM {{runtime_role}};

-- Address ranges refused for every sign-in and request of the tenant (a containment action),
-- until they expire or are lifted.
CREATE TABLE blocked_networks (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  network cidr NOT NULL,
  reason text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  incident_id uuid,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  lifted_at timestamptz,
  lifted_by text CHECK (char_length(lifted_by) <= 100),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, incident_id) REFERENCES incidents (tenant_id, id),
  CHECK (expires_at IS NULL OR expires_at > created_at),
  CHECK ((lifted_at IS NULL) = (lifted_by IS NULL))
);
CREATE INDEX blocked_networks_live ON blocked_networks (tenant_id) WHERE lifted_at IS NULL;
REVOKE DELETE ON blocked_networks FROM {{runtime_role}};

-- The security policy and the training material, each a published document with a version:
-- a link, a digest of its content, and whether users must acknowledge it. A new version of a
-- kind replaces the current one (the old stay as evidence of what was acknowledged).
CREATE TABLE security_documents (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('policy', 'training')),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  version text NOT NULL CHECK (version ~ '^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$'),
  url text CHECK (char_length(url) <= 2000),
  content text CHECK (char_length(content) <= 100000),
  content_sha256 bytea NOT NULL CHECK (octet_length(content_sha256) = 32),
  published_by text NOT NULL CHECK (char_length(published_by) BETWEEN 1 AND 100),
  published_at timestamptz NOT NULL DEFAULT now(),
  superseded_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, kind, version),
  CHECK (url IS NOT NULL OR content IS NOT NULL)
);
CREATE UNIQUE INDEX security_documents_current ON security_documents (tenant_id, kind) WHERE superseded_at IS NULL;
REVOKE DELETE ON security_documents FROM {{runtime_role}};

-- Each user's acknowledgement of a document version: the evidence that they read the policy
-- or completed the training. Append-only.
CREATE TABLE security_attestations (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,
  document_id uuid NOT NULL,
  acknowledged_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
  FOREIGN KEY (tenant_id, document_id) REFERENCES security_documents (tenant_id, id)
);
CREATE INDEX security_attestations_user ON security_attestations (tenant_id, user_id, document_id, acknowledged_at DESC);
REVOKE UPDATE, DELETE ON security_attestations FROM {{runtime_role}};

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['security_contacts', 'security_on_call', 'incidents', 'incident_events', 'incident_alerts', 'incident_audit_events',
    'blocked_networks', 'security_documents', 'security_attestations'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END
$$;

-- The operator's view and the syslog copy read across tenants through the functions below alone.
CREATE POLICY owner_maintenance ON incidents FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON security_on_call FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON security_contacts FOR SELECT TO {{owner_role}} USING (true);

-- The operator's view across tenants (`ringvakt security status`): counts and times only, no
-- titles, subjects or people.
CREATE FUNCTION security_status_by_tenant(since timestamptz)
  RETURNS TABLE (tenant_id uuid, slug text, open_alerts bigint, unacknowledged_high bigint, open_incidents bigint,
                 median_ack_seconds double precision, max_ack_seconds double precision,
                 median_contain_seconds double precision, max_contain_seconds double precision,
                 oldest_unacknowledged_high timestamptz, on_call boolean)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT t.id, t.slug,
           (SELECT count(*) FROM security_alerts a WHERE a.tenant_id = t.id AND a.state <> 'resolved'),
           (SELECT count(*) FROM security_alerts a WHERE a.tenant_id = t.id AND a.state = 'open' AND a.severity IN ('high', 'critical')),
           (SELECT count(*) FROM incidents i WHERE i.tenant_id = t.id AND i.state <> 'resolved'),
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.raised_at)) FROM security_alerts a WHERE a.tenant_id = t.id AND a.raised_at >= since AND a.acknowledged_at IS NOT NULL),
           (SELECT max(extract(epoch FROM a.acknowledged_at - a.raised_at)) FROM security_alerts a WHERE a.tenant_id = t.id AND a.raised_at >= since AND a.acknowledged_at IS NOT NULL),
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.contained_at - i.detected_at)) FROM incidents i WHERE i.tenant_id = t.id AND i.opened_at >= since AND i.contained_at IS NOT NULL),
           (SELECT max(extract(epoch FROM i.contained_at - i.detected_at)) FROM incidents i WHERE i.tenant_id = t.id AND i.opened_at >= since AND i.contained_at IS NOT NULL),
           (SELECT min(a.raised_at) FROM security_alerts a WHERE a.tenant_id = t.id AND a.state = 'open' AND a.severity IN ('high', 'critical')),
           EXISTS (SELECT 1 FROM security_on_call s WHERE s.tenant_id = t.id AND now() >= s.starts_at AND now() < s.ends_at)
             OR EXISTS (SELECT 1 FROM security_contacts c WHERE c.tenant_id = t.id)
      FROM tenants t
     ORDER BY t.slug
  $$;
REVOKE ALL ON FUNCTION security_status_by_tenant(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION security_status_by_tenant(timestamptz) TO {{runtime_role}};

-- Alerts copied to the installation's syslog/SIEM receiver (RINGVAKT_ALERT_SYSLOG): how many hits
-- it was told of and when, so a repeat is sent at most every few minutes and none is lost to a
-- crash (the monitor sends what is behind, then records it).
ALTER TABLE security_alerts ADD COLUMN syslog_hits integer NOT NULL DEFAULT 0 CHECK (syslog_hits >= 0);
ALTER TABLE security_alerts ADD COLUMN syslog_at timestamptz;
CREATE INDEX security_alerts_syslog_behind ON security_alerts (tenant_id, raised_at) WHERE hits > syslog_hits;
CREATE POLICY owner_maintenance ON security_alerts FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_with_alerts_for_syslog() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT DISTINCT tenant_id FROM security_alerts
     WHERE hits > syslog_hits AND raised_at > now() - interval '1 day'
       AND (syslog_at IS NULL OR syslog_at < now() - interval '5 minutes')
  $$;
REVOKE ALL ON FUNCTION tenants_with_alerts_for_syslog() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_alerts_for_syslog() TO {{runtime_role}};

-- Alerts of the installation itself, with no tenant to hold them: an error flood against one
-- route (4xx), key provider errors, the audit sealer falling behind. Raised by the node that saw
-- it (one open alert per rule and subject; repeats add to its count), read and handled by the
-- operator (`ringvakt security status`, `… acknowledge`, `… resolve`) and copied to syslog.
-- Subjects are routes and component names, never a person or an address.
CREATE TABLE installation_alerts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  rule_id text NOT NULL CHECK (rule_id ~ '^installation\.[a-z0-9_]+$'),
  severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  subject text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
  summary text NOT NULL CHECK (char_length(summary) BETWEEN 1 AND 500),
  state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
  hits integer NOT NULL CHECK (hits >= 1),
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  raised_at timestamptz NOT NULL DEFAULT now(),
  node text NOT NULL CHECK (char_length(node) BETWEEN 1 AND 200),
  acknowledged_by text CHECK (char_length(acknowledged_by) <= 100),
  acknowledged_at timestamptz,
  resolved_at timestamptz,
  syslog_hits integer NOT NULL DEFAULT 0 CHECK (syslog_hits >= 0),
  syslog_at timestamptz
);
CREATE INDEX installation_alerts_live ON installation_alerts (rule_id, subject, last_seen DESC) WHERE state <> 'resolved';
CREATE INDEX installation_alerts_recent ON installation_alerts (raised_at DESC);
REVOKE DELETE, TRUNCATE ON installation_alerts FROM {{runtime_role}};

-- When the organisation works (the "exports outside working hours" rule): local hours [from, to)
-- on its working days (ISO 1 Monday … 7 Sunday) in its time zone. Without a row: 07–19, Monday to
-- Friday, Europe/Oslo.
CREATE TABLE security_working_hours (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  time_zone text NOT NULL CHECK (char_length(time_zone) BETWEEN 1 AND 64),
  work_from smallint NOT NULL CHECK (work_from BETWEEN 0 AND 23),
  work_to smallint NOT NULL CHECK (work_to BETWEEN 1 AND 24),
  work_days smallint[] NOT NULL CHECK (cardinality(work_days) BETWEEN 1 AND 7 AND work_days <@ ARRAY[1, 2, 3, 4, 5, 6, 7]::smallint[]),
  updated_by text NOT NULL CHECK (char_length(updated_by) BETWEEN 1 AND 100),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id),
  CHECK (work_from < work_to)
);
ALTER TABLE security_working_hours ENABLE ROW LEVEL SECURITY;
ALTER TABLE security_working_hours FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON security_working_hours USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

-- Every node drops its cached credentials when a block, a published document or an
-- acknowledgement changes what a credential may do (the payload is the tenant id only).
CREATE TRIGGER blocked_networks_auth_change
  AFTER INSERT OR UPDATE ON blocked_networks
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change_new();
CREATE TRIGGER security_documents_auth_change
  AFTER INSERT OR UPDATE ON security_documents
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change_new();
CREATE TRIGGER security_attestations_auth_change
  AFTER INSERT ON security_attestations
  FOR EACH ROW EXECUTE FUNCTION notify_auth_change_new();
