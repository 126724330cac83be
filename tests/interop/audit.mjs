// Runs every graphql-http server audit (GraphQL-over-HTTP conformance) against a running HMS.
//
//   HMS_AUDIT_TOKEN=<jwt> node audit.mjs http://127.0.0.1:8000/graphql
//
// The URL comes from argv[2] or HMS_AUDIT_URL; the bearer token from HMS_AUDIT_TOKEN and is
// added to every request, because /graphql answers 401 without one. Prints a JSON summary on
// stdout and exits 1 when a MUST or SHOULD audit is not ok (MAY audits are reported only), or
// when an audit could not run at all; exits 2 on bad usage.

import { serverAudits } from 'graphql-http';

const url = process.argv[2] || process.env.HMS_AUDIT_URL;
const token = process.env.HMS_AUDIT_TOKEN;
if (!url || !token) {
  console.error('usage: HMS_AUDIT_TOKEN=<jwt> node audit.mjs <graphql url>  (or HMS_AUDIT_URL)');
  process.exit(2);
}

/** fetch, with our Authorization header on every request (the audits set none of their own). */
function authorizedFetch(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

/** What the server answered, for the report; the audit may already have read the body. */
async function describe(response) {
  if (!response) return undefined;
  let body;
  try {
    body = (await response.clone().text()).slice(0, 500);
  } catch {
    body = '<body already read>';
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  };
}

const results = [];
// One at a time: the order of the report is the audit order, and failures are easy to replay.
for (const { id, name, fn } of serverAudits({ url, fetchFn: authorizedFetch })) {
  try {
    const result = await fn();
    results.push({
      id,
      name,
      status: result.status,
      ...(result.status === 'ok'
        ? {}
        : { reason: result.reason, response: await describe(result.response) }),
    });
  } catch (error) {
    // graphql-http throws only when an audit cannot run (network failure, server crash).
    results.push({ id, name, status: 'error', reason: `audit could not run: ${error}`, fatal: true });
  }
}

const required = (result) => result.name.startsWith('MUST') || result.name.startsWith('SHOULD');
const failures = results.filter((r) => r.status !== 'ok' && (required(r) || r.fatal));
const counts = {};
for (const { status } of results) counts[status] = (counts[status] ?? 0) + 1;

console.log(JSON.stringify({ url, counts, failures: failures.map((r) => r.id), audits: results }, null, 2));
process.exit(failures.length ? 1 : 0);
