import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { TenantDb, TenantTransaction } from '../../db/tenant-db.ts';
import { AppError } from '../../server/errors.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { csvParser, describeCsvError, detectDelimiter, type CsvRecord } from './csv-reading.ts';
import { planColumns } from './import-mapping.ts';
import { mappingSchema } from './mapping-schema.ts';

/**
 * Receives an import's file: stored only as encrypted chunks (tenant data key) while it is checked
 * in the same pass — UTF-8, CSV structure, header row against the mapping, row count. A file that
 * fails any check is refused whole with one clear error, and nothing of it stays stored (the
 * chunks are written in the transaction that fails). One chunk is stored while the next is read
 * and checked: memory holds two chunks and one record.
 */
export const CHUNK_BYTES = 1024 * 1024;
export const MAX_FILE_BYTES = 2 * 1024 ** 3;

export const chunkAt = (importId: string, seq: number) => ({ table: 'contact_import_chunks', recordId: importId, field: `chunk.${seq}` });

export type UploadResult = { fileBytes: number; fileRows: number; delimiter: ',' | ';'; sha256: string };

export async function storeUpload(tenantDb: TenantDb, cipher: FieldCipher, importId: string, source: Readable): Promise<UploadResult> {
  return tenantDb.transaction(async (trx) => {
    const job = await trx.selectFrom('contact_imports').select(['state', 'mapping', 'options', 'delimiter']).where('id', '=', importId).forUpdate().executeTakeFirst();
    if (!job) throw new AppError('not_found');
    if (job.state !== 'awaiting_file') throw new AppError('conflict', 'This import already has its file.');
    const mapping = mappingSchema.parse(job.mapping);
    const chosenDelimiter = (job.options as { delimiter?: ',' | ';' }).delimiter;

    const hash = createHash('sha256');
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let pendingBytes: Buffer[] = [];
    let pendingLength = 0;
    let seq = 0;
    let fileBytes = 0;
    let headerText = '';
    let parser: ReturnType<typeof csvParser> | undefined;
    let delimiter: ',' | ';' = chosenDelimiter ?? ',';
    let records = 0;
    let failure: AppError | undefined;

    let storing: Promise<void> = Promise.resolve();
    const flushChunk = async () => {
      if (pendingLength === 0) return;
      const chunk = Buffer.concat(pendingBytes, pendingLength);
      pendingBytes = [];
      pendingLength = 0;
      await storing;
      storing = storeChunk(trx, cipher, importId, seq, chunk);
      // Taken up by the next flush, or before the transaction ends, whichever comes first.
      storing.catch(() => undefined);
      seq += 1;
    };

    const startParser = (firstLine: string) => {
      delimiter = chosenDelimiter ?? detectDelimiter(firstLine.replace(/^\uFEFF/, ''));
      const started = csvParser(delimiter);
      started.on('data', (row: CsvRecord) => {
        records += 1;
        if (records === 1) {
          const plan = planColumns(row, mapping);
          if ('problem' in plan) failure ??= new AppError('csv_headers', plan.problem);
        }
      });
      started.on('error', (error) => {
        failure ??= new AppError('csv_invalid', describeCsvError(error));
      });
      return started;
    };

    const feed = (text: string) => {
      if (text.includes('\u0000')) failure ??= new AppError('csv_invalid', 'The file holds binary data: it is not a CSV file.');
      if (failure) return;
      if (!parser) {
        headerText += text;
        const newline = headerText.indexOf('\n');
        if (newline < 0 && headerText.length < 64 * 1024) return;
        parser = startParser(newline < 0 ? headerText : headerText.slice(0, newline));
        text = headerText;
        headerText = '';
      }
      parser.write(text);
    };

    try {
      for await (const raw of source) {
        const chunk = raw as Buffer;
        fileBytes += chunk.length;
        if (fileBytes > MAX_FILE_BYTES) throw new AppError('payload_too_large', 'An import file may be at most 2 GiB.');
        hash.update(chunk);
        pendingBytes.push(chunk);
        pendingLength += chunk.length;
        let text: string;
        try {
          text = decoder.decode(chunk, { stream: true });
        } catch {
          throw new AppError('csv_encoding', 'The file is not UTF-8 text: save it as "CSV UTF-8" and upload it again.');
        }
        feed(text);
        if (failure) throw failure;
        if (pendingLength >= CHUNK_BYTES) await flushChunk();
      }
      try {
        feed(decoder.decode());
      } catch {
        throw new AppError('csv_encoding', 'The file is not UTF-8 text: save it as "CSV UTF-8" and upload it again.');
      }
      if (!parser && headerText.length > 0) {
        parser = startParser(headerText);
        parser.write(headerText);
      }
      if (failure) throw failure;
      // A parser that failed mid-file has already emitted its error and will never end.
      if (parser && !parser.destroyed) {
        const ending = parser;
        await new Promise<void>((resolve) => {
          ending.once('end', resolve);
          ending.once('error', () => resolve());
          ending.once('close', resolve);
          ending.end();
        });
      }
      if (failure) throw failure;
      if (records === 0) throw new AppError('csv_invalid', 'The file is empty.');
      if (records === 1) throw new AppError('csv_invalid', 'The file has a header row but no rows.');
      await flushChunk();
      await storing;
      const sha256 = hash.digest();
      await trx
        .updateTable('contact_imports')
        .set({ state: 'queued', file_bytes: fileBytes, file_rows: records - 1, file_sha256: sha256, delimiter })
        .where('id', '=', importId)
        .execute();
      return { fileBytes, fileRows: records - 1, delimiter, sha256: sha256.toString('hex') };
    } finally {
      // No statement of this transaction may still be in flight when it commits or rolls back.
      await storing.catch(() => undefined);
    }
  });
}

async function storeChunk(trx: TenantTransaction, cipher: FieldCipher, importId: string, seq: number, chunk: Buffer): Promise<void> {
  await trx
    .insertInto('contact_import_chunks')
    .values({ import_id: importId, seq, ciphertext: await cipher.encryptBytes(trx, chunkAt(importId, seq), chunk) })
    .execute();
}
