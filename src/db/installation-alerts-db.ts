import { sql, type Kysely } from './kysely.ts';
import type { Database } from './schema.ts';
import { windowText, type Signal } from '../security/installation-alerts.ts';

/**
 * Records a signal: a new alert, or more hits on the open one of its rule and subject seen within
 * the window (what was counted since it was last recorded, so a node recording every few seconds
 * does not count the same responses twice). Answers the alert's id and whether it is new.
 */
export async function raiseInstallationAlert(db: Kysely<Database>, signal: Signal, node: string, recordedUpTo: Date | undefined): Promise<{ id: string; raised: boolean }> {
  return db.transaction().execute(async (trx) => {
    // One writer per rule and subject across nodes: two nodes seeing the same flood raise one alert.
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:installation-alert:${signal.rule.id}:${signal.subject}`}, 0))`.execute(trx);
    const open = await trx
      .selectFrom('installation_alerts')
      .select(['id', 'hits', 'last_seen'])
      .where('rule_id', '=', signal.rule.id)
      .where('subject', '=', signal.subject)
      .where('state', '<>', 'resolved')
      .where('last_seen', '>', new Date(signal.firstSeen.getTime() - signal.rule.windowMs))
      .orderBy('last_seen', 'desc')
      .forUpdate()
      .executeTakeFirst();
    const summary = (count: number) => `${signal.rule.title}: ${count} within ${windowText(signal.rule.windowMs)} (${signal.subject})`.slice(0, 500);
    if (open) {
      // Only what is new since this node last recorded it (its own window overlaps the last one).
      const hits = open.hits + (recordedUpTo ? signal.countAfter(recordedUpTo) : signal.count);
      await trx.updateTable('installation_alerts').set({ hits, last_seen: signal.lastSeen > open.last_seen ? signal.lastSeen : open.last_seen, summary: summary(hits) }).where('id', '=', open.id).execute();
      return { id: open.id, raised: false };
    }
    const created = await trx
      .insertInto('installation_alerts')
      .values({ rule_id: signal.rule.id, severity: signal.rule.severity, subject: signal.subject, summary: summary(signal.count), hits: signal.count, first_seen: signal.firstSeen, last_seen: signal.lastSeen, node })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { id: created.id, raised: true };
  });
}
