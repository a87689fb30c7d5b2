-- A contact's personal values sealed together: name, numbers, e-mail, postal address, date of
-- birth, notes and personal custom fields as one AES-256-GCM ciphertext under the contact's own
-- subject key, bound to tenant, contact and the field 'record' (src/modules/contacts/
-- contact-record.ts). One seal per person instead of one per value: each seal is a cipher object
-- and its buffers, and a million-row import spent a quarter of its sealing on them.
--
-- Contacts written before keep their values in the per-value columns (name_ciphertext …, and
-- contact_phones.number_ciphertext), which every reader still opens; a contact written again (an
-- edit) moves to the record and its per-value columns are cleared. A contact's phone rows keep
-- their kind, position and blind index either way; the number itself is in the record when the
-- phone row holds no ciphertext.
-- One ALTER: the new column is empty, and both checks are proved in one pass over the table.
ALTER TABLE contacts
  ADD COLUMN record_ciphertext bytea CHECK (octet_length(record_ciphertext) <= 49152),
  ADD CONSTRAINT contacts_erased_record CHECK (status <> 'erased' OR record_ciphertext IS NULL);
ALTER TABLE contact_phones ALTER COLUMN number_ciphertext DROP NOT NULL;

-- Erasure clears the record with the rest (as in 0012, with record_ciphertext).
CREATE OR REPLACE FUNCTION erase_subject_rows(p_tenant uuid, p_subject uuid, p_at timestamptz)
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
         personal_fields_ciphertext = NULL, record_ciphertext = NULL, fields = '{}'
   WHERE tenant_id = p_tenant AND id = p_subject AND status <> 'erased';
  GET DIAGNOSTICS erased = ROW_COUNT;
  RETURN QUERY SELECT erased > 0, recordings, notes;
END
$$;
