import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { copyField, forEachCopyRow } from './copy-text.ts';

const rowsOf = async (chunks: Buffer[]) => {
  const rows: string[][] = [];
  const count = await forEachCopyRow(Readable.from(chunks), (fields) => rows.push(fields));
  expect(count).toBe(rows.length);
  return rows;
};

describe('COPY text reader', () => {
  const text = 'one\t\\N\tÆrøy 😀\nsecond row\ta\\tb\\nc\\\\d\t\\r\n';

  it('splits rows and fields, whatever the chunk boundaries (inside a row, inside a UTF-8 sequence)', async () => {
    const bytes = Buffer.from(text, 'utf8');
    const expected = [
      ['one', '\\N', 'Ærøy 😀'],
      ['second row', 'a\\tb\\nc\\\\d', '\\r'],
    ];
    expect(await rowsOf([bytes])).toEqual(expected);
    for (let cut = 1; cut < bytes.length; cut += 1) {
      expect(await rowsOf([bytes.subarray(0, cut), bytes.subarray(cut)]), `cut at byte ${cut}`).toEqual(expected);
    }
    expect(await rowsOf([...bytes].map((byte) => Buffer.from([byte])))).toEqual(expected);
  });

  it('refuses output that ends inside a row', async () => {
    await expect(rowsOf([Buffer.from('complete\nincompl')])).rejects.toThrow(/inside a row/);
  });

  it('undoes the escapes COPY TO writes, reads \\N as NULL, and refuses byte escapes', () => {
    expect(copyField('\\N')).toBeNull();
    expect(copyField('plain')).toBe('plain');
    expect(copyField('a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh')).toBe('a\tb\nc\rd\\e\bf\fg\vh');
    expect(copyField('\\\\N')).toBe('\\N');
    expect(copyField('\\q')).toBe('q');
    expect(() => copyField('\\101')).toThrow(/byte escape/);
    expect(() => copyField('\\x41')).toThrow(/byte escape/);
  });
});
