import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyProof,
  EMPTY_TREE_HASH,
  inclusionProof,
  leafHash,
  leafHashOfText,
  nodeHash,
  packedHash,
  packedSource,
  packedSubtrees,
  rootFromInclusionProof,
  splitPoint,
  treeHash,
  verifyConsistency,
} from './merkle.ts';

/** The definition of RFC 9162 §2.1.1, written as plainly as possible, to check the fast code against. */
function naiveRoot(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  if (leaves.length === 1) return leafHash(leaves[0]!);
  const k = splitPoint(leaves.length);
  return nodeHash(naiveRoot(leaves.slice(0, k)), naiveRoot(leaves.slice(k)));
}

const leavesOf = (n: number) => Array.from({ length: n }, (_, index) => Buffer.from(`event ${index}`));
const sourceFor = (leaves: Buffer[]) => packedSource(packedSubtrees(Buffer.concat(leaves.map(leafHash)), leaves.length));

describe('RFC 9162 Merkle trees', () => {
  it('hashes a leaf given as text exactly as its UTF-8 bytes (property-based)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const bytes = Buffer.from(text, 'utf8');
        expect(leafHashOfText(text).equals(leafHash(bytes))).toBe(true);
        expect(leafHash(bytes).equals(createHash('sha256').update(Buffer.concat([Buffer.from([0]), bytes])).digest())).toBe(true);
      }),
    );
  });

  it('holds, at every level, the hash of the two subtrees below', () => {
    for (const n of [1, 2, 3, 7, 8, 33, 64, 100]) {
      const packed = packedSubtrees(Buffer.concat(leavesOf(n).map(leafHash)), n);
      for (let level = 1; level < packed.length; level += 1) {
        for (let index = 0; packedHash(packed, level, index); index += 1) {
          const expected = nodeHash(packedHash(packed, level - 1, 2 * index)!, packedHash(packed, level - 1, 2 * index + 1)!);
          expect(packedHash(packed, level, index)!.equals(expected), `n=${n} level=${level} index=${index}`).toBe(true);
        }
      }
    }
  });

  it('computes the tree head of the RFC definition for every size', async () => {
    expect(await treeHash(sourceFor([]), 0)).toEqual(EMPTY_TREE_HASH);
    for (let n = 1; n <= 70; n += 1) {
      const leaves = leavesOf(n);
      expect((await treeHash(sourceFor(leaves), n)).equals(naiveRoot(leaves)), `n=${n}`).toBe(true);
    }
  });

  it('inclusion proofs verify for every leaf and fail when anything is changed (property-based)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 0, max: n - 1 }))), async ([n, index]) => {
        const leaves = leavesOf(n);
        const source = sourceFor(leaves);
        const root = await treeHash(source, n);
        const proof = await inclusionProof(source, index, n);
        expect(rootFromInclusionProof(index, n, leafHash(leaves[index]!), proof).equals(root)).toBe(true);
        expect(rootFromInclusionProof(index, n, leafHash(Buffer.from('forged')), proof).equals(root)).toBe(false);
        if (proof.length > 0) {
          const altered = proof.map((hash, at) => (at === 0 ? nodeHash(hash, hash) : hash));
          expect(rootFromInclusionProof(index, n, leafHash(leaves[index]!), altered).equals(root)).toBe(false);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('consistency proofs verify between every pair of sizes and fail for a rewritten history (property-based)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n))), async ([m, n]) => {
        const leaves = leavesOf(n);
        const source = sourceFor(leaves);
        const oldRoot = await treeHash(source, m);
        const newRoot = await treeHash(source, n);
        const proof = await consistencyProof(source, m, n);
        expect(verifyConsistency(m, n, oldRoot, newRoot, proof)).toBe(true);
        const rewritten = [...leaves];
        rewritten[Math.floor(m / 2)] = Buffer.from('rewritten');
        const forgedOld = naiveRoot(rewritten.slice(0, m));
        expect(verifyConsistency(m, n, forgedOld, newRoot, proof)).toBe(false);
      }),
      { numRuns: 150 },
    );
  });
});
