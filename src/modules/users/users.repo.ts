import type { TenantTransaction } from '../../db/tenant-db.ts';
import type { UserRole, UserStatus } from '../../db/schema.ts';

export type UserView = {
  id: string;
  email: string;
  displayName: string;
  role: UserRole;
  status: UserStatus;
  createdAt: Date;
};

const columns = ['id', 'email', 'display_name as displayName', 'role', 'status', 'created_at as createdAt'] as const;

export async function findUserById(trx: TenantTransaction, userId: string): Promise<UserView | undefined> {
  return trx.selectFrom('users').select(columns).where('id', '=', userId).executeTakeFirst();
}

export async function findUserByEmail(trx: TenantTransaction, email: string): Promise<UserView | undefined> {
  return trx.selectFrom('users').select(columns).where('email', '=', email.toLowerCase()).executeTakeFirst();
}

export async function listUsers(trx: TenantTransaction, page: { limit: number; after?: string }): Promise<UserView[]> {
  let query = trx.selectFrom('users').select(columns).orderBy('id').limit(page.limit);
  if (page.after) query = query.where('id', '>', page.after);
  return query.execute();
}

export async function createUser(
  trx: TenantTransaction,
  input: { email: string; displayName: string; role: UserRole },
): Promise<UserView> {
  return trx
    .insertInto('users')
    .values({ email: input.email.toLowerCase(), display_name: input.displayName, role: input.role })
    .returning(columns)
    .executeTakeFirstOrThrow();
}
