import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

/**
 * `npm audit --omit=dev` for CI, with the policy of deploy/README.md ("Supply chain"): the build fails only
 * on high or critical advisories in production dependencies. When the registry's audit endpoint does not
 * answer (as where this project's CI runs: 405 on the bulk-advisory POST), that is reported and the build
 * goes on: a missing answer is not a finding.
 */

export type AuditVerdict =
  | { kind: 'unavailable'; why: string }
  | { kind: 'pass'; counts: Record<string, number> }
  | { kind: 'fail'; counts: Record<string, number>; findings: string[] };

/** Severities that fail the build. */
export const FAILING = ['high', 'critical'] as const;

interface Report {
  auditReportVersion?: number;
  vulnerabilities?: Record<string, { severity: string; isDirect?: boolean; fixAvailable?: unknown }>;
  metadata?: { vulnerabilities?: Record<string, number> };
  message?: string;
  statusCode?: number;
}

/** Reads `npm audit --json` output (npm 7+ report format, or npm's error object). */
export function auditVerdict(stdout: string): AuditVerdict {
  let r: Report;
  try {
    r = JSON.parse(stdout) as Report;
  } catch {
    const first = stdout.trim().split('\n')[0] ?? '';
    return { kind: 'unavailable', why: `no JSON report${first ? `: ${first.slice(0, 200)}` : ''}` };
  }
  if (r.auditReportVersion !== 2 || !r.metadata?.vulnerabilities || !r.vulnerabilities)
    return { kind: 'unavailable', why: (r.message ?? 'no audit report in the answer').slice(0, 200) };
  const counts = r.metadata.vulnerabilities;
  const findings = Object.entries(r.vulnerabilities)
    .filter(([, v]) => (FAILING as readonly string[]).includes(v.severity))
    .map(
      ([name, v]) =>
        `${name} (${v.severity}${v.isDirect ? ', direct' : ''}${v.fixAvailable ? ', fix available' : ''})`,
    )
    .sort();
  const failing = FAILING.reduce((n, s) => n + (counts[s] ?? 0), 0);
  return failing > 0 || findings.length > 0 ? { kind: 'fail', counts, findings } : { kind: 'pass', counts };
}

/** One line (plus findings) for the CI log. */
export function describeVerdict(v: AuditVerdict): string {
  if (v.kind === 'unavailable') return `npm audit: audit endpoint unavailable (${v.why}); not checked`;
  const counts = Object.entries(v.counts)
    .filter(([k]) => k !== 'total')
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
  if (v.kind === 'pass') return `npm audit (production dependencies): ${counts}; no high or critical: pass`;
  return [
    `npm audit (production dependencies): ${counts}; FAIL on:`,
    ...v.findings.map((f) => `  ${f}`),
  ].join('\n');
}

// Run as a script (npm run audit), not when imported by its test.
if (process.argv[1] && resolve(process.argv[1]) === import.meta.filename) {
  const r = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8', timeout: 120_000 });
  const v = auditVerdict(r.stdout ?? '');
  console.log(describeVerdict(v));
  process.exit(v.kind === 'fail' ? 1 : 0);
}
