/** An SQL `date` as node-postgres gives it (local midnight) back as YYYY-MM-DD. */
export function dateText(value: Date | null): string | null {
  if (value === null) return null;
  return `${value.getFullYear()}-${String(value.getMonth() + 1).padStart(2, '0')}-${String(value.getDate()).padStart(2, '0')}`;
}
