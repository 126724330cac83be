// The Apollo Client the dashboard runs on, built the way HMS asks clients to talk to it.
//
// Links, outermost first:
//   devLog        records each operation's extensions.cost for the dev panel
//   idempotency   one Idempotency-Key per mutation the user asked for (kept across retries)
//   retry         retries transport failures and 503s; a retried mutation is safe thanks to the key
//   persisted     sends the manifest's hash instead of the document; reads as hashed GETs
//   http          the endpoint, the bearer token and the client's name
import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  ServerError,
  type TypePolicies,
} from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { RetryLink } from "@apollo/client/link/retry";
import { relayStylePagination } from "@apollo/client/utilities";
import { generatePersistedQueryIdsFromManifest } from "@apollo/persisted-query-lists";
import { OperationTypeNode } from "graphql";
import { tap } from "rxjs";

import manifest from "./__generated__/persisted-query-manifest.json";
import { CLIENT_NAME, type Connection } from "./config";
import { costOf, recordResult, recordSent } from "./devlog";

export const CLIENT_VERSION = "0.1.0";

/** Every type that implements Node (schema.graphql): its `id` is a Relay global id. */
const NODE_TYPES = ["Appointment", "Encounter", "Hospital", "Patient", "Practitioner", "Report"];

/** A global id is opaque and names one object, so it is the cache key: the patient found by a
 * search, read by `patient(id:)` or reached through an appointment is one entry, and a
 * mutation's answer (id, status, version) updates every list that shows the object. */
const typePolicies: TypePolicies = {
  ...Object.fromEntries(NODE_TYPES.map((type) => [type, { keyFields: ["id"] }])),
  Query: {
    fields: {
      // Keyset pages: "load more" appends the page after pageInfo.endCursor; each filter (a name
      // prefix, a day) is its own list.
      patients: relayStylePagination(["filter", "orderBy"]),
      appointments: relayStylePagination(["filter", "orderBy"]),
    },
  },
  // A patient's lists are read whole (no pagination here): a refetch replaces them.
  AppointmentConnection: { merge: true },
  EncounterConnection: { merge: true },
};

export function makeCache(): InMemoryCache {
  return new InMemoryCache({ possibleTypes: { Node: NODE_TYPES }, typePolicies });
}

/** RFC 4122 v4. crypto.randomUUID exists only in secure contexts (https, localhost). */
function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const parts = [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20)];
  return [...parts, hex.slice(20)].join("-");
}

/** A mutation gets its key here, above the RetryLink: every retry of one request carries the
 * same key, so a booking whose answer was lost is replayed by the server, not booked twice. */
const idempotency = new ApolloLink((operation, forward) => {
  if (operation.operationType === OperationTypeNode.MUTATION) {
    const key = newIdempotencyKey();
    operation.setContext(({ headers }) => ({ headers: { ...headers, "Idempotency-Key": key } }));
  }
  return forward(operation);
});

/** Worth another try: no answer at all (fetch's TypeError), or the server's SERVICE_UNAVAILABLE
 * (503, "retry shortly"; for a write "retry with the same Idempotency-Key to find out"). Any
 * other answer would only come again. */
function transient(error: unknown): boolean {
  if (CombinedGraphQLErrors.is(error)) {
    return (
      error.data == null &&
      error.errors.length > 0 &&
      error.errors.every((e) => e.extensions?.["code"] === "SERVICE_UNAVAILABLE")
    );
  }
  if (ServerError.is(error)) return error.statusCode === 503;
  return error instanceof TypeError;
}

const retry = new RetryLink({
  delay: { initial: 200, max: 2000, jitter: true },
  attempts: { max: 3, retryIf: transient },
});

const devLog = new ApolloLink((operation, forward) => {
  const name = operation.operationName ?? "(anonymous)";
  return forward(operation).pipe(
    tap({
      next: (result) => recordResult(name, operation.operationType, costOf(result.extensions)),
      error: () => recordResult(name, operation.operationType, null),
    }),
  );
});

/** Ids from the manifest that `npm run manifest` wrote and `hms documents push` registered. A
 * client in the server's `trusted` mode can only send these; against an `open` or `apq` server an
 * unknown hash is answered PersistedQueryNotFound and the link sends the document once. */
const persisted = new PersistedQueryLink({
  ...generatePersistedQueryIdsFromManifest({ loadManifest: () => manifest }),
  useGETForHashedQueries: true,
});

function operationNameOf(input: RequestInfo | URL, init: RequestInit | undefined): string {
  if ((init?.method ?? "GET") === "GET") {
    return new URL(String(input)).searchParams.get("operationName") ?? "(anonymous)";
  }
  const body = JSON.parse(String(init?.body ?? "{}")) as { operationName?: string };
  return body.operationName ?? "(anonymous)";
}

/** fetch, noting for the dev panel what really went over the wire. */
const recordingFetch: typeof fetch = async (input, init) => {
  const method = init?.method ?? "GET";
  const withDocument =
    method === "GET"
      ? new URL(String(input)).searchParams.has("query")
      : "query" in (JSON.parse(String(init?.body ?? "{}")) as object);
  const headers = new Headers(init?.headers);
  const sent = {
    operationName: operationNameOf(input, init),
    method,
    withDocument,
    idempotencyKey: headers.get("Idempotency-Key"),
    status: null as number | null,
  };
  recordSent(sent);
  const response = await fetch(input, init);
  sent.status = response.status;
  return response;
};

export function makeClient(connection: Connection): ApolloClient {
  const http = new HttpLink({
    uri: connection.api,
    headers: {
      authorization: `Bearer ${connection.token}`,
      // Names the client for the server's per-client document mode (HMS_DOCUMENT_MODES): a header
      // can only make the mode stricter, e.g. `react-dashboard=trusted`.
      "apollographql-client-name": CLIENT_NAME,
      "apollographql-client-version": CLIENT_VERSION,
    },
    fetch: recordingFetch,
  });
  return new ApolloClient({
    link: ApolloLink.from([devLog, idempotency, retry, persisted, http]),
    cache: makeCache(),
    // Pages show what is cached at once and refresh it: a booking made at another desk shows up
    // when the page is opened again.
    defaultOptions: { watchQuery: { fetchPolicy: "cache-and-network" } },
  });
}
