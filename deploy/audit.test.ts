import { describe, expect, it } from 'vitest';
import { auditVerdict, describeVerdict } from './audit.ts';

/** The CI audit policy: fail on high/critical in production dependencies; an unanswered audit is reported. */
const report = (vulnerabilities: Record<string, { severity: string; isDirect?: boolean }>): string => {
  const counts: Record<string, number> = { info: 0, low: 0, moderate: 0, high: 0, critical: 0 };
  for (const v of Object.values(vulnerabilities)) counts[v.severity]++;
  counts.total = Object.keys(vulnerabilities).length;
  return JSON.stringify({ auditReportVersion: 2, vulnerabilities, metadata: { vulnerabilities: counts } });
};

describe('npm audit policy', () => {
  it('reports the endpoint as unavailable on npm 405 error object, and on output that is not JSON', () => {
    const e405 = JSON.stringify({
      message: '405 Method Not Allowed - POST https://registry.example/-/npm/v1/security/advisories/bulk',
      statusCode: 405,
    });
    const v = auditVerdict(e405);
    expect(v).toEqual({ kind: 'unavailable', why: expect.stringContaining('405 Method Not Allowed') });
    expect(describeVerdict(v)).toMatch(/^npm audit: audit endpoint unavailable \(405/);
    expect(auditVerdict('npm error audit endpoint returned an error').kind).toBe('unavailable');
    expect(auditVerdict('').kind).toBe('unavailable');
  });

  it('passes with low and moderate advisories only', () => {
    const v = auditVerdict(report({ a: { severity: 'moderate' }, b: { severity: 'low' } }));
    expect(v.kind).toBe('pass');
    expect(describeVerdict(v)).toContain('1 low, 1 moderate, 0 high, 0 critical');
  });

  it('fails on a high or a critical advisory and names the packages', () => {
    const v = auditVerdict(
      report({
        a: { severity: 'high', isDirect: true },
        c: { severity: 'critical' },
        m: { severity: 'moderate' },
      }),
    );
    expect(v).toMatchObject({ kind: 'fail', findings: ['a (high, direct)', 'c (critical)'] });
    expect(describeVerdict(v)).toContain('FAIL');
  });
});
