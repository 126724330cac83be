// How failures are shown: userErrors of a mutation next to its form, request errors as a banner.
import { CombinedGraphQLErrors, ServerError, type ErrorLike } from "@apollo/client";

import type { UserErrorFieldsFragment } from "../__generated__/graphql";

/** What the front desk should understand from each stable code (schema.graphql UserErrorCode). */
function explain(error: UserErrorFieldsFragment): string {
  switch (error.code) {
    case "SLOT_TAKEN":
      return `That slot is taken: ${error.message}`;
    case "VERSION_CONFLICT":
      return (
        "Someone changed this in the meantime " +
        `(now version ${error.currentVersion ?? "?"}): reload and try again.`
      );
    case "FORBIDDEN":
      return `Your role may not do this: ${error.message}`;
    default:
      return error.message;
  }
}

export function UserErrors({ errors }: { errors: readonly UserErrorFieldsFragment[] }) {
  if (errors.length === 0) return null;
  return (
    <ul className="user-errors" role="alert">
      {errors.map((error, i) => (
        <li key={i} data-code={error.code}>
          <code>{error.code}</code> {explain(error)}
          {error.field && <span className="field"> ({error.field.join(".")})</span>}
        </li>
      ))}
    </ul>
  );
}

export function RequestError({ error }: { error: ErrorLike | undefined }) {
  if (!error) return null;
  let text = error.message;
  if (ServerError.is(error) && error.statusCode === 401) {
    text = "The server refused the token (401): paste a fresh one (hms token --role front_desk).";
  } else if (CombinedGraphQLErrors.is(error)) {
    text = error.errors
      .map((e) => `${String(e.extensions?.["code"] ?? "ERROR")}: ${e.message}`)
      .join("; ");
    if (error.errors.some((e) => e.extensions?.["code"] === "PERSISTED_QUERY_NOT_IN_LIST")) {
      text += " (register this build's manifest: hms documents push … --client react-dashboard)";
    }
  }
  return (
    <p className="request-error" role="alert">
      {text}
    </p>
  );
}
