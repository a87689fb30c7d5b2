-- Security monitoring: detection rules tuned per tenant, alerts (deduplicated), where each
-- tenant's evaluation stands in its audit ledger, and signed webhook deliveries of alerts.
-- See src/security/.

-- A tenant's tuning of a built-in rule (src/security/detection-rules.ts): on or off, threshold,
-- window, severity. Without a row the rule runs with its defaults.
CREATE TABLE detection_rule_settings (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  rule_id text NOT NULL CHECK (rule_id ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
  enabled boolean NOT NULL,
  threshold integer NOT NULL CHECK (threshold BETWEEN 1 AND 1000000),
  window_seconds integer NOT NULL CHECK (window_seconds BETWEEN 10 AND 86400),
  severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  updated_by text NOT NULL CHECK (char_length(updated_by) BETWEEN 1 AND 100),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, rule_id)
);

-- An alert: one per rule and subject while it is open; a repeat within its window adds to the
-- count and the evidence instead of raising another. The subject is an id (an account, a user,
-- an address, a route), never personal data; the evidence is audit event ids.
CREATE TABLE security_alerts (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  rule_id text NOT NULL CHECK (char_length(rule_id) <= 100),
  severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
  subject text NOT NULL CHECK (char_length(subject) <= 200),
  summary text NOT NULL CHECK (char_length(summary) <= 500),
  state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
  hits integer NOT NULL DEFAULT 1 CHECK (hits >= 1),
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  raised_at timestamptz NOT NULL DEFAULT now(),
  evidence bigint[] NOT NULL DEFAULT '{}' CHECK (cardinality(evidence) <= 100),
  acknowledged_by text CHECK (char_length(acknowledged_by) <= 100),
  acknowledged_at timestamptz,
  resolved_at timestamptz,
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX security_alerts_recent ON security_alerts (tenant_id, raised_at DESC);
CREATE INDEX security_alerts_live ON security_alerts (tenant_id, rule_id, subject, last_seen DESC) WHERE state <> 'resolved';
REVOKE DELETE ON security_alerts FROM {{runtime_role}};

-- How far the detector has read each tenant's sealed ledger (leaf index: the order events were
-- sealed in, gap-free, so nothing is read twice or missed), and when its ledger was last verified.
CREATE TABLE detection_cursors (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  last_leaf bigint NOT NULL CHECK (last_leaf >= -1),
  ledger_checked_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id)
);

-- Where alerts are sent: an HTTPS endpoint of the tenant's SIEM or chat, and the secret the
-- payloads are signed with (sealed under the tenant data key).
CREATE TABLE alert_webhooks (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  url text NOT NULL CHECK (char_length(url) BETWEEN 8 AND 2000),
  secret_ciphertext bytea NOT NULL CHECK (octet_length(secret_ciphertext) <= 512),
  min_severity text NOT NULL DEFAULT 'low' CHECK (min_severity IN ('low', 'medium', 'high', 'critical')),
  enabled boolean NOT NULL DEFAULT true,
  created_by text NOT NULL CHECK (char_length(created_by) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

-- One delivery per alert (or repeat) and webhook, retried with backoff until delivered or given up.
CREATE TABLE alert_deliveries (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  alert_id uuid NOT NULL,
  webhook_id uuid NOT NULL,
  hits integer NOT NULL CHECK (hits >= 1),
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_at timestamptz NOT NULL DEFAULT now(),
  last_status integer,
  last_error text CHECK (char_length(last_error) <= 200),
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, alert_id) REFERENCES security_alerts (tenant_id, id),
  FOREIGN KEY (tenant_id, webhook_id) REFERENCES alert_webhooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (tenant_id, next_at) WHERE state = 'pending';

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['detection_rule_settings', 'security_alerts', 'detection_cursors', 'alert_webhooks', 'alert_deliveries'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END
$$;

-- Matching events by action within a window (the detector's rebuild after a takeover).
CREATE INDEX audit_events_action_time ON audit_events (tenant_id, action, occurred_at);

-- The detector on one node finds the tenants with sealed events it has not read, and those with
-- alert deliveries due, through these alone (ids only).
CREATE POLICY owner_maintenance ON detection_cursors FOR SELECT TO {{owner_role}} USING (true);
CREATE POLICY owner_maintenance ON alert_deliveries FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_with_events_to_evaluate() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT t.id FROM tenants t
     WHERE EXISTS (SELECT 1 FROM audit_events e
                    WHERE e.tenant_id = t.id
                      AND e.leaf_index > coalesce((SELECT c.last_leaf FROM detection_cursors c WHERE c.tenant_id = t.id), -1))
  $$;
CREATE FUNCTION tenants_with_alert_deliveries_due() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT DISTINCT tenant_id FROM alert_deliveries WHERE state = 'pending' AND next_at <= now()
  $$;
REVOKE ALL ON FUNCTION tenants_with_events_to_evaluate() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenants_with_alert_deliveries_due() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_events_to_evaluate() TO {{runtime_role}};
GRANT EXECUTE ON FUNCTION tenants_with_alert_deliveries_due() TO {{runtime_role}};
