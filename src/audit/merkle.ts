import { createHash, hash } from 'node:crypto';

/**
 * Merkle trees as RFC 9162 (Certificate Transparency 2.0) §2.1 defines them:
 *   leaf hash  = SHA-256(0x00 ‖ leaf)
 *   node hash  = SHA-256(0x01 ‖ left ‖ right)
 *   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])) with k the largest power of two below n.
 * Inclusion proofs (§2.1.3) and consistency proofs (§2.1.4) are computed from a `SubtreeSource`
 * that answers the hash of any *perfect* subtree — level `level`, index `index`, covering leaves
 * [index·2^level, (index+1)·2^level) — so a proof at a million leaves costs about 40 lookups.
 */
export type Hash = Buffer;

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

export function leafHash(leaf: Buffer): Hash {
  return createHash('sha256').update(LEAF_PREFIX).update(leaf).digest();
}

/**
 * The leaf hash of a leaf given as text (its UTF-8 bytes are the leaf): one-shot hashing of
 * "\u0000" + text, which is byte for byte 0x00 ‖ UTF-8(text) — no Buffer and no Hash object per
 * leaf, which is most of the cost when verify recomputes a million of them.
 */
export function leafHashOfText(text: string): Hash {
  return hash('sha256', `\u0000${text}`, 'buffer') as unknown as Hash;
}

/** leafHashOfText as 64 hex digits: the cheapest form of a one-shot hash (no Buffer made). */
export function leafHashHexOfText(text: string): string {
  return hash('sha256', `\u0000${text}`, 'hex');
}

export function nodeHash(left: Hash, right: Hash): Hash {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

export const EMPTY_TREE_HASH: Hash = createHash('sha256').digest();

/** The largest power of two strictly below n (n ≥ 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Answers the hash of the perfect subtree at (level, index); level 0 is a leaf hash. */
export type SubtreeSource = (level: number, index: number) => Hash | Promise<Hash>;

const isPowerOfTwo = (n: number) => n > 0 && Number.isInteger(Math.log2(n));

/** MTH of leaves [start, end), from perfect subtrees. */
export async function rangeHash(source: SubtreeSource, start: number, end: number): Promise<Hash> {
  const size = end - start;
  if (size === 0) return EMPTY_TREE_HASH;
  if (isPowerOfTwo(size) && start % size === 0) return source(Math.log2(size), start / size);
  const k = splitPoint(size);
  return nodeHash(await rangeHash(source, start, start + k), await rangeHash(source, start + k, end));
}

export function treeHash(source: SubtreeSource, size: number): Promise<Hash> {
  return rangeHash(source, 0, size);
}

/** RFC 9162 §2.1.3.1: the audit path of leaf `index` in the tree of the first `size` leaves. */
export async function inclusionProof(source: SubtreeSource, index: number, size: number): Promise<Hash[]> {
  if (!(index >= 0 && index < size)) throw new RangeError('leaf index outside the tree');
  const path = async (m: number, start: number, end: number): Promise<Hash[]> => {
    const n = end - start;
    if (n === 1) return [];
    const k = splitPoint(n);
    return m < k
      ? [...(await path(m, start, start + k)), await rangeHash(source, start + k, end)]
      : [...(await path(m - k, start + k, end)), await rangeHash(source, start, start + k)];
  };
  return path(index, 0, size);
}

/** RFC 9162 §2.1.3.2: recomputes the root from a leaf hash and its audit path. */
export function rootFromInclusionProof(index: number, size: number, leaf: Hash, proof: Hash[]): Hash {
  if (!(index >= 0 && index < size)) throw new RangeError('leaf index outside the tree');
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error('inclusion proof too long');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('inclusion proof too short');
  return r;
}

/** RFC 9162 §2.1.4.1: the proof that the tree of `oldSize` leaves is a prefix of the one of `newSize`. */
export async function consistencyProof(source: SubtreeSource, oldSize: number, newSize: number): Promise<Hash[]> {
  if (!(oldSize > 0 && oldSize <= newSize)) throw new RangeError('sizes must satisfy 0 < old ≤ new');
  const subproof = async (m: number, start: number, end: number, complete: boolean): Promise<Hash[]> => {
    const n = end - start;
    if (m === n) return complete ? [] : [await rangeHash(source, start, end)];
    const k = splitPoint(n);
    return m <= k
      ? [...(await subproof(m, start, start + k, complete)), await rangeHash(source, start + k, end)]
      : [...(await subproof(m - k, start + k, end, false)), await rangeHash(source, start, start + k)];
  };
  return subproof(oldSize, 0, newSize, true);
}

/** RFC 9162 §2.1.4.2: checks a consistency proof between two tree heads. */
export function verifyConsistency(oldSize: number, newSize: number, oldRoot: Hash, newRoot: Hash, proof: Hash[]): boolean {
  if (!(oldSize > 0 && oldSize <= newSize)) return false;
  if (oldSize === newSize) return proof.length === 0 && oldRoot.equals(newRoot);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : proof;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  const [first, ...rest] = path as [Hash, ...Hash[]];
  let fr = first;
  let sr = first;
  for (const c of rest) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(oldRoot) && sr.equals(newRoot);
}

/**
 * Every perfect subtree hash over `count` leaf hashes, level by level — what the sealer stores and
 * what `audit verify` recomputes. Level l is one Buffer of 32-byte hashes: for a ledger of
 * millions of leaves that is a few objects instead of millions of small long-lived Buffers.
 */
export type PackedLevels = Buffer[];

export function packedSubtrees(leaves: Buffer, count: number): PackedLevels {
  const levels: PackedLevels = [leaves.subarray(0, count * 32)];
  let below = levels[0] as Buffer;
  let width = count;
  while (width > 1) {
    const pairs = Math.floor(width / 2);
    const above = Buffer.allocUnsafe(pairs * 32);
    // 0x01 ‖ left ‖ right in one reused buffer, hashed one-shot.
    const pair = Buffer.allocUnsafe(65);
    pair[0] = 0x01;
    for (let index = 0; index < pairs; index += 1) {
      below.copy(pair, 1, index * 64, index * 64 + 64);
      above.write(hash('sha256', pair, 'hex'), index * 32, 32, 'hex');
    }
    levels.push(above);
    below = above;
    width = pairs;
  }
  return levels;
}

/** Buffers for every level of a tree of `count` leaves, shared between threads. */
export function sharedLevels(count: number): SharedArrayBuffer[] {
  const levels: SharedArrayBuffer[] = [];
  for (let width = count; levels.length === 0 || width >= 1; width = Math.floor(width / 2)) {
    levels.push(new SharedArrayBuffer(width * 32));
    if (width <= 1) break;
  }
  return levels;
}

/**
 * Hashes, bottom-up, the nodes of `levels` (level 0 given) that `include` names — the worker
 * threads of `audit verify` each take the subtrees inside their range of leaves, the main thread
 * the few across ranges. One-shot hashing of 0x01 ‖ left ‖ right.
 */
export function fillSubtrees(levels: Buffer[], include: (level: number, index: number) => boolean): void {
  const pair = Buffer.allocUnsafe(65);
  pair[0] = 0x01;
  for (let level = 1; level < levels.length; level += 1) {
    const below = levels[level - 1] as Buffer;
    const above = levels[level] as Buffer;
    const width = above.length / 32;
    for (let index = 0; index < width; index += 1) {
      if (!include(level, index)) continue;
      below.copy(pair, 1, index * 64, index * 64 + 64);
      above.write(hash('sha256', pair, 'hex'), index * 32, 32, 'hex');
    }
  }
}

/** Whether the perfect subtree (level, index) covers only leaves in [from, to). */
export function subtreeWithin(level: number, index: number, from: number, to: number): boolean {
  const span = 2 ** level;
  return index * span >= from && (index + 1) * span <= to;
}

export function packedHash(levels: PackedLevels, level: number, index: number): Hash | undefined {
  const packed = levels[level];
  if (!packed || (index + 1) * 32 > packed.length || index < 0) return undefined;
  return packed.subarray(index * 32, index * 32 + 32);
}

export function packedSource(levels: PackedLevels): SubtreeSource {
  return (level, index) => {
    const hash = packedHash(levels, level, index);
    if (!hash) throw new RangeError(`no perfect subtree at level ${level}, index ${index}`);
    return hash;
  };
}
