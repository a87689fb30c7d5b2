import type { ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import { PAGE_TABS, type Area, type TabOf } from '../pages.ts';
import { navigate, usePath } from '../router.ts';
import { Tabs } from './ui.tsx';

/** A page of tabs, each its own path (/area/tab); the first tab is the page's own path. */
export function TabbedPage<A extends Area>({ area, panels }: { area: A; panels: Record<TabOf<A>, () => ReactNode> }) {
  const { t } = useTranslation();
  const path = usePath();
  const tabs = PAGE_TABS[area] as readonly TabOf<A>[];
  const current = tabs.find((key) => path === `/${area}/${key}`) ?? (tabs[0] as TabOf<A>);
  return (
    <main>
      <h1>{t(`nav.${area}`)}</h1>
      <Tabs label={t(`nav.${area}`)} tabs={tabs.map((key) => ({ key, label: t(`${area}.tab.${key}`) }))} current={current} onChange={(key) => navigate(`/${area}/${key}`)} />
      <div role="tabpanel">{panels[current]()}</div>
    </main>
  );
}
