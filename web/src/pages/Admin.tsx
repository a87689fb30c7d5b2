import { useEffect, useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import Papa from 'papaparse';
import { api, get, patch, post, put } from '../api.ts';
import { Badge, Field, Head, ProblemNote, Tabs, useAction, useFormat, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';
import { navigate, usePath } from '../router.ts';
import { CampaignForm, type CampaignSettings } from './CampaignForm.tsx';

type User = { id: string; email: string; displayName: string; role: string; status: string; createdAt: string; mfa: { authenticator: boolean; passkeys: number } };
type Campaign = { id: string; name: string; state: string; purpose: string; mode: string; jurisdiction: string | null; listIds: string[]; recordCalls: boolean };
type Jurisdiction = { code: string; name: string };
type ContactList = { id: string; name: string; defaultRegion: string; campaignId: string | null; members: number };
type Import = { id: string; state: string; fileRows: number; rowsDone: number; created: number; linked: number; rejected: number; suppressed: number; rowsPerSecond?: number };
type Suppression = { id: string; channel: string; masked: string; scope: string; reason: string; createdAt: string };
type Policy = { mfaRequiredForAll: boolean; sessionIdleMinutes: number; sessionAbsoluteHours: number; ipAllowList: string[]; revealsPerHour: number; lookupsPerHour: number };

const ROLES = ['agent', 'supervisor', 'admin', 'auditor', 'privacy_officer', 'owner'] as const;
const TABS = ['users', 'campaigns', 'lists', 'suppressions', 'policy'] as const;
type Tab = (typeof TABS)[number];

/** Administration: users and invitations, campaigns, lists and CSV import, suppression, the security policy. */
export default function Admin() {
  const { t } = useTranslation();
  const path = usePath();
  const tab = (TABS.find((key) => path === `/admin/${key}`) ?? 'users') as Tab;
  return (
    <main>
      <h1>{t('nav.admin')}</h1>
      <Tabs label={t('nav.admin')} tabs={TABS.map((key) => ({ key, label: t(`admin.tab.${key}`) }))} current={tab} onChange={(key) => navigate(`/admin/${key}`)} />
      <div role="tabpanel">
        {tab === 'users' ? (
          <>
            <Users />
            <Roles />
          </>
        ) : tab === 'campaigns' ? <Campaigns /> : tab === 'lists' ? <Lists /> : tab === 'suppressions' ? <Suppressions /> : <PolicyForm />}
      </div>
    </main>
  );
}

function Users() {
  const { t } = useTranslation();
  const { can } = useSession();
  const users = useLoad<{ items: User[] }>('/api/v1/users?limit=200');
  const invite = useAction(async (body: Record<string, string>) => {
    await post('/api/v1/users', body);
    users.reload();
  });
  const toggle = useAction(async (user: User) => {
    await post(`/api/v1/users/${user.id}/${user.status === 'disabled' ? 'enable' : 'disable'}`);
    users.reload();
  });
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    void invite.run({ email: String(form.get('email')), displayName: String(form.get('displayName')), role: String(form.get('role')) }).then(() => {
      if (!invite.problem) (event.target as HTMLFormElement).reset();
    });
  };
  return (
    <section className="panel">
      <h2>{t('admin.users')}</h2>
      <ProblemNote problem={users.problem ?? toggle.problem} />
      <table>
        <thead>
          <tr>
            <th scope="col">{t('admin.name')}</th>
            <th scope="col">{t('signin.email')}</th>
            <th scope="col">{t('admin.role')}</th>
            <th scope="col">{t('admin.status')}</th>
            <th scope="col">{t('admin.mfa')}</th>
            {can('users:manage') ? <th scope="col">{t('common.actions')}</th> : null}
          </tr>
        </thead>
        <tbody>
          {(users.data?.items ?? []).map((user) => (
            <tr key={user.id}>
              <td>{user.displayName}</td>
              <td>{user.email}</td>
              <td>{t(`role.${user.role}`, { defaultValue: user.role })}</td>
              <td>
                <Badge tone={user.status === 'active' ? 'ok' : user.status === 'invited' ? 'info' : 'muted'}>{t(`userStatus.${user.status}`)}</Badge>
              </td>
              <td>
                {user.mfa.authenticator || user.mfa.passkeys > 0 ? (
                  <Badge tone="ok">{[user.mfa.authenticator ? t('admin.authenticator') : null, user.mfa.passkeys > 0 ? t('admin.passkeys', { count: user.mfa.passkeys }) : null].filter(Boolean).join(' + ')}</Badge>
                ) : (
                  <Badge tone="warn">{t('admin.noMfa')}</Badge>
                )}
              </td>
              {can('users:manage') ? (
                <td>
                  <button type="button" className="small" onClick={() => void toggle.run(user)} disabled={toggle.busy}>
                    {user.status === 'disabled' ? t('admin.enable') : t('admin.disable')}
                  </button>
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
      {can('users:manage') ? (
        <form className="inline-form" onSubmit={submit} aria-label={t('admin.invite')}>
          <h3>{t('admin.invite')}</h3>
          <Field label={t('signin.email')} name="email" problem={invite.problem}>
            {(attributes) => <input {...attributes} type="email" required />}
          </Field>
          <Field label={t('admin.name')} name="displayName" problem={invite.problem}>
            {(attributes) => <input {...attributes} required />}
          </Field>
          <Field label={t('admin.role')} name="role" problem={invite.problem}>
            {(attributes) => (
              <select {...attributes} defaultValue="agent">
                {ROLES.map((role) => (
                  <option key={role} value={role}>
                    {t(`role.${role}`)}
                  </option>
                ))}
              </select>
            )}
          </Field>
          <button type="submit" className="primary" disabled={invite.busy}>
            {t('admin.sendInvite')}
          </button>
          <ProblemNote problem={invite.problem} />
        </form>
      ) : null}
    </section>
  );
}

type Role = { id: string | null; name: string; builtIn: boolean; description: string; permissions: string[]; requiresMfa: boolean };

/** Roles and what each may do; custom roles are made here from the permissions the server lists. */
function Roles() {
  const { t } = useTranslation();
  const { can } = useSession();
  const roles = useLoad<{ items: Role[]; permissions: string[] }>('/api/v1/roles');
  const [chosen, setChosen] = useState<string[]>([]);
  const create = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/roles', body);
    setChosen([]);
    roles.reload();
  });
  return (
    <section className="panel">
      <h2>{t('roles.title')}</h2>
      <ProblemNote problem={roles.problem} />
      <table>
        <Head cells={[t('roles.role'), t('roles.mfa'), t('roles.permissions')]} />
        <tbody>
          {(roles.data?.items ?? []).map((role) => (
            <tr key={role.id ?? role.name}>
              <td>
                {role.builtIn ? t(`role.${role.name}`, { defaultValue: role.name }) : role.name} {role.builtIn ? null : <Badge tone="info">{t('roles.custom')}</Badge>}
              </td>
              <td>{role.requiresMfa ? t('roles.required') : t('roles.optional')}</td>
              <td className="hint">{role.permissions.join(', ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {can('roles:manage') ? (
        <form
          className="inline-form"
          aria-label={t('roles.new')}
          onSubmit={(event) => {
            event.preventDefault();
            const form = new FormData(event.currentTarget);
            void create.run({ name: String(form.get('name')).trim(), description: String(form.get('description') ?? ''), permissions: chosen, requiresMfa: form.get('requiresMfa') === 'on' });
          }}
          noValidate
        >
          <h3>{t('roles.new')}</h3>
          <Field label={t('admin.name')} name="name" problem={create.problem} hint="team-lead">
            {(attributes) => <input {...attributes} required />}
          </Field>
          <Field label={t('roles.description')} name="description" problem={create.problem}>
            {(attributes) => <input {...attributes} />}
          </Field>
          <label className="check">
            <input type="checkbox" name="requiresMfa" defaultChecked /> {t('roles.mfaRequired')}
          </label>
          <fieldset className="days">
            <legend>{t('roles.permissions')}</legend>
            {(roles.data?.permissions ?? []).map((permission) => (
              <label key={permission} className="check">
                <input type="checkbox" checked={chosen.includes(permission)} onChange={(event) => setChosen(event.target.checked ? [...chosen, permission] : chosen.filter((item) => item !== permission))} />
                {permission}
              </label>
            ))}
          </fieldset>
          <button type="submit" className="primary" disabled={create.busy}>
            {t('roles.create')}
          </button>
          <ProblemNote problem={create.problem} />
        </form>
      ) : null}
    </section>
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
        <thead>
          <tr>
            <th scope="col">{t('admin.name')}</th>
            <th scope="col">{t('admin.mode')}</th>
            <th scope="col">{t('admin.jurisdiction')}</th>
            <th scope="col">{t('admin.status')}</th>
            <th scope="col">{t('admin.lists')}</th>
            {manage ? <th scope="col">{t('common.actions')}</th> : null}
          </tr>
        </thead>
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

const TARGETS = ['ignore', 'externalId', 'name', 'email', 'phone', 'phone:mobile', 'phone:home', 'phone:work', 'birthDate', 'notes', 'timeZone', 'address.line1', 'address.line2', 'address.postalCode', 'address.city', 'address.region', 'address.country'];

/** A guess of what a column holds, from its header; the person confirms or changes every one. */
function guessTarget(header: string): string {
  const name = header.toLowerCase().replace(/[^a-zæøå0-9]/g, '');
  if (/^(phone|telefon|tlf|mobil|mobile|number|nummer)/.test(name)) return 'phone';
  if (/^(email|epost|mail)/.test(name)) return 'email';
  if (/^(name|navn|fullname)/.test(name)) return 'name';
  if (/^(id|externalid|kundenr|customerid)/.test(name)) return 'externalId';
  if (/^(city|by|poststed)/.test(name)) return 'address.city';
  if (/^(postalcode|postnr|zip)/.test(name)) return 'address.postalCode';
  return 'ignore';
}

function Lists() {
  const { t } = useTranslation();
  const { can } = useSession();
  const format = useFormat();
  const lists = useLoad<{ items: ContactList[] }>('/api/v1/lists');
  const campaigns = useLoad<{ items: Campaign[] }>('/api/v1/campaigns');
  const [file, setFile] = useState<File>();
  const [headers, setHeaders] = useState<string[]>([]);
  const [delimiter, setDelimiter] = useState<',' | ';'>(',');
  const [mapping, setMapping] = useState<Record<string, string>>({});
  const [listId, setListId] = useState('');
  const [job, setJob] = useState<Import>();
  const [readProblem, setReadProblem] = useState<string>();

  const createList = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/lists', body);
    lists.reload();
  });
  const assign = useAction(async (list: ContactList, campaignId: string) => {
    await patch(`/api/v1/lists/${list.id}`, { campaignId: campaignId || null });
    lists.reload();
  });

  const choose = (chosen: File | undefined) => {
    setFile(chosen);
    setHeaders([]);
    setReadProblem(undefined);
    if (!chosen) return;
    // Only the header row is read here; the file itself goes to the server as it is.
    Papa.parse<string[]>(chosen, {
      preview: 1,
      complete: (result) => {
        const row = result.data[0] ?? [];
        if (row.length === 0) {
          setReadProblem(t('import.noHeader'));
          return;
        }
        setDelimiter(result.meta.delimiter === ';' ? ';' : ',');
        setHeaders(row);
        setMapping(Object.fromEntries(row.map((header) => [header, guessTarget(header)])));
      },
      error: () => setReadProblem(t('import.unreadable')),
    });
  };

  const start = useAction(async () => {
    if (!file) return;
    const created = await post<Import>('/api/v1/contact-imports', { listId, mapping, delimiter });
    setJob(created);
    await api('PUT', `/api/v1/contact-imports/${created.id}/file`, { raw: file, contentType: 'text/csv' });
    setJob(await get<Import>(`/api/v1/contact-imports/${created.id}`));
  });

  useEffect(() => {
    if (!job || ['done', 'failed', 'cancelled'].includes(job.state)) return;
    const timer = setTimeout(() => void get<Import>(`/api/v1/contact-imports/${job.id}`).then(setJob), 1000);
    return () => clearTimeout(timer);
  }, [job]);

  useEffect(() => {
    if (job?.state === 'done') lists.reload();
  }, [job?.state, lists.reload]);

  const manage = can('contacts:manage');
  const progress = job && job.fileRows > 0 ? job.rowsDone / job.fileRows : 0;
  return (
    <section className="panel">
      <h2>{t('admin.lists')}</h2>
      <ProblemNote problem={lists.problem ?? assign.problem} />
      <table>
        <Head cells={[t('admin.name'), t('admin.region'), t('admin.members'), t('agent.campaign')]} />
        <tbody>
          {(lists.data?.items ?? []).map((list) => (
            <tr key={list.id}>
              <td>{list.name}</td>
              <td>{list.defaultRegion}</td>
              <td data-testid={`members-${list.name}`}>{format.number(list.members)}</td>
              <td>
                <label className="visually-hidden" htmlFor={`assign-${list.id}`}>
                  {t('admin.assignTo', { list: list.name })}
                </label>
                <select id={`assign-${list.id}`} value={list.campaignId ?? ''} onChange={(event) => void assign.run(list, event.target.value)} disabled={!can('campaigns:manage')}>
                  <option value="">—</option>
                  {(campaigns.data?.items ?? []).map((campaign) => (
                    <option key={campaign.id} value={campaign.id}>
                      {campaign.name}
                    </option>
                  ))}
                </select>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {manage ? (
        <>
          <form
            className="inline-form"
            aria-label={t('admin.newList')}
            onSubmit={(event) => {
              event.preventDefault();
              const form = new FormData(event.currentTarget);
              void createList.run({ name: String(form.get('name')), defaultRegion: String(form.get('defaultRegion')).toUpperCase() });
            }}
          >
            <h3>{t('admin.newList')}</h3>
            <Field label={t('admin.name')} name="name" problem={createList.problem}>
              {(attributes) => <input {...attributes} required />}
            </Field>
            <Field label={t('admin.region')} name="defaultRegion" problem={createList.problem}>
              {(attributes) => <input {...attributes} required defaultValue="NO" maxLength={2} />}
            </Field>
            <button type="submit" className="primary" disabled={createList.busy}>
              {t('admin.createList')}
            </button>
            <ProblemNote problem={createList.problem} />
          </form>

          <form
            className="stack import"
            aria-label={t('import.title')}
            onSubmit={(event) => {
              event.preventDefault();
              void start.run();
            }}
          >
            <h3>{t('import.title')}</h3>
            <div className="row wrap">
              <Field label={t('import.list')} name="listId" problem={start.problem}>
                {(attributes) => (
                  <select {...attributes} value={listId} onChange={(event) => setListId(event.target.value)} required>
                    <option value="">{t('import.chooseList')}</option>
                    {(lists.data?.items ?? []).map((list) => (
                      <option key={list.id} value={list.id}>
                        {list.name}
                      </option>
                    ))}
                  </select>
                )}
              </Field>
              <Field label={t('import.file')} name="file" problem={start.problem}>
                {(attributes) => <input {...attributes} type="file" accept=".csv,text/csv" onChange={(event) => choose(event.target.files?.[0])} />}
              </Field>
            </div>
            {readProblem ? <p className="problem" role="alert">{readProblem}</p> : null}
            {headers.length > 0 ? (
              <table className="mapping">
                <caption>{t('import.mapping')}</caption>
                <Head cells={[t('import.column'), t('import.holds')]} />
                <tbody>
                  {headers.map((header, index) => (
                    <tr key={`${header}-${index}`}>
                      <td>{header}</td>
                      <td>
                        <label className="visually-hidden" htmlFor={`map-${index}`}>
                          {t('import.holdsFor', { column: header })}
                        </label>
                        <select id={`map-${index}`} value={mapping[header] ?? 'ignore'} onChange={(event) => setMapping({ ...mapping, [header]: event.target.value })}>
                          {TARGETS.map((target) => (
                            <option key={target} value={target}>
                              {t(`target.${target}`, { defaultValue: target })}
                            </option>
                          ))}
                        </select>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : null}
            <button type="submit" className="primary" disabled={start.busy || !file || headers.length === 0 || listId === ''}>
              {t('import.start')}
            </button>
            <ProblemNote problem={start.problem} />
          </form>
          {job ? (
            <div className="import-progress" aria-live="polite">
              <progress max={1} value={progress} aria-label={t('import.progress')} />
              <p data-testid="import-status">
                {t(`importState.${job.state}`)} · {t('import.counts', { done: job.rowsDone, total: job.fileRows, created: job.created, linked: job.linked, rejected: job.rejected, suppressed: job.suppressed })}
              </p>
              {job.rejected > 0 ? (
                <a className="button" href={`/api/v1/contact-imports/${job.id}/rejects`} download>
                  {t('import.rejects')}
                </a>
              ) : null}
            </div>
          ) : null}
        </>
      ) : null}
    </section>
  );
}

type Registry = { id: string; format: string; name: string; entries: number; rejected: number; importedAt: string };
const REGISTRY_FORMATS = ['no_reservasjon', 'uk_tps', 'us_dnc', 'e164_list'] as const;

function Suppressions() {
  const { t } = useTranslation();
  const format = useFormat();
  const list = useLoad<{ items: Suppression[] }>('/api/v1/suppressions');
  const registries = useLoad<{ items: Registry[] }>('/api/v1/suppression-registries');
  const [registryFile, setRegistryFile] = useState<File>();
  const load = useAction(async (registryFormat: string) => {
    if (!registryFile) return;
    await api('PUT', `/api/v1/suppression-registries/${registryFormat}`, { raw: registryFile, contentType: 'text/plain' });
    registries.reload();
  });
  const add = useAction(async (body: Record<string, unknown>) => {
    await post('/api/v1/suppressions', body);
    list.reload();
  });
  return (
    <section className="panel">
      <h2>{t('admin.suppressions')}</h2>
      <ProblemNote problem={list.problem} />
      <table>
        <Head cells={[t('suppression.value'), t('suppression.scope'), t('suppression.reason'), t('common.when')]} />
        <tbody>
          {(list.data?.items ?? []).map((item) => (
            <tr key={item.id}>
              <td>{item.masked}</td>
              <td>{item.scope}</td>
              <td>{item.reason}</td>
              <td>{format.time(item.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('suppression.add')}
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          const value = String(form.get('value')).trim();
          void add.run({ ...(value.includes('@') ? { email: value } : { phone: value, region: 'NO' }), reason: String(form.get('reason')) });
        }}
      >
        <h3>{t('suppression.add')}</h3>
        <Field label={t('suppression.value')} name="phone" problem={add.problem} hint={t('suppression.valueHint')}>
          {(attributes) => <input {...attributes} name="value" required />}
        </Field>
        <Field label={t('suppression.reason')} name="reason" problem={add.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="request">
              {['request', 'objection', 'withdrawal', 'complaint', 'other'].map((reason) => (
                <option key={reason} value={reason}>
                  {t(`suppressionReason.${reason}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <button type="submit" className="primary" disabled={add.busy}>
          {t('suppression.add')}
        </button>
        <ProblemNote problem={add.problem} />
      </form>
      <h3>{t('suppression.registries')}</h3>
      <table>
        <Head cells={[t('suppression.registry'), t('suppression.entries'), t('suppression.imported')]} />
        <tbody>
          {(registries.data?.items ?? []).map((registry) => (
            <tr key={registry.id}>
              <td>{registry.name}</td>
              <td data-testid={`registry-${registry.format}`}>{format.number(registry.entries)}</td>
              <td>{format.time(registry.importedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form
        className="inline-form"
        aria-label={t('suppression.loadRegistry')}
        onSubmit={(event) => {
          event.preventDefault();
          void load.run(String(new FormData(event.currentTarget).get('format')));
        }}
      >
        <Field label={t('suppression.registry')} name="format" problem={load.problem}>
          {(attributes) => (
            <select {...attributes} defaultValue="no_reservasjon">
              {REGISTRY_FORMATS.map((item) => (
                <option key={item} value={item}>
                  {t(`registry.${item}`)}
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label={t('suppression.registryFile')} name="file" problem={load.problem}>
          {(attributes) => <input {...attributes} type="file" accept=".txt,.csv,text/plain" onChange={(event) => setRegistryFile(event.target.files?.[0])} />}
        </Field>
        <button type="submit" className="primary" disabled={load.busy || !registryFile}>
          {t('suppression.loadRegistry')}
        </button>
        <ProblemNote problem={load.problem} />
      </form>
    </section>
  );
}

function PolicyForm() {
  const { t } = useTranslation();
  const { can } = useSession();
  const policy = useLoad<Policy>('/api/v1/security-policy');
  const [saved, setSaved] = useState(false);
  const save = useAction(async (body: Policy) => {
    await put('/api/v1/security-policy', body);
    setSaved(true);
    policy.reload();
  });
  if (policy.problem) return <ProblemNote problem={policy.problem} />;
  if (!policy.data) return <p className="loading">{t('common.loading')}</p>;
  const current = policy.data;
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    setSaved(false);
    const form = new FormData(event.currentTarget);
    void save.run({
      mfaRequiredForAll: form.get('mfaRequiredForAll') === 'on',
      sessionIdleMinutes: Number(form.get('sessionIdleMinutes')),
      sessionAbsoluteHours: Number(form.get('sessionAbsoluteHours')),
      ipAllowList: String(form.get('ipAllowList')).split(/[\s,]+/).filter(Boolean),
      revealsPerHour: Number(form.get('revealsPerHour')),
      lookupsPerHour: Number(form.get('lookupsPerHour')),
    });
  };
  const editable = can('security:manage');
  return (
    <form className="panel grid-form" onSubmit={submit} aria-label={t('admin.tab.policy')} noValidate>
      <h2>{t('admin.tab.policy')}</h2>
      <label className="check">
        <input type="checkbox" name="mfaRequiredForAll" defaultChecked={current.mfaRequiredForAll} disabled={!editable} /> {t('policy.mfaForAll')}
      </label>
      <Field label={t('policy.idle')} name="sessionIdleMinutes" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={5} max={720} defaultValue={current.sessionIdleMinutes} disabled={!editable} />}
      </Field>
      <Field label={t('policy.absolute')} name="sessionAbsoluteHours" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={1} max={72} defaultValue={current.sessionAbsoluteHours} disabled={!editable} />}
      </Field>
      <Field label={t('policy.reveals')} name="revealsPerHour" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={0} defaultValue={current.revealsPerHour} disabled={!editable} />}
      </Field>
      <Field label={t('policy.lookups')} name="lookupsPerHour" problem={save.problem}>
        {(attributes) => <input {...attributes} type="number" min={0} defaultValue={current.lookupsPerHour} disabled={!editable} />}
      </Field>
      <Field label={t('policy.ipAllowList')} name="ipAllowList" problem={save.problem} hint={t('policy.ipHint')}>
        {(attributes) => <textarea {...attributes} rows={3} defaultValue={current.ipAllowList.join('\n')} disabled={!editable} />}
      </Field>
      {editable ? (
        <button type="submit" className="primary" disabled={save.busy}>
          {t('common.save')}
        </button>
      ) : null}
      {saved ? <p role="status">{t('common.saved')}</p> : null}
      <ProblemNote problem={save.problem} />
    </form>
  );
}

