/**
 * The application's tabbed pages: one list for the browser (each tab is a path, /admin/users …)
 * and for the server, which answers exactly these paths with the application (src/server/web-app.ts).
 */
export const PAGE_TABS = {
  admin: ['users', 'campaigns', 'lists', 'suppressions', 'policy'],
  privacy: ['requests', 'retention', 'records', 'processors', 'breaches'],
  security: ['audit', 'alerts', 'ledger', 'signins', 'sessions', 'tokens'],
  compliance: ['controls', 'reviews', 'documents', 'reports'],
} as const;

export type Area = keyof typeof PAGE_TABS;
export type TabOf<A extends Area> = (typeof PAGE_TABS)[A][number];
