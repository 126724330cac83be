// A real Apollo Client 4 with its persisted-query link, against the real HMS server.
//
//   node apollo.mjs manifest                 -> the Apollo manifest of REGISTERED (stdout)
//   node apollo.mjs run <url> <token> <nonce> -> what every scenario sent and got (JSON, stdout)
//
// Each scenario records the HTTP requests the client really made (method, whether the full
// document was in it, status), so the Python test can check the protocol, not only the data.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { print } from "graphql";
import { createHash } from "node:crypto";

const sha256 = (text) => createHash("sha256").update(text).digest("hex");

const REGISTERED = gql`
  query Team {
    practitioners(first: 2) {
      edges {
        node {
          id
          familyName
        }
      }
    }
  }
`;
// A document no earlier run registered (the same Redis outlives runs): the nonce is an alias.
const fresh = (nonce) => gql`
  query Stats {
    patientStats {
      total
    }
    run_${nonce}: __typename
  }
`;
const UNREGISTERED = gql`
  query Unlisted {
    patientStats {
      active
    }
  }
`;

function client(url, token, { clientName, useGET = false, sent }) {
  const loggingFetch = async (input, init = {}) => {
    const method = init.method ?? "GET";
    let hasQuery;
    if (method === "GET") {
      hasQuery = new URL(input).searchParams.has("query");
    } else {
      hasQuery = "query" in JSON.parse(init.body);
    }
    const response = await fetch(input, init);
    sent.push({ method, hasQuery, status: response.status });
    return response;
  };
  const headers = { authorization: `Bearer ${token}` };
  if (clientName) headers["apollographql-client-name"] = clientName;
  const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: useGET }).concat(
    new HttpLink({ uri: url, headers, fetch: loggingFetch }),
  );
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

async function ask(apollo, query) {
  try {
    const result = await apollo.query({ query, fetchPolicy: "no-cache" });
    return { data: result.data ?? null };
  } catch (error) {
    const errors = error.errors ?? [];
    return { error: errors.map((e) => e.extensions?.code ?? e.message).join(",") || error.message };
  }
}

async function run(url, token, nonce) {
  const FRESH = fresh(nonce);
  const out = {};
  const scenario = async (name, options, query) => {
    const sent = [];
    const result = await ask(client(url, token, { ...options, sent }), query);
    out[name] = { ...result, sent };
  };
  // The default mode (open): unknown hash, then the full document, then a hit.
  await scenario("apq-first", {}, FRESH);
  await scenario("apq-again", {}, FRESH);
  await scenario("apq-get", { useGET: true }, FRESH);
  // A trusted client: the registered document by hash, by GET; anything else is refused.
  await scenario("trusted-hit", { clientName: "ios" }, REGISTERED);
  await scenario("trusted-get", { clientName: "ios", useGET: true }, REGISTERED);
  await scenario("trusted-refused", { clientName: "ios" }, UNREGISTERED);
  console.log(JSON.stringify(out));
}

const [command, url, token, nonce] = process.argv.slice(2);
if (command === "manifest") {
  // The manifest holds what the client will really send: the cache adds __typename fields.
  const body = print(new InMemoryCache().transformDocument(REGISTERED));
  console.log(
    JSON.stringify({
      format: "apollo-persisted-query-manifest",
      version: 1,
      operations: [{ id: sha256(body), body, name: "Team", type: "query" }],
    }),
  );
} else {
  await run(url, token, nonce);
}
