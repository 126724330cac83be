// Patients by name prefix, a page at a time: "Load more" asks for the page after
// pageInfo.endCursor (keyset pagination) and the cache appends it to the list.
import { useQuery } from "@apollo/client/react";
import { useState, type FormEvent } from "react";

import { PatientSearchDocument } from "../__generated__/graphql";
import { RequestError } from "../components/Problems";
import { href, navigate } from "../router";

export const PAGE_SIZE = 10;

export function PatientSearchPage({ query }: { query: string }) {
  const [text, setText] = useState(query);
  const search = useQuery(PatientSearchDocument, {
    variables: { prefix: query || null, first: PAGE_SIZE },
    errorPolicy: "all",
    notifyOnNetworkStatusChange: true,
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    navigate({ page: "patients", query: text.trim() });
  };
  const connection = search.data?.patients;
  const patients = connection?.edges.map((edge) => edge.node) ?? [];
  return (
    <section aria-labelledby="search-title">
      <h1 id="search-title">Patients</h1>
      <form role="search" onSubmit={submit}>
        <input
          type="search"
          aria-label="Name starts with"
          placeholder="Family or given name starts with…"
          value={text}
          onChange={(e) => setText(e.target.value)}
          maxLength={100}
        />
        <button type="submit">Search</button>
      </form>
      <RequestError error={search.error} />
      <table className="patients">
        <thead>
          <tr>
            <th>Name</th>
            <th>MRN</th>
            <th>Born</th>
            <th>Gender</th>
            <th>Active</th>
          </tr>
        </thead>
        <tbody>
          {patients.map((p) => (
            <tr key={p.id} data-testid="patient-row">
              <td>
                <a href={href({ page: "patient", id: p.id })}>
                  {p.familyName}, {p.givenName}
                </a>
              </td>
              <td>{p.mrn}</td>
              <td>{p.birthDate ?? "–"}</td>
              <td>{p.gender.toLowerCase()}</td>
              <td>{p.active ? "yes" : "no"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted" data-testid="patient-count">
        {search.loading ? "Loading…" : `${patients.length} shown`}
        {connection && !connection.pageInfo.hasNextPage && !search.loading ? ", no more" : ""}
      </p>
      {connection?.pageInfo.hasNextPage && (
        <button
          type="button"
          disabled={search.loading}
          onClick={() => search.fetchMore({ variables: { after: connection.pageInfo.endCursor } })}
        >
          Load more
        </button>
      )}
    </section>
  );
}
