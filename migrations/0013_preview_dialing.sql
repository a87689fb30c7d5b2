-- Preview dialing: an agent sees the next contact before anything is dialed and chooses to call
-- or skip. The contact is held for that agent (nobody else is shown it) until the hold runs out;
-- choosing to call marks it requested, and the campaign's dialer places exactly the requested
-- calls (through the same reservation and dial-time checks as every other dial), each for the
-- agent who asked. See src/dialer/preview.ts.
ALTER TABLE campaign_contacts
  ADD COLUMN preview_agent_id uuid,
  ADD COLUMN preview_until timestamptz,
  ADD COLUMN dial_requested_at timestamptz,
  ADD CONSTRAINT campaign_contacts_preview_hold CHECK ((preview_agent_id IS NULL) = (preview_until IS NULL)),
  ADD CONSTRAINT campaign_contacts_request_held CHECK (dial_requested_at IS NULL OR preview_agent_id IS NOT NULL);

-- An agent holds at most one contact at a time.
CREATE UNIQUE INDEX campaign_contacts_one_hold ON campaign_contacts (tenant_id, preview_agent_id) WHERE preview_agent_id IS NOT NULL;
-- What the preview dialer reserves.
CREATE INDEX campaign_contacts_requested ON campaign_contacts (tenant_id, campaign_id, dial_requested_at) WHERE dial_requested_at IS NOT NULL AND state = 'ready';

-- Who chose to dial (preview): the call is theirs from the dial on, answered or not.
ALTER TABLE dial_attempts ADD COLUMN requested_by uuid;
CREATE INDEX dial_attempts_requested_by ON dial_attempts (tenant_id, requested_by, reserved_at DESC) WHERE requested_by IS NOT NULL;
