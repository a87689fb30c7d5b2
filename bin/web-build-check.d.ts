/** Builds the web application into dist/web unless it was built from the same inputs; returns whether it built. */
export function ensureWebBuilt(force?: boolean): Promise<boolean>;
