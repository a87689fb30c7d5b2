import type { TenantDb } from '../db/tenant-db.ts';
import { RULES_BY_ID, type RuleSettings } from './detection-rules.ts';
import type { Hit } from './detector.ts';

/**
 * Keeps the hits that are far above what is usual, where the rule asks for a baseline: the
 * subject's count in the window against the larger of two averages per window over the rule's
 * days — the subject's own, and the team's (every actor of the kind who did it, per actor). So a
 * new agent is judged by what the team does, and a heavy user by their own habit; an alert means
 * far above both.
 */
export async function aboveBaseline(tenantDb: TenantDb, hits: Hit[], settings: ReadonlyMap<string, RuleSettings>): Promise<Hit[]> {
  const kept: Hit[] = [];
  for (const hit of hits) {
    const rule = RULES_BY_ID.get(hit.ruleId);
    const setting = settings.get(hit.ruleId);
    if (!rule?.baseline || !setting || rule.subject !== 'actor') {
      kept.push(hit);
      continue;
    }
    const [actorType, ...rest] = hit.subject.split(':');
    const actorId = rest.join(':');
    const windowMs = setting.windowSeconds * 1000;
    const to = new Date(hit.firstSeen.getTime());
    const from = new Date(to.getTime() - rule.baseline.days * 86_400_000);
    const actions = rule.match.flatMap((match) => match.actions);
    const past = await tenantDb.read((trx) =>
      trx
        .selectFrom('audit_events')
        .select((eb) => [
          eb.fn.countAll<string>().as('all'),
          eb.fn.count<string>(eb.case().when('actor_id', '=', actorId).then(1).end()).as('own'),
          eb.fn.count<string>('actor_id').distinct().as('actors'),
        ])
        .where('action', 'in', actions)
        .where('actor_type', '=', actorType ?? '')
        .where('occurred_at', '>=', from)
        .where('occurred_at', '<', to)
        .executeTakeFirstOrThrow(),
    );
    const windows = (rule.baseline.days * 86_400_000) / windowMs;
    const own = Number(past.own) / windows;
    const team = Number(past.actors) === 0 ? 0 : Number(past.all) / Number(past.actors) / windows;
    if (hit.windowCount >= rule.baseline.multiplier * Math.max(own, team)) kept.push(hit);
  }
  return kept;
}
