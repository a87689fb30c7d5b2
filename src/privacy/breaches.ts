import type { Selectable } from '../db/kysely.ts';
import type { BreachesTable, PrivacyProfilesTable } from '../db/schema.ts';
import { AppError } from '../server/errors.ts';

/**
 * The breach register (Art. 33–34): every personal-data breach is recorded, whether notified or
 * not, with the time the organisation became aware of it — the start of the 72 hours within which
 * the supervisory authority is to be told — the decisions with their reasons, and a timeline.
 */

export type BreachRow = Selectable<BreachesTable>;
export const AUTHORITY_DEADLINE_MS = 72 * 3_600_000;

export function deadlineOfBreach(row: BreachRow, now = new Date()): { authorityDueAt: string; hoursLeft: number; overdue: boolean } {
  const due = row.aware_at.getTime() + AUTHORITY_DEADLINE_MS;
  const doneAt = row.authority_notified_at?.getTime() ?? (row.authority_decision === 'not_required' ? row.aware_at.getTime() : undefined);
  return {
    authorityDueAt: new Date(due).toISOString(),
    hoursLeft: Math.floor((due - now.getTime()) / 3_600_000),
    overdue: doneAt === undefined ? now.getTime() > due : doneAt > due,
  };
}

/** Checks a pair of decisions against the facts: each with its reason, and exemptions that apply. */
export function checkDecisions(row: BreachRow, subjects: BreachRow['subjects_decision']): void {
  if (subjects === 'not_required_encrypted' && !row.data_encrypted) {
    throw new AppError('validation_failed', 'The exemption for unintelligible data (Art. 34(3)(a)) needs the breached data to have been encrypted.', [{ path: 'body/subjects/decision', message: 'the data was not encrypted' }]);
  }
}

/** Whether notifying the authority at `at` is late, and so needs the reasons for the delay (Art. 33(1)). */
export function isLate(row: BreachRow, at: Date): boolean {
  return at.getTime() > row.aware_at.getTime() + AUTHORITY_DEADLINE_MS;
}

const list = (values: readonly string[]) => (values.length === 0 ? 'not yet known' : values.join(', '));
const approx = (value: number | null) => (value === null ? 'not yet known' : `about ${value}`);

/**
 * The notification text, filled from the register: to the supervisory authority with the
 * contents Art. 33(3) asks for, or to the people affected in the plain terms of Art. 34(2).
 */
export function notificationText(row: BreachRow, profile: Selectable<PrivacyProfilesTable> | undefined, to: 'authority' | 'subjects'): string {
  const controller = profile?.controller_name ?? '[controller name]';
  const dpo = profile?.dpo_name || profile?.dpo_email ? `${profile.dpo_name ?? ''}${profile.dpo_email ? ` <${profile.dpo_email}>` : ''}`.trim() : '[data protection officer or other contact point]';
  const consequences = row.consequences ?? '[likely consequences]';
  const measures = row.measures ?? '[measures taken or proposed, including to mitigate adverse effects]';
  if (to === 'authority') {
    return [
      `To: ${profile?.supervisory_authority ?? '[supervisory authority]'}`,
      `Subject: Notification of a personal data breach (${row.reference}) under Article 33 GDPR`,
      '',
      `Controller: ${controller}${profile?.controller_address ? `, ${profile.controller_address}` : ''}`,
      `Contact point: ${dpo}`,
      '',
      `Nature of the breach: ${row.title}. ${row.description}`,
      `When it happened: ${row.occurred_at?.toISOString() ?? 'not yet known'}; detected ${row.detected_at.toISOString()}; we became aware ${row.aware_at.toISOString()}.`,
      `Categories of data subjects: ${list(row.subject_categories)}; approximate number: ${approx(row.approx_subjects)}.`,
      `Categories of personal data records: ${list(row.data_categories)}; approximate number: ${approx(row.approx_records)}.`,
      `Data encrypted at rest: ${row.data_encrypted ? 'yes' : 'no'}.`,
      `Likely consequences: ${consequences}`,
      `Measures taken or proposed: ${measures}`,
      ...(row.late_reason ? [`Reasons for notifying after 72 hours: ${row.late_reason}`] : []),
      '',
      'Further information will be provided in phases as it becomes available.',
    ].join('\n');
  }
  return [
    `Subject: Important information about your personal data (${row.reference})`,
    '',
    `We, ${controller}, are writing to tell you about an incident affecting your personal data.`,
    '',
    `What happened: ${row.title}. ${row.description}`,
    `What it may mean for you: ${consequences}`,
    `What we have done: ${measures}`,
    `Who to contact: ${dpo}`,
  ].join('\n');
}
