/**
 * Canonical JSON (the RFC 8785 / JCS rules, for the values a task holds): object keys sorted by UTF-16
 * code units, no whitespace, strings as JSON.stringify writes them, numbers as ECMAScript's Number-to-
 * String (shortest round-trip: 0.002, 1e-7, 16), arrays in order, `undefined` members left out, null kept.
 * Two equal values give the same bytes whatever their key order, so a hash of them can be pinned.
 */
export function canonicalJson(v: unknown): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'string':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new RangeError(`canonical JSON has no ${v}`);
      return Object.is(v, -0) ? '0' : String(v);
    case 'object': {
      if (Array.isArray(v)) return `[${v.map((x) => canonicalJson(x === undefined ? null : x)).join(',')}]`;
      if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer)
        throw new TypeError('canonical JSON has no binary values');
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o)
        .filter((k) => o[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON has no ${typeof v} values`);
  }
}
