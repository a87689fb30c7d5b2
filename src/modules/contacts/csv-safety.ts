/**
 * CSV formula injection (OWASP): a spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a
 * tab or a carriage return as a formula. Every cell Ringvakt writes to a CSV file goes through
 * this: such a cell gets a leading apostrophe, which spreadsheets show as text and do not run.
 * (A phone number in E.164 starts with `+` and is neutralised too: the apostrophe is the price.)
 */
const FORMULA_START = /^[=+\-@\t\r]/;

export function neutraliseCell(value: string): string {
  return FORMULA_START.test(value) ? `'${value}` : value;
}

/**
 * How every CSV file Ringvakt writes is quoted: every cell. A spreadsheet that splits on `;` (the
 * list separator of Nordic and most European locales) would otherwise split an unquoted cell
 * `a;=cmd` into a second cell that starts a formula, past the neutralisation above.
 */
export const CSV_OUT = { quoted: true, quoted_empty: true, record_delimiter: 'unix' } as const;
