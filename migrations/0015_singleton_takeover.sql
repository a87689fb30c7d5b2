-- Singleton work taken over within seconds of its node's death. A node's presence is a session
-- advisory lock named after it (src/operations/node-presence.ts); these let every node find the
-- retention sweeps whose node is gone, or that their node gave up on while it stopped, so that
-- another node resumes them at once instead of after the five-minute heartbeat.

CREATE POLICY owner_maintenance ON retention_sweeps FOR SELECT TO {{owner_role}} USING (true);

-- The latest real sweep of a tenant is looked up by every node's sweeper.
CREATE INDEX retention_sweeps_recent ON retention_sweeps (tenant_id, started_at DESC) WHERE NOT dry_run;

-- Tenants with a running sweep whose node holds no presence lock (the lock is tried for this
-- transaction only: a live node's try fails), or whose latest real sweep was given up by a node
-- that was stopping or was lost. VOLATILE: it takes (and at once releases) advisory locks.
CREATE FUNCTION tenants_with_sweeps_to_resume() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT s.tenant_id FROM retention_sweeps s
     WHERE s.state = 'running' AND pg_try_advisory_xact_lock(hashtextextended('ringvakt:node:' || s.node, 0))
    UNION
    SELECT latest.tenant_id FROM (
      -- Recent sweeps only: this runs every 5 s on every node, and an older one cut short is
      -- taken up by the hourly schedule anyway.
      SELECT DISTINCT ON (tenant_id) tenant_id, state, error_code FROM retention_sweeps
       WHERE NOT dry_run AND started_at > now() - interval '1 day' ORDER BY tenant_id, started_at DESC
    ) AS latest
     WHERE latest.state = 'abandoned' AND latest.error_code IN ('node_lost', 'node_stopped')
  $$;
REVOKE ALL ON FUNCTION tenants_with_sweeps_to_resume() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_sweeps_to_resume() TO {{runtime_role}};

-- Campaigns nobody dials any more (paused or finished, no lease) with calls still open whose
-- node is gone — it stopped and handed its campaign over, then died while finishing its calls.
-- Any settled node settles them (src/dialer/dialer-service.ts); an active campaign's owner does
-- so for its own. Served by dial_attempts_open (tenant_id, dialer) WHERE state is open.
CREATE FUNCTION campaigns_with_lost_attempts() RETURNS TABLE (tenant_id uuid, campaign_id uuid)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT DISTINCT a.tenant_id, a.campaign_id
      FROM dial_attempts a
      JOIN campaigns c ON c.tenant_id = a.tenant_id AND c.id = a.campaign_id
     WHERE a.state IN ('reserved', 'dialing', 'answered', 'connected')
       AND c.state <> 'active' AND c.dialer_owner IS NULL
       AND pg_try_advisory_xact_lock(hashtextextended('ringvakt:node:' || a.dialer, 0))
  $$;
REVOKE ALL ON FUNCTION campaigns_with_lost_attempts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION campaigns_with_lost_attempts() TO {{runtime_role}};
