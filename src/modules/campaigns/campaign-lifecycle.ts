import { sql } from '../../db/kysely.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import { AppError } from '../../server/errors.ts';
import { dropRequests } from '../agents/preview.service.ts';
import { publish } from '../../realtime/realtime.ts';
import { assertValidSettings, loadCampaign, loadProfiles, settingsOf } from './campaign-settings.ts';

/**
 * Starting a campaign: everything a dial will need is checked once here (the dial-time checks then
 * re-check what can change between dials), and the contacts of its lists enter the hopper.
 * Starting again (resume, or after lists changed) adds only contacts not yet in it.
 */
export async function startCampaign(trx: TenantTransaction, campaignId: string): Promise<{ added: number }> {
  const row = await loadCampaign(trx, campaignId, true);
  if (row.state === 'finished') throw new AppError('invalid_transition', 'A finished campaign cannot start again.');
  const settings = settingsOf(row);
  const missing: string[] = [];
  if (settings.jurisdiction === null) missing.push('a jurisdiction profile');
  if (settings.callerId === null) missing.push('a caller id that can be called back');
  const [profile] = settings.jurisdiction === null ? [] : await loadProfiles(trx, settings.jurisdiction);
  if (missing.length > 0 || !profile) throw new AppError('campaign_not_ready', `The campaign needs ${missing.join(' and ')}.`);
  assertValidSettings(settings, profile);

  // National registries the law requires, imported recently enough (US: scrubbed every 31 days).
  if (profile.requiredRegistries.length > 0) {
    const fresh = await trx
      .selectFrom('suppression_registries')
      .select('format')
      .where('format', 'in', profile.requiredRegistries as never[])
      .where(sql<boolean>`imported_at > now() - make_interval(secs => ${(profile.registryMaxAgeMs ?? Number.MAX_SAFE_INTEGER) / 1000})`)
      .execute();
    const have = new Set(fresh.map((registry) => registry.format));
    const stale = profile.requiredRegistries.filter((format) => !have.has(format as never));
    if (stale.length > 0) {
      throw new AppError('campaign_not_ready', `${profile.name} requires a current import of the registry ${stale.join(', ')} (at most ${Math.round((profile.registryMaxAgeMs ?? 0) / 86_400_000)} days old).`);
    }
  }

  const lists = await trx.selectFrom('contact_lists').select('id').where('campaign_id', '=', campaignId).execute();
  if (lists.length === 0) throw new AppError('campaign_not_ready', 'Assign at least one contact list to the campaign.');
  const added = await sql<{ n: string }>`
    WITH inserted AS (
      INSERT INTO campaign_contacts (campaign_id, contact_id)
      SELECT DISTINCT ${campaignId}::uuid, m.contact_id
        FROM contact_list_members m JOIN contacts c ON c.tenant_id = m.tenant_id AND c.id = m.contact_id
       WHERE m.list_id = ANY(${lists.map((list) => list.id)}::uuid[]) AND c.status <> 'erased'
      ON CONFLICT DO NOTHING
      RETURNING 1)
    SELECT count(*) AS n FROM inserted`.execute(trx);
  await trx
    .updateTable('campaigns')
    .set({ state: 'active', started_at: sql<Date>`coalesce(started_at, now())` })
    .where('id', '=', campaignId)
    .execute();
  return { added: Number(added.rows[0]?.n ?? 0) };
}

/**
 * Pausing a campaign: no new dials from the next round on (calls in progress finish), and preview
 * calls asked for but not yet placed are dropped, their agents free again. Used by the campaign's
 * own pause and by an incident's containment.
 */
export async function pauseCampaign(trx: TenantTransaction, campaignId: string): Promise<void> {
  const row = await loadCampaign(trx, campaignId, true);
  if (row.state !== 'active') throw new AppError('invalid_transition', `The campaign is ${row.state}, not active.`);
  await trx.updateTable('campaigns').set({ state: 'paused' }).where('id', '=', row.id).execute();
  await dropRequests(trx, row.id, new Date());
  await publish(trx, { topic: 'campaign.state', campaignId: row.id, state: 'paused', at: new Date().toISOString() });
}
