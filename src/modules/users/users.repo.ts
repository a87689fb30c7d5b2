import { randomUUID } from 'node:crypto';
import { sql } from '../../db/kysely.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { UserRole, UserStatus } from '../../db/schema.ts';
import { AppError } from '../../server/errors.ts';

/**
 * Users' e-mail and display name are personal data: stored only as field ciphertext under the
 * tenant data key, the e-mail with a truncated blind index for lookups. A lookup fetches the
 * candidates sharing the index value, decrypts them and compares: the index narrows, the
 * plaintext decides.
 */
export type UserView = {
  id: string;
  email: string;
  displayName: string;
  role: UserRole;
  customRoleId: string | null;
  status: UserStatus;
  createdAt: Date;
  /** Second factors in place (never the factors themselves). */
  mfa: { authenticator: boolean; passkeys: number };
};

export const EMAIL_INDEX = 'users.email';

/** The form an e-mail is compared and indexed in. */
export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

const columns = [
  'id',
  'email',
  'display_name',
  'email_ciphertext',
  'display_name_ciphertext',
  'role',
  'custom_role_id',
  'status',
  'created_at',
  sql<boolean>`totp_secret_ciphertext IS NOT NULL`.as('has_authenticator'),
  sql<number>`(SELECT count(*)::int FROM webauthn_credentials AS credential WHERE credential.user_id = users.id)`.as('passkeys'),
] as const;

type UserRow = {
  id: string;
  email: string | null;
  display_name: string | null;
  email_ciphertext: Buffer | null;
  display_name_ciphertext: Buffer | null;
  role: UserRole;
  custom_role_id: string | null;
  status: UserStatus;
  created_at: Date;
  has_authenticator: boolean;
  passkeys: number;
};

async function present(trx: TenantTransaction, cipher: FieldCipher, row: UserRow): Promise<UserView> {
  // Rows from before migration 0007 hold plaintext until the re-encryption job reaches them.
  const email = row.email_ciphertext ? await cipher.decrypt(trx, { table: 'users', recordId: row.id, field: 'email' }, row.email_ciphertext) : row.email;
  const displayName = row.display_name_ciphertext
    ? await cipher.decrypt(trx, { table: 'users', recordId: row.id, field: 'display_name' }, row.display_name_ciphertext)
    : row.display_name;
  return { id: row.id, email: email ?? '', displayName: displayName ?? '', role: row.role, customRoleId: row.custom_role_id, status: row.status, createdAt: row.created_at, mfa: { authenticator: row.has_authenticator, passkeys: row.passkeys } };
}

export async function findUserById(trx: TenantTransaction, cipher: FieldCipher, userId: string): Promise<UserView | undefined> {
  const row = await trx.selectFrom('users').select(columns).where('id', '=', userId).executeTakeFirst();
  return row ? present(trx, cipher, row) : undefined;
}

export async function findUserByEmail(trx: TenantTransaction, cipher: FieldCipher, email: string): Promise<UserView | undefined> {
  const wanted = normaliseEmail(email);
  const index = await cipher.blindIndex(trx, EMAIL_INDEX, wanted);
  const candidates = await trx
    .selectFrom('users')
    .select(columns)
    .where((eb) => eb.or([eb('email_index', '=', index), eb('email', '=', wanted)]))
    .execute();
  for (const candidate of candidates) {
    const user = await present(trx, cipher, candidate);
    if (normaliseEmail(user.email) === wanted) return user;
  }
  return undefined;
}

export async function listUsers(trx: TenantTransaction, cipher: FieldCipher, page: { limit: number; after?: string }): Promise<UserView[]> {
  let query = trx.selectFrom('users').select(columns).orderBy('id').limit(page.limit);
  if (page.after) query = query.where('id', '>', page.after);
  const rows = await query.execute();
  return Promise.all(rows.map((row) => present(trx, cipher, row)));
}

export async function createUser(
  trx: TenantTransaction,
  cipher: FieldCipher,
  input: { email: string; displayName: string; role: UserRole; customRoleId?: string | null },
): Promise<UserView> {
  const email = normaliseEmail(input.email);
  if (email.length < 3 || email.length > 320) throw new AppError('validation_failed', 'An e-mail address has 3 to 320 characters.');
  if (input.displayName.length < 1 || input.displayName.length > 200) throw new AppError('validation_failed', 'A display name has 1 to 200 characters.');
  const index = await cipher.blindIndex(trx, EMAIL_INDEX, email);
  // One e-mail per tenant: serialise creations that share the index value, then compare plaintext.
  await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`ringvakt:user-email:${trx.tenantId}:${index.toString('hex')}`}, 0))`.execute(trx);
  if (await findUserByEmail(trx, cipher, email)) throw new AppError('conflict', 'A user with this e-mail address exists already.');
  const id = randomUUID();
  const row = await trx
    .insertInto('users')
    .values({
      id,
      email_ciphertext: await cipher.encrypt(trx, { table: 'users', recordId: id, field: 'email' }, email),
      email_index: index,
      display_name_ciphertext: await cipher.encrypt(trx, { table: 'users', recordId: id, field: 'display_name' }, input.displayName),
      role: input.role,
      custom_role_id: input.customRoleId ?? null,
    })
    .returning(columns)
    .executeTakeFirstOrThrow();
  return present(trx, cipher, row);
}
