import { useEffect, useState } from 'react';

/** The path the application shows; pages are plain paths served by the server (web-app.ts). */
export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    addEventListener('popstate', update);
    addEventListener('ringvakt:navigate', update);
    return () => {
      removeEventListener('popstate', update);
      removeEventListener('ringvakt:navigate', update);
    };
  }, []);
  return path;
}

export function navigate(to: string): void {
  if (to === location.pathname) return;
  history.pushState(null, '', to);
  dispatchEvent(new Event('ringvakt:navigate'));
}
