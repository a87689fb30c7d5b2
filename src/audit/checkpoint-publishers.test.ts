import { describe, expect, it } from 'vitest';
import { createLogger } from '../logger.ts';
import { networkWitness } from './checkpoint-publishers.ts';
import type { WitnessedCheckpoint, WitnessedRetention, WitnessEntry } from './witness.ts';

const head = (tenantId: string, treeSize: number): WitnessedCheckpoint => ({
  tenantId,
  treeSize,
  rootHash: 'ab'.repeat(32),
  signedAt: new Date(0).toISOString(),
  signingKeyId: 'k',
  publicKey: 'pk',
  signature: 'sig',
});

const retention = (tenantId: string, prunedBeforeLeaf: number): WitnessedRetention => ({
  type: 'retention',
  tenantId,
  prunedBeforeLeaf,
  rootHash: 'cd'.repeat(32),
  cutoff: new Date(0).toISOString(),
  reason: 'policy',
  executedAt: new Date(0).toISOString(),
  executedBy: 'ops',
  signingKeyId: 'k',
  publicKey: 'pk',
  signature: 'sig',
});

describe('a network witness', () => {
  it('keeps the newest head per tenant but every retention record while the receiver is down', async () => {
    const delivered: WitnessEntry[] = [];
    let down = true;
    const witness = networkWitness(
      'test',
      async (entries) => {
        if (down) throw new Error('receiver down');
        delivered.push(...entries);
      },
      createLogger('silent'),
    );
    witness.publish(head('t1', 5));
    witness.publish(retention('t1', 5));
    witness.publish(head('t1', 9));
    witness.publish(head('t1', 7)); // older than the waiting one: ignored
    witness.publish(retention('t1', 9));
    witness.publish(head('t2', 3));
    await witness.flush();
    expect(delivered).toEqual([]);
    down = false;
    await witness.flush();
    await witness.close();
    expect(delivered).toEqual(expect.arrayContaining([head('t1', 9), retention('t1', 5), retention('t1', 9), head('t2', 3)]));
    expect(delivered).toHaveLength(4);
  });
});
