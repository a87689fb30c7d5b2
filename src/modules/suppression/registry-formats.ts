import type { Readable } from 'node:stream';
import type { RegistryFormat } from '../../db/schema.ts';
import { normalisePhone } from '../contacts/phone.ts';

/**
 * National do-not-call registry files, as the registries hand them out (ARCHITECTURE.md lists
 * them). Each line holds one number; blank lines and lines starting with `#` are skipped; a header
 * line whose first field has no digit is skipped too. Numbers are normalised to E.164 with the
 * registry's country, so they match contacts however the contact's number was written.
 *
 * - `no_reservasjon` — Norway, Brønnøysundregistrene's Reservasjonsregisteret extract: an 8-digit
 *   national number first on the line (`;` or `,` may follow with other columns).
 * - `uk_tps` — United Kingdom, TPS/CTPS data file: a national number with its leading 0
 *   (`01632960000`), one per line.
 * - `us_dnc` — United States, National Do Not Call Registry download: `area code,number`
 *   (`201,5550123`), or ten digits.
 * - `e164_list` — any country: one number per line in international form (`+4791234567`).
 */
export const registryFormats: Record<RegistryFormat, { region: string; label: string }> = {
  no_reservasjon: { region: 'NO', label: 'Reservasjonsregisteret (Norway)' },
  uk_tps: { region: 'GB', label: 'Telephone Preference Service (United Kingdom)' },
  us_dnc: { region: 'US', label: 'National Do Not Call Registry (United States)' },
  e164_list: { region: 'ZZ', label: 'E.164 list (any country)' },
};

export type ParsedLine = { kind: 'number'; e164: string } | { kind: 'skip' } | { kind: 'reject' };

export function parseRegistryLine(format: RegistryFormat, raw: string): ParsedLine {
  const line = raw.trim();
  if (line === '' || line.startsWith('#')) return { kind: 'skip' };
  const fields = line.split(/[;,\t]/).map((field) => field.trim().replace(/^"|"$/g, ''));
  const first = fields[0] ?? '';
  let candidate: string;
  switch (format) {
    case 'us_dnc':
      candidate = fields.length >= 2 && /^\d{3}$/.test(first) ? `+1${first}${fields[1] ?? ''}` : first.length === 10 ? `+1${first}` : first;
      break;
    case 'e164_list':
      candidate = first;
      if (/^\d/.test(candidate) && !candidate.startsWith('00')) return { kind: 'reject' };
      break;
    default:
      candidate = first;
  }
  if (!/\d/.test(candidate)) return { kind: 'skip' };
  const normalised = normalisePhone(candidate, registryFormats[format].region);
  if (typeof normalised === 'string') return { kind: 'reject' };
  return { kind: 'number', e164: normalised.e164 };
}

export class RegistryFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryFileError';
  }
}

/**
 * Numbers of a registry file in batches, read as a stream (memory bounded by one batch). Counts the
 * rejected lines into `stats`. A line over 200 bytes or bytes that are not UTF-8 end the read with
 * RegistryFileError: the file is not the format named.
 */
export async function* registryBatches(source: Readable, format: RegistryFormat, stats: { rejected: number; lines: number }, batchSize = 5000): AsyncGenerator<string[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  let batch: string[] = [];
  const take = (line: string) => {
    stats.lines += 1;
    const parsed = parseRegistryLine(format, line);
    if (parsed.kind === 'number') batch.push(parsed.e164);
    else if (parsed.kind === 'reject') stats.rejected += 1;
  };
  for await (const chunk of source) {
    let text: string;
    try {
      text = decoder.decode(chunk as Buffer, { stream: true });
    } catch {
      throw new RegistryFileError('The file is not UTF-8 text.');
    }
    pending += text;
    const lines = pending.split(/\r?\n/);
    pending = lines.pop() ?? '';
    if (pending.length > 200) throw new RegistryFileError(`Line ${stats.lines + lines.length + 1} is longer than a registry line can be.`);
    for (const line of lines) {
      if (line.length > 200) throw new RegistryFileError(`Line ${stats.lines + 1} is longer than a registry line can be.`);
      take(line);
    }
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  try {
    pending += decoder.decode();
  } catch {
    throw new RegistryFileError('The file is not UTF-8 text.');
  }
  if (pending.length > 0) take(pending);
  if (batch.length > 0) yield batch;
}
