import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { verifyTreeHead } from './signing-key.ts';
import { retentionFromWitness, verifyRetentionRecord } from './retention.ts';

/**
 * An outside witness of the audit ledger: every signed checkpoint is appended to a file that the
 * operator ships off the database host (to WORM storage, another team, a log service). Each line
 * carries the public key, so the witness can be checked without Ringvakt's database — and
 * `audit verify --witness <file>` checks the database against it: a history rewritten together
 * with its checkpoints and signing keys inside the database still disagrees with the witness.
 */
export type WitnessedCheckpoint = {
  tenantId: string;
  treeSize: number;
  rootHash: string;
  signedAt: string;
  signingKeyId: string;
  /** Ed25519 public key, DER SubjectPublicKeyInfo, base64. */
  publicKey: string;
  /** Ed25519 signature over the checkpoint message (signing-key.ts), base64. */
  signature: string;
};

/**
 * A retention record (retention.ts) as the witness receives it: when events were removed, up to
 * which leaf, why and by whom — so removals are known outside the database too.
 */
export type WitnessedRetention = {
  type: 'retention';
  tenantId: string;
  prunedBeforeLeaf: number;
  rootHash: string;
  cutoff: string;
  reason: string;
  executedAt: string;
  executedBy: string;
  signingKeyId: string;
  publicKey: string;
  signature: string;
};

export type WitnessEntry = WitnessedCheckpoint | WitnessedRetention;

export const isRetention = (entry: WitnessEntry): entry is WitnessedRetention => (entry as { type?: unknown }).type === 'retention';

export function appendToWitness(file: string, entry: WitnessEntry): void {
  appendFileSync(file, JSON.stringify(entry) + '\n', { mode: 0o640 });
}

function readWitnessEntries(file: string): WitnessEntry[] {
  if (!existsSync(file)) throw new Error(`The witness file ${file} does not exist`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, index) => {
      try {
        return JSON.parse(line) as WitnessEntry;
      } catch {
        throw new Error(`Line ${index + 1} of the witness file is not JSON`);
      }
    });
}

/** The checkpoints a witness file holds. */
export function readWitness(file: string): WitnessedCheckpoint[] {
  return readWitnessEntries(file).filter((entry): entry is WitnessedCheckpoint => !isRetention(entry));
}

/** The retention records a witness file holds. */
export function readWitnessRetentions(file: string): WitnessedRetention[] {
  return readWitnessEntries(file).filter(isRetention);
}

/** Checks the signatures of the retention records a witness holds; a problem, or undefined. */
export function checkWitnessedRetentions(entries: WitnessedRetention[]): string | undefined {
  for (const entry of entries) {
    const key = createPublicKey({ key: Buffer.from(entry.publicKey, 'base64'), format: 'der', type: 'spki' });
    if (!verifyRetentionRecord(key, retentionFromWitness(entry), Buffer.from(entry.signature, 'base64'))) {
      return `the witness's retention record up to leaf ${entry.prunedBeforeLeaf} has an invalid signature`;
    }
  }
  return undefined;
}

/** Checks the witness's own signatures; returns a problem, or undefined when all are valid. */
export function checkWitnessSignatures(entries: WitnessedCheckpoint[]): string | undefined {
  const keys = new Map<string, KeyObject>();
  for (const entry of entries) {
    const key = keys.get(entry.publicKey) ?? createPublicKey({ key: Buffer.from(entry.publicKey, 'base64'), format: 'der', type: 'spki' });
    keys.set(entry.publicKey, key);
    const head = { tenantId: entry.tenantId, treeSize: entry.treeSize, rootHash: Buffer.from(entry.rootHash, 'hex'), signedAt: new Date(entry.signedAt) };
    if (!verifyTreeHead(key, head, Buffer.from(entry.signature, 'base64'))) {
      return `the witness entry for size ${entry.treeSize} has an invalid signature`;
    }
  }
  return undefined;
}
