import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { post } from '../api.ts';
import { Badge, Head, ProblemNote, useAction, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';
import { TabbedPage } from '../components/TabbedPage.tsx';
import { CampaignForm, type CampaignSettings } from './CampaignForm.tsx';
import { Users, Roles } from './AdminUsers.tsx';
import { Lists } from './AdminLists.tsx';
import { Suppressions } from './AdminSuppression.tsx';
import { PolicyForm } from './AdminPolicy.tsx';

type Campaign = { id: string; name: string; state: string; purpose: string; mode: string; jurisdiction: string | null; listIds: string[]; recordCalls: boolean };
type Jurisdiction = { code: string; name: string };

/** Administration: users and invitations, campaigns, lists and CSV import, suppression, the security policy. */
export default function Admin() {
  return (
    <TabbedPage
      area="admin"
      panels={{
        users: () => (
          <>
            <Users />
            <Roles />
          </>
        ),
        campaigns: () => <Campaigns />,
        lists: () => <Lists />,
        suppressions: () => <Suppressions />,
        policy: () => <PolicyForm />,
      }}
    />
  );
}

function Campaigns() {
  const { t } = useTranslation();
  const { can } = useSession();
  const campaigns = useLoad<{ items: (Campaign & CampaignSettings)[] }>('/api/v1/campaigns');
  const jurisdictions = useLoad<{ items: Jurisdiction[] }>('/api/v1/jurisdictions');
  const [editing, setEditing] = useState<CampaignSettings | undefined>();
  const [created, setCreated] = useState(0);
  const control = useAction(async (campaign: Campaign, action: 'start' | 'pause') => {
    await post(`/api/v1/campaigns/${campaign.id}/${action}`);
    campaigns.reload();
  });
  const manage = can('campaigns:manage');
  return (
    <section className="panel">
      <h2>{t('admin.campaigns')}</h2>
      <ProblemNote problem={campaigns.problem ?? control.problem} />
      <table>
        <Head cells={[t('admin.name'), t('admin.mode'), t('admin.jurisdiction'), t('admin.status'), t('admin.lists'), manage ? t('common.actions') : null]} />
        <tbody>
          {(campaigns.data?.items ?? []).map((campaign) => (
            <tr key={campaign.id}>
              <td>{campaign.name}</td>
              <td>{t(`mode.${campaign.mode}`)}</td>
              <td>{campaign.jurisdiction ?? '—'}</td>
              <td>
                <Badge tone={campaign.state === 'active' ? 'ok' : campaign.state === 'paused' ? 'warn' : 'muted'}>{t(`campaignState.${campaign.state}`)}</Badge>
              </td>
              <td>{campaign.listIds.length}</td>
              {manage ? (
                <td>
                  {campaign.state === 'active' ? (
                    <button type="button" className="small" onClick={() => void control.run(campaign, 'pause')} disabled={control.busy}>
                      {t('admin.pauseCampaign')}
                    </button>
                  ) : campaign.state !== 'finished' ? (
                    <button type="button" className="small" onClick={() => void control.run(campaign, 'start')} disabled={control.busy}>
                      {t('admin.startCampaign')}
                    </button>
                  ) : null}
                  <button type="button" className="small" onClick={() => setEditing(campaign)}>
                    {t('campaign.editButton')}
                  </button>
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
      {manage ? (
        <>
          {editing ? (
            <button type="button" onClick={() => setEditing(undefined)}>
              {t('admin.newCampaign')}
            </button>
          ) : null}
          <CampaignForm
            key={editing?.id ?? `new-${created}`}
            jurisdictions={jurisdictions.data?.items ?? []}
            editing={editing}
            onSaved={() => {
              campaigns.reload();
              // A new campaign: the form empties for the next one.
              if (!editing) setCreated((count) => count + 1);
            }}
          />
        </>
      ) : null}
    </section>
  );
}
