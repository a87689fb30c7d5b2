import { createHash } from 'node:crypto';
import { stringify } from '../csv.ts';
import { strToU8, zipSync, type Zippable } from 'fflate';
import { sendTogether, type TenantTransaction } from '../db/tenant-db.ts';
import { DecryptionError, newKey, open, seal } from '../crypto/aead.ts';
import { AppError } from '../server/errors.ts';
import { loadContacts, type ContactsCrypto } from '../modules/contacts/contacts.service.ts';
import { CSV_OUT, neutraliseCell } from '../modules/contacts/csv-safety.ts';
import { recordingAt } from '../dialer/call-recording.ts';
import type { RequestRow } from './requests.ts';

/**
 * Access and portability (Art. 15, 20): everything held about the request's subjects, as a ZIP
 * of JSON (schema `ringvakt-subject-export/v1`, described in the bundle's README.txt), CSV and the
 * call recordings.
 *
 * The bundle is sealed (AES-256-GCM) with a random key that is the download token itself; the
 * database keeps only the token's SHA-256. So the stored bundle is unreadable to anyone who
 * reads the database or a backup of it, the link works once (the ciphertext is dropped on
 * download) and expires. The token goes in the body of the download request, never in a URL.
 */

export const EXPORT_SCHEMA = 'ringvakt-subject-export/v1';
export const EXPORT_LIFETIME_MS = 7 * 24 * 3_600_000;

const README = `Ringvakt subject export (${EXPORT_SCHEMA})

request.json            the request this export answers: reference, kind, dates, controller
subjects/<id>/profile.json
  contact               the person's data: name, phones (E.164, kind), email, address,
                        birthDate, notes, custom fields (personal and other), time zones,
                        status, created and updated times
  lists                 the contact lists the person is on (name, added at)
  consents              every consent event: purpose, action (grant, withdraw, object),
                        lawful basis, source, occurred and recorded times
  calls                 every call attempt: campaign, attempt number, dialed, answered and
                        ended times, outcome, ring and talk seconds, disposition, the agent's
                        notes, whether a recording exists
subjects/<id>/calls.csv     the calls, one row each (same fields as profile.json "calls")
subjects/<id>/consents.csv  the consent events, one row each
subjects/<id>/recordings/<call id>.wav   each saved call recording (audio as recorded)

Times are ISO 8601 in UTC. Text cells of the CSV files that begin with =, +, - or @ carry a
leading apostrophe, so that spreadsheet programs do not run them as formulas.
`;

type Call = {
  id: string;
  campaign: string;
  attempt: number;
  dialedAt: string | null;
  answeredAt: string | null;
  endedAt: string | null;
  outcome: string | null;
  ringSeconds: number | null;
  talkSeconds: number | null;
  disposition: string | null;
  notes: string | null;
  recording: boolean;
};

const iso = (value: Date | null) => value?.toISOString() ?? null;
const csvOf = (header: string[], rows: (string | number | boolean | null)[][]) =>
  stringify([header, ...rows.map((row) => row.map((cell) => (typeof cell === 'string' ? neutraliseCell(cell) : cell === null ? '' : String(cell))))], CSV_OUT);

/** Builds the ZIP for the request's subjects. Returns the bytes and the number of files. */
export async function buildBundle(trx: TenantTransaction, crypto: ContactsCrypto, request: RequestRow, controller: string | null): Promise<{ zip: Uint8Array; files: number }> {
  const files: Zippable = {
    'README.txt': strToU8(README),
    'request.json': strToU8(
      JSON.stringify(
        { schema: EXPORT_SCHEMA, reference: request.reference, kind: request.kind, receivedAt: request.received_at.toISOString(), generatedAt: new Date().toISOString(), controller, subjects: request.subject_ids.length },
        null,
        2,
      ),
    ),
  };
  const contacts = await loadContacts(trx, crypto, request.subject_ids);
  const keys = await crypto.keyring.subjectKeys(trx, request.subject_ids);
  for (const subjectId of request.subject_ids) {
    const contact = contacts.get(subjectId);
    if (!contact) continue;
    const key = keys.get(subjectId) ?? null;
    // One round trip per person (Kysely would run them one after another).
    const [lists, consents, attempts, recordings] = await sendTogether(trx, [
      trx
        .selectFrom('contact_list_members')
        .innerJoin('contact_lists', 'contact_lists.id', 'contact_list_members.list_id')
        .select(['contact_lists.name', 'contact_list_members.added_at'])
        .where('contact_list_members.contact_id', '=', subjectId)
        .orderBy('contact_list_members.added_at')
        .compile(),
      trx.selectFrom('consent_events').select(['purpose', 'action', 'basis', 'source', 'occurred_at', 'recorded_at']).where('contact_id', '=', subjectId).orderBy('recorded_at').compile(),
      trx
        .selectFrom('dial_attempts')
        .innerJoin('campaigns', 'campaigns.id', 'dial_attempts.campaign_id')
        .select(['dial_attempts.id', 'campaigns.name as campaign', 'attempt', 'dialed_at', 'answered_at', 'ended_at', 'outcome', 'ring_ms', 'talk_ms', 'disposition', 'notes_ciphertext'])
        .where('dial_attempts.contact_id', '=', subjectId)
        .orderBy('dial_attempts.reserved_at')
        .compile(),
      trx.selectFrom('recordings').select(['attempt_id', 'audio_ciphertext']).where('contact_id', '=', subjectId).where('state', '=', 'saved').compile(),
    ]);
    const recorded = new Set(recordings.map((recording) => recording.attempt_id));
    const calls: Call[] = [];
    for (const attempt of attempts) {
      const notes = attempt.notes_ciphertext && key ? crypto.cipher.decryptForSubject(trx.tenantId, { table: 'dial_attempts', recordId: attempt.id, field: 'notes' }, attempt.notes_ciphertext, key) : null;
      calls.push({
        id: attempt.id,
        campaign: attempt.campaign,
        attempt: attempt.attempt,
        dialedAt: iso(attempt.dialed_at),
        answeredAt: iso(attempt.answered_at),
        endedAt: iso(attempt.ended_at),
        outcome: attempt.outcome,
        ringSeconds: attempt.ring_ms === null ? null : attempt.ring_ms / 1000,
        talkSeconds: attempt.talk_ms === null ? null : attempt.talk_ms / 1000,
        disposition: attempt.disposition,
        notes,
        recording: recorded.has(attempt.id),
      });
    }
    const { data, row } = contact;
    const profile = {
      schema: EXPORT_SCHEMA,
      id: subjectId,
      contact: {
        status: row.status,
        externalId: data.externalId,
        name: data.name,
        phones: data.phones,
        email: data.email,
        address: data.address,
        birthDate: data.birthDate,
        notes: data.notes,
        personalFields: data.personalFields,
        fields: data.fields,
        timeZones: data.timeZones,
        createdAt: row.created_at.toISOString(),
        updatedAt: row.updated_at.toISOString(),
      },
      lists: lists.map((list) => ({ name: list.name, addedAt: list.added_at.toISOString() })),
      consents: consents.map((consent) => ({ purpose: consent.purpose, action: consent.action, basis: consent.basis, source: consent.source, occurredAt: consent.occurred_at.toISOString(), recordedAt: consent.recorded_at.toISOString() })),
      calls,
    };
    const folder = `subjects/${subjectId}`;
    files[`${folder}/profile.json`] = strToU8(JSON.stringify(profile, null, 2));
    files[`${folder}/calls.csv`] = strToU8(
      csvOf(
        ['id', 'campaign', 'attempt', 'dialedAt', 'answeredAt', 'endedAt', 'outcome', 'ringSeconds', 'talkSeconds', 'disposition', 'notes', 'recording'],
        calls.map((call) => [call.id, call.campaign, call.attempt, call.dialedAt, call.answeredAt, call.endedAt, call.outcome, call.ringSeconds, call.talkSeconds, call.disposition, call.notes, call.recording]),
      ),
    );
    files[`${folder}/consents.csv`] = strToU8(
      csvOf(
        ['purpose', 'action', 'basis', 'source', 'occurredAt', 'recordedAt'],
        profile.consents.map((consent) => [consent.purpose, consent.action, consent.basis, consent.source, consent.occurredAt, consent.recordedAt]),
      ),
    );
    for (const recording of recordings) {
      if (!recording.audio_ciphertext || !key) continue;
      files[`${folder}/recordings/${recording.attempt_id}.wav`] = crypto.cipher.decryptBytesForSubject(trx.tenantId, recordingAt(recording.attempt_id), recording.audio_ciphertext, key);
    }
  }
  const zip = zipSync(files, { level: 6, mtime: new Date() });
  return { zip, files: countFiles(files) };
}

function countFiles(files: Zippable): number {
  return Object.keys(files).length;
}

/** A new download token: 32 random bytes, base64url. It is the bundle's key; only its hash is stored. */
export function newDownloadToken(): { token: string; key: Buffer; tokenSha256: Buffer } {
  const key = newKey();
  const token = key.toString('base64url');
  return { token, key, tokenSha256: tokenHash(token) };
}

export function tokenHash(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** The associated data binding a bundle to its tenant and export id. */
const bundleAad = (tenantId: string, exportId: string) => Buffer.from(`${EXPORT_SCHEMA}|${tenantId}|${exportId}`);

/** Seals the bundle under the token's key (the project's AES-256-GCM, src/crypto/aead.ts). */
export function sealBundle(key: Buffer, zip: Uint8Array, tenantId: string, exportId: string): Buffer {
  return seal(key, Buffer.from(zip.buffer, zip.byteOffset, zip.byteLength), bundleAad(tenantId, exportId));
}

export function openBundle(token: string, sealed: Buffer, tenantId: string, exportId: string): Buffer {
  const key = Buffer.from(token, 'base64url');
  if (key.length !== 32) throw new AppError('download_link_invalid');
  try {
    return open(key, sealed, bundleAad(tenantId, exportId));
  } catch (error) {
    if (error instanceof DecryptionError) throw new AppError('download_link_invalid');
    throw error;
  }
}

/** Requires a request whose identity check is done; the bundle is only for what it found. */
export function requireExportable(request: RequestRow): void {
  if (request.kind !== 'access' && request.kind !== 'portability') throw new AppError('invalid_transition', `A ${request.kind} request has no export; access and portability requests do.`);
}
