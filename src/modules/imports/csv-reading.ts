import { parse, type Parser } from '../../csv.ts';

/**
 * How imports read CSV: UTF-8 with or without a byte-order mark, `,` or `;` (detected from the
 * header row unless given), RFC 4180 quoting, records of at most 64 KiB. Row numbers count records
 * as a spreadsheet shows them: the header is row 1.
 */
export const MAX_RECORD_CHARS = 64 * 1024;

export function detectDelimiter(headerLine: string): ',' | ';' {
  let commas = 0;
  let semicolons = 0;
  let quoted = false;
  for (const char of headerLine) {
    if (char === '"') quoted = !quoted;
    else if (!quoted && char === ',') commas += 1;
    else if (!quoted && char === ';') semicolons += 1;
  }
  return semicolons > commas ? ';' : ',';
}

/**
 * A parser that emits each record as its cells. No `info` per record: it costs an object and
 * several fields per row, and the row number is simply the records counted (empty lines skipped).
 */
export function csvParser(delimiter: ',' | ';'): Parser {
  return parse({ bom: true, delimiter, relax_column_count: true, max_record_size: MAX_RECORD_CHARS, skip_empty_lines: true });
}

export type CsvRecord = string[];

/**
 * A parser error as a sentence for the uploader. csv-parse's own messages can quote cell values,
 * so they are never passed on: only the kind and the line.
 */
export function describeCsvError(error: unknown): string {
  const { code, lines } = error as { code?: string; lines?: number };
  const where = typeof lines === 'number' ? ` (line ${lines})` : '';
  switch (code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return `A quoted field is never closed${where}.`;
    case 'CSV_MAX_RECORD_SIZE':
      return `A row is longer than ${MAX_RECORD_CHARS / 1024} KiB${where}.`;
    case 'CSV_INVALID_CLOSING_QUOTE':
    case 'INVALID_OPENING_QUOTE':
    case 'CSV_INVALID_OPENING_QUOTE':
      return `A quote is misplaced${where}.`;
    default:
      return `The file cannot be read as CSV${where}.`;
  }
}

export function isCsvParseError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('CSV_') || code === 'INVALID_OPENING_QUOTE');
}
