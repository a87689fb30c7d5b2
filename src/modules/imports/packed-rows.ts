import type { SourceRow } from './prepare-batch.ts';

/**
 * A batch's rows as they travel to a sealing thread: every cell's text in one string, cut by the
 * cells' lengths (so a cell may hold any character), with each row's number and cell count.
 * Cloned as thousands of small arrays and strings, a batch cost both threads a deserialisation
 * per object, and in the sealing thread all of them stayed alive — and were copied by every young
 * collection — until its last row was sealed. Unpacked one row at a time, each row's objects die
 * young; the one long string is never copied by those collections.
 */
export type PackedRows = { text: string; rowNumbers: Int32Array<ArrayBuffer>; cellCounts: Int32Array<ArrayBuffer>; cellLengths: Int32Array<ArrayBuffer> };

/** The rows of a batch, read one at a time, in order. */
export type BatchRows = { readonly count: number; next(): SourceRow };

export function packRows(rows: readonly SourceRow[]): PackedRows {
  let cells = 0;
  for (const row of rows) cells += row.record.length;
  const rowNumbers = new Int32Array(rows.length);
  const cellCounts = new Int32Array(rows.length);
  const cellLengths = new Int32Array(cells);
  const texts = new Array<string>(cells);
  let cell = 0;
  for (let index = 0; index < rows.length; index += 1) {
    const { rowNumber, record } = rows[index] as SourceRow;
    rowNumbers[index] = rowNumber;
    cellCounts[index] = record.length;
    for (const text of record) {
      texts[cell] = text;
      cellLengths[cell] = text.length;
      cell += 1;
    }
  }
  return { text: texts.join(''), rowNumbers, cellCounts, cellLengths };
}

export function unpackRows(packed: PackedRows): BatchRows {
  let row = 0;
  let cell = 0;
  let offset = 0;
  return {
    count: packed.rowNumbers.length,
    next() {
      if (row >= packed.rowNumbers.length) throw new RangeError('no rows left in the batch');
      const cells = packed.cellCounts[row] as number;
      const record = new Array<string>(cells);
      for (let at = 0; at < cells; at += 1) {
        const length = packed.cellLengths[cell] as number;
        record[at] = packed.text.slice(offset, offset + length);
        offset += length;
        cell += 1;
      }
      const rowNumber = packed.rowNumbers[row] as number;
      row += 1;
      return { rowNumber, record };
    },
  };
}

/** Rows at hand, read as a batch's rows are. */
export function rowsOf(rows: readonly SourceRow[]): BatchRows {
  let row = 0;
  return {
    count: rows.length,
    next: () => {
      const next = rows[row];
      if (next === undefined) throw new RangeError('no rows left in the batch');
      row += 1;
      return next;
    },
  };
}
