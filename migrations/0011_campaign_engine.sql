-- The campaign engine: jurisdiction profiles (the law a campaign dials under, as data), campaign
-- settings, the hopper (each contact's progress through a campaign), dial attempts (one row per
-- call, the reservation that makes dialing exactly-once) and agent states. Services:
-- src/modules/campaigns, src/dialer.

-- Jurisdiction profiles are one catalogue for every tenant: the rules of a legal regime, not a
-- tenant's data. The runtime role reads them and cannot change them; a new regime is a migration.
CREATE TABLE jurisdiction_profiles (
  code text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,39}$'),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  -- The abandonment cap and the window it is measured over, per campaign.
  abandon_cap numeric(5, 4) NOT NULL CHECK (abandon_cap > 0 AND abandon_cap < 1),
  abandon_window interval NOT NULL CHECK (abandon_window >= interval '1 hour'),
  -- 'live_answers': abandoned ÷ live answers (US TSR). 'live_answers_with_amd_estimate': the same,
  -- with live people that machine detection hung up on estimated into the abandoned calls (Ofcom).
  abandon_measure text NOT NULL CHECK (abandon_measure IN ('live_answers', 'live_answers_with_amd_estimate')),
  -- A live answer not with an agent within this time is abandoned.
  connect_limit_ms integer NOT NULL CHECK (connect_limit_ms BETWEEN 500 AND 15000),
  -- Unanswered calls ring at least this long.
  min_ring_ms integer NOT NULL CHECK (min_ring_ms BETWEEN 0 AND 60000),
  -- Callee-local windows: [{ "start": "08:00", "end": "21:00", "days": [1,2,3,4,5] }].
  calling_windows jsonb NOT NULL CHECK (jsonb_typeof(calling_windows) = 'array' AND jsonb_array_length(calling_windows) >= 1),
  -- After an abandoned call, the number is not dialed again for this long (null: no such rule).
  abandon_lockout interval,
  information_message_required boolean NOT NULL,
  -- Registries every campaign must be screened against, and how old their import may be.
  required_registries text[] NOT NULL DEFAULT '{}',
  registry_max_age interval,
  -- Dial only contacts with a lawful basis in force for the campaign's purpose.
  requires_lawful_basis boolean NOT NULL,
  source text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 500)
);
REVOKE INSERT, UPDATE, DELETE ON jurisdiction_profiles FROM {{runtime_role}};

INSERT INTO jurisdiction_profiles (code, name, abandon_cap, abandon_window, abandon_measure, connect_limit_ms, min_ring_ms,
  calling_windows, abandon_lockout, information_message_required, required_registries, registry_max_age, requires_lawful_basis, source) VALUES
  ('us_tsr', 'United States: FTC Telemarketing Sales Rule', 0.03, interval '30 days', 'live_answers', 2000, 15000,
   '[{"start": "08:00", "end": "21:00"}]', NULL, true, '{us_dnc}', interval '31 days', false,
   '16 CFR 310.4(b)(4) safe harbor: 3 % of live answers per campaign per 30 days, 2 s to connect, ring 15 s, seller message; 310.4(c) 8:00-21:00 callee-local; National DNC scrub every 31 days'),
  ('uk_ofcom', 'United Kingdom: Ofcom persistent misuse policy', 0.03, interval '24 hours', 'live_answers_with_amd_estimate', 2000, 15000,
   '[{"start": "08:00", "end": "21:00"}]', interval '72 hours', true, '{uk_tps}', interval '28 days', false,
   'Ofcom statement of 2016 (from 1 March 2017): 3 % of live calls per campaign per 24 h including AMD false positives, information message, no re-call within 72 h of an abandoned call; TPS screening (PECR)'),
  ('nordic_eu', 'Norway and the EU: marketing law and GDPR', 0.03, interval '24 hours', 'live_answers_with_amd_estimate', 2000, 15000,
   '[{"start": "09:00", "end": "20:00", "days": [1, 2, 3, 4, 5]}, {"start": "10:00", "end": "16:00", "days": [6]}]', interval '72 hours', true, '{no_reservasjon}', interval '30 days', true,
   'Norwegian Marketing Control Act s. 12 (Reservasjonsregisteret checked within the last month), GDPR Art. 6 lawful basis per purpose; weekday and Saturday hours as the national industry norm; pacing as Ofcom');

-- Campaign settings. Retry rules, hours and dispositions are JSON validated by the service
-- (src/modules/campaigns/campaign-settings.ts), which refuses settings that can never dial.
ALTER TABLE campaigns
  ADD COLUMN mode text NOT NULL DEFAULT 'progressive' CHECK (mode IN ('preview', 'progressive', 'predictive')),
  ADD COLUMN jurisdiction text REFERENCES jurisdiction_profiles (code),
  ADD COLUMN caller_id text CHECK (caller_id ~ '^\+[1-9][0-9]{6,14}$'),
  ADD COLUMN script text CHECK (char_length(script) <= 20000),
  ADD COLUMN hours jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(hours) = 'array'),
  ADD COLUMN retry_rules jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(retry_rules) = 'object'),
  ADD COLUMN max_attempts smallint NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 20),
  ADD COLUMN ring_timeout_ms integer NOT NULL DEFAULT 25000 CHECK (ring_timeout_ms BETWEEN 5000 AND 120000),
  ADD COLUMN wrap_up_ms integer NOT NULL DEFAULT 15000 CHECK (wrap_up_ms BETWEEN 0 AND 600000),
  ADD COLUMN amd boolean NOT NULL DEFAULT true,
  ADD COLUMN record_calls boolean NOT NULL DEFAULT true,
  ADD COLUMN dispositions jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(dispositions) = 'array'),
  -- When the current legal measurement window began (a campaign's first start, then every window).
  ADD COLUMN started_at timestamptz,
  -- The server process that runs the campaign's dialer, while its lease lasts (every node may run
  -- dialers; each campaign is paced by one at a time, and another takes over when a lease lapses).
  ADD COLUMN dialer_owner text CHECK (char_length(dialer_owner) <= 100),
  ADD COLUMN dialer_lease_until timestamptz;

-- The dialers' last pacing decision per campaign, in words: what the supervisor and the API show.
CREATE TABLE campaign_pacing (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  campaign_id uuid NOT NULL,
  decided_at timestamptz NOT NULL,
  dialer text NOT NULL CHECK (char_length(dialer) <= 100),
  pacer text NOT NULL CHECK (char_length(pacer) <= 40),
  lines integer NOT NULL CHECK (lines >= 0),
  explanation text NOT NULL CHECK (char_length(explanation) <= 2000),
  PRIMARY KEY (tenant_id, campaign_id),
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE
);

-- The hopper: each contact's progress through a campaign. 'ready' contacts whose next_at has come
-- are reserved with FOR UPDATE SKIP LOCKED; 'reserved' while an attempt is in flight; 'done' when
-- the campaign has finished with them (success, final disposition, attempts used, suppressed).
CREATE TABLE campaign_contacts (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  campaign_id uuid NOT NULL,
  contact_id uuid NOT NULL,
  state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'reserved', 'done')),
  -- Reservations so far (numbers each attempt: the attempt key), and of them the calls placed
  -- (what the attempt limit counts: an attempt the dial-time checks stopped is not a call).
  attempts smallint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  dials smallint NOT NULL DEFAULT 0 CHECK (dials >= 0 AND dials <= attempts),
  next_at timestamptz NOT NULL DEFAULT now(),
  last_outcome text CHECK (char_length(last_outcome) <= 40),
  -- A scheduled callback: for this agent (personal) or for any agent of the campaign (null).
  callback_agent_id uuid,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, campaign_id, contact_id),
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (tenant_id, campaign_id, next_at) WHERE state = 'ready';
CREATE INDEX campaign_contacts_contact ON campaign_contacts (tenant_id, contact_id);

-- One row per dial attempt, written before the dial is sent: (campaign, contact, attempt) is
-- unique, so a contact's n-th attempt can be reserved once, whatever number of dialers race.
CREATE TABLE dial_attempts (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL,
  campaign_id uuid NOT NULL,
  contact_id uuid NOT NULL,
  attempt smallint NOT NULL CHECK (attempt >= 1),
  state text NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'dialing', 'answered', 'connected', 'ended', 'skipped')),
  -- Which dialer process holds the attempt (for recovery of a process that died mid-call).
  dialer text NOT NULL CHECK (char_length(dialer) BETWEEN 1 AND 100),
  reserved_at timestamptz NOT NULL DEFAULT now(),
  -- The checks passed at dial time (suppression, window, consent, attempts, lockout, status), or
  -- the one that stopped the dial.
  checks text[] NOT NULL DEFAULT '{}',
  skip_reason text CHECK (char_length(skip_reason) <= 40),
  phone_position smallint CHECK (phone_position BETWEEN 0 AND 9),
  dialed_at timestamptz,
  answered_at timestamptz,
  ring_ms integer CHECK (ring_ms >= 0),
  amd_result text CHECK (amd_result IN ('human', 'machine', 'unknown')),
  agent_id uuid,
  connect_ms integer CHECK (connect_ms >= 0),
  information_message boolean NOT NULL DEFAULT false,
  outcome text CHECK (outcome IN ('live', 'machine', 'busy', 'no_answer', 'failed', 'abandoned', 'cancelled', 'skipped')),
  raw_cause jsonb,
  ended_at timestamptz,
  talk_ms integer CHECK (talk_ms >= 0),
  disposition text CHECK (char_length(disposition) <= 40),
  notes_ciphertext bytea CHECK (octet_length(notes_ciphertext) <= 16384),
  disposed_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, campaign_id, contact_id, attempt),
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id),
  FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX dial_attempts_campaign_time ON dial_attempts (tenant_id, campaign_id, dialed_at);
CREATE INDEX dial_attempts_contact ON dial_attempts (tenant_id, contact_id, ended_at DESC);
CREATE INDEX dial_attempts_open ON dial_attempts (tenant_id, dialer) WHERE state IN ('reserved', 'dialing', 'answered', 'connected');

-- Agents' states. One row per agent, changed only by the agent service (src/modules/agents),
-- which enforces the transitions; `since` orders available agents by idle time.
CREATE TABLE agent_states (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  user_id uuid NOT NULL,
  state text NOT NULL DEFAULT 'offline' CHECK (state IN ('offline', 'available', 'reserved', 'on_call', 'wrap_up', 'paused')),
  reason text CHECK (char_length(reason) <= 40),
  campaign_id uuid,
  attempt_id uuid,
  since timestamptz NOT NULL DEFAULT now(),
  wrap_up_until timestamptz,
  PRIMARY KEY (tenant_id, user_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns (tenant_id, id),
  CHECK ((state = 'paused') = (reason IS NOT NULL))
);
CREATE INDEX agent_states_available ON agent_states (tenant_id, campaign_id, since) WHERE state = 'available';

-- Call recordings: the audio sealed under the contact's subject key (erasing the contact shreds
-- it), with its pauses (card payments) counted. Played back only with recordings:play, audited.
CREATE TABLE recordings (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  attempt_id uuid NOT NULL,
  campaign_id uuid NOT NULL,
  contact_id uuid NOT NULL,
  state text NOT NULL DEFAULT 'recording' CHECK (state IN ('recording', 'paused', 'saved', 'failed')),
  pauses smallint NOT NULL DEFAULT 0 CHECK (pauses >= 0),
  started_at timestamptz NOT NULL,
  saved_at timestamptz,
  duration_ms integer CHECK (duration_ms >= 0),
  audio_bytes integer CHECK (audio_bytes >= 0),
  audio_ciphertext bytea,
  PRIMARY KEY (tenant_id, attempt_id),
  FOREIGN KEY (tenant_id, attempt_id) REFERENCES dial_attempts (tenant_id, id) ON DELETE CASCADE,
  CHECK ((state = 'saved') = (audio_ciphertext IS NOT NULL))
);

-- Inbound queues: callers to a queue's number wait (ringing, with their patience) until an agent
-- with every skill the queue needs is free; higher priority queues are served first, then the
-- longest wait; past max_wait a caller moves to the overflow queue; outside the queue's hours
-- (in its time zone) callers hear the closed message.
CREATE TABLE queues (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants (id),
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  number text NOT NULL CHECK (number ~ '^\+[1-9][0-9]{6,14}$'),
  skills text[] NOT NULL DEFAULT '{}' CHECK (cardinality(skills) <= 20),
  priority smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 100),
  service_level_seconds integer NOT NULL DEFAULT 20 CHECK (service_level_seconds BETWEEN 1 AND 3600),
  short_abandon_seconds integer NOT NULL DEFAULT 5 CHECK (short_abandon_seconds BETWEEN 0 AND 60),
  max_wait_seconds integer NOT NULL DEFAULT 300 CHECK (max_wait_seconds BETWEEN 5 AND 7200),
  overflow_queue_id uuid,
  hours jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(hours) = 'array'),
  time_zone text NOT NULL DEFAULT 'Europe/Oslo' CHECK (char_length(time_zone) <= 64),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, number),
  UNIQUE (tenant_id, name),
  FOREIGN KEY (tenant_id, overflow_queue_id) REFERENCES queues (tenant_id, id),
  CHECK (overflow_queue_id IS DISTINCT FROM id)
);

-- Inbound calls, one row per offered call: the caller's number only as its blind index.
CREATE TABLE inbound_calls (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id uuid NOT NULL,
  queue_id uuid NOT NULL,
  first_queue_id uuid NOT NULL,
  caller_index bytea CHECK (octet_length(caller_index) BETWEEN 1 AND 32),
  state text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'connected', 'ended')),
  outcome text CHECK (outcome IN ('answered', 'abandoned', 'closed', 'failed')),
  offered_at timestamptz NOT NULL,
  answered_at timestamptz,
  agent_id uuid,
  wait_ms integer CHECK (wait_ms >= 0),
  talk_ms integer CHECK (talk_ms >= 0),
  ended_at timestamptz,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, queue_id) REFERENCES queues (tenant_id, id)
);
CREATE INDEX inbound_calls_queue_time ON inbound_calls (tenant_id, first_queue_id, offered_at);

ALTER TABLE agent_states
  ADD COLUMN skills text[] NOT NULL DEFAULT '{}' CHECK (cardinality(skills) <= 20),
  ADD COLUMN takes_inbound boolean NOT NULL DEFAULT true,
  ADD COLUMN inbound_call_id uuid;

-- Every change of an agent's state, for time-in-state reports.
CREATE TABLE agent_state_changes (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  id bigint GENERATED ALWAYS AS IDENTITY,
  user_id uuid NOT NULL,
  state text NOT NULL,
  reason text,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);
CREATE INDEX agent_state_changes_user ON agent_state_changes (tenant_id, user_id, at);
REVOKE UPDATE, DELETE ON agent_state_changes FROM {{runtime_role}};

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['campaign_contacts', 'dial_attempts', 'agent_states', 'agent_state_changes', 'campaign_pacing', 'recordings', 'queues', 'inbound_calls'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id())', t);
  END LOOP;
END
$$;

-- Every node's dialer service finds the campaigns to run across tenants through this function alone.
CREATE POLICY owner_maintenance ON campaigns FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION campaigns_to_dial() RETURNS TABLE (tenant_id uuid, campaign_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT tenant_id, id FROM campaigns WHERE state = 'active' OR dialer_owner IS NOT NULL
  $$;

-- Every node routes the inbound calls its own telephony connection receives, for every tenant
-- with queues: found across tenants through this function alone.
CREATE POLICY owner_maintenance ON queues FOR SELECT TO {{owner_role}} USING (true);
CREATE FUNCTION tenants_with_queues() RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ringvakt, pg_temp
  AS $$
    SELECT DISTINCT tenant_id FROM queues
  $$;
