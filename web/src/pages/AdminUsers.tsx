import { useState, type FormEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { post } from '../api.ts';
import { Badge, Field, Head, ProblemNote, useAction, useLoad } from '../components/ui.tsx';
import { useSession } from '../App.tsx';

/** Administration, users tab: users with their second factors, invitations, roles and custom roles. */

type User = { id: string; email: string; displayName: string; role: string; status: string; createdAt: string; mfa: { authenticator: boolean; passkeys: number } };
const ROLES = ['agent', 'supervisor', 'admin', 'auditor', 'privacy_officer', 'owner'] as const;
export function Users() {
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
        <Head cells={[t('admin.name'), t('signin.email'), t('admin.role'), t('admin.status'), t('admin.mfa'), can('users:manage') ? t('common.actions') : null]} />
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
export function Roles() {
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
