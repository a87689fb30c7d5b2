import type { PhoneKind } from '../../db/schema.ts';
import type { Address, ContactInput, CustomValue } from '../contacts/contact-record.ts';
import type { Mapping } from './mapping-schema.ts';

/**
 * A mapping (mapping-schema.ts) applied to a file: its columns found in the header row, and each
 * record turned into contact input. No schema library here: the import's sealing thread loads this.
 */

/** The mapping resolved against the header row: column positions per target. */
export type ColumnPlan = {
  columns: { index: number; header: string; target: string }[];
};

export function planColumns(headers: readonly string[], mapping: Mapping): ColumnPlan | { problem: string } {
  const seen = new Set<string>();
  for (const [position, header] of headers.entries()) {
    if (header.trim() === '') return { problem: `Column ${position + 1} has no header.` };
    if (seen.has(header)) return { problem: `The header "${truncate(header)}" appears more than once.` };
    seen.add(header);
  }
  const columns = [];
  for (const [header, target] of Object.entries(mapping)) {
    const index = headers.indexOf(header);
    if (index < 0) return { problem: `The mapped column "${truncate(header)}" is not in the header row.` };
    if (target !== 'ignore') columns.push({ index, header, target });
  }
  // The file's column order, not the mapping's: a stored mapping (jsonb) keeps no key order, and
  // phone numbers take their positions from the columns they came from.
  columns.sort((left, right) => left.index - right.index);
  return { columns };
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

const isPhoneTarget = (target: string) => target === 'phone' || target.startsWith('phone:');

/** One CSV record → contact input, by the plan. Empty cells are absent values. */
export function rowToInput(record: readonly string[], plan: ColumnPlan): ContactInput {
  const input: ContactInput = {};
  let phones: { kind: PhoneKind; number: string }[] | undefined;
  let address: Address | undefined;
  let fields: Record<string, CustomValue> | undefined;
  for (const column of plan.columns) {
    const cell = (record[column.index] ?? '').trim();
    if (cell === '') continue;
    const target = column.target;
    if (isPhoneTarget(target)) {
      (phones ??= []).push({ kind: (target === 'phone' ? 'mobile' : target.slice(6)) as PhoneKind, number: cell });
    } else if (target.startsWith('address.')) {
      (address ??= {})[target.slice(8) as keyof Address] = cell;
    } else if (target.startsWith('field:')) {
      (fields ??= {})[target.slice(6)] = cell;
    } else {
      (input as Record<string, string>)[target] = cell;
    }
  }
  if (phones) input.phones = phones;
  if (address) input.address = address;
  if (fields) input.fields = fields;
  return input;
}

/**
 * The header of the column a problem of this record is about (`where` as normaliseContact and
 * cellProblem name it: `name`, `phones[1]`, `address.city`, `fields.segment`…), or null. Worked
 * out only for a rejected row: `phones[i]` is the i-th phone column with a value in this record.
 */
export function columnOf(record: readonly string[], plan: ColumnPlan, where: string): string | null {
  const filled = plan.columns.filter((column) => (record[column.index] ?? '').trim() !== '');
  const phone = /^phones\[(\d+)\]$/.exec(where);
  if (phone) return filled.filter((column) => isPhoneTarget(column.target))[Number(phone[1])]?.header ?? null;
  const target = where.startsWith('fields.') ? `field:${where.slice(7)}` : where;
  const exact = filled.find((column) => column.target === target);
  if (exact) return exact.header;
  // A problem with the address as a whole: the last address column with a value.
  if (where.split('.')[0] === 'address') return filled.findLast((column) => column.target.startsWith('address.'))?.header ?? null;
  return null;
}

/** Limits of what one cell may hold, checked before normalisation (the API schema's limits). */
export function cellProblem(input: ContactInput): { where: string; reason: string } | undefined {
  if (input.name && input.name.length > 200) return { where: 'name', reason: 'longer than 200 characters' };
  if (input.externalId && input.externalId.length > 200) return { where: 'externalId', reason: 'longer than 200 characters' };
  if (input.email && input.email.length > 254) return { where: 'email', reason: 'longer than 254 characters' };
  if (input.notes && input.notes.length > 4000) return { where: 'notes', reason: 'longer than 4,000 characters' };
  if (input.timeZone && input.timeZone.length > 64) return { where: 'timeZone', reason: 'not an IANA time zone' };
  for (const [key, value] of Object.entries(input.address ?? {})) {
    if (typeof value === 'string' && value.length > 200) return { where: `address.${key}`, reason: 'longer than 200 characters' };
  }
  return undefined;
}
