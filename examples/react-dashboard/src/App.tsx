import { ApolloProvider } from "@apollo/client/react";
import { useMemo, useState } from "react";

import { makeClient } from "./apollo";
import { ConnectionForm } from "./components/ConnectionForm";
import { DevPanel } from "./components/DevPanel";
import { initialConnection, saveConnection, type Connection } from "./config";
import { PatientPage } from "./pages/PatientPage";
import { PatientSearchPage } from "./pages/PatientSearchPage";
import { SchedulePage } from "./pages/SchedulePage";
import { href, useRoute } from "./router";

export function App() {
  const [connection, setConnection] = useState<Connection>(initialConnection);
  // A new token is a new user: a new client, so nothing cached for the last one is shown.
  const client = useMemo(() => makeClient(connection), [connection]);
  const route = useRoute();
  const use = (next: Connection) => {
    saveConnection(next);
    setConnection(next);
  };
  return (
    <>
      <header>
        <strong>HMS front desk</strong>
        <nav>
          <a href={href({ page: "schedule", date: null })}>Schedule</a>
          <a href={href({ page: "patients", query: "" })}>Patients</a>
        </nav>
        <ConnectionForm key={connection.token} connection={connection} onSave={use} />
      </header>
      {connection.token ? (
        <ApolloProvider client={client}>
          <main>
            {route.page === "schedule" && <SchedulePage date={route.date} />}
            {route.page === "patients" && (
              <PatientSearchPage key={route.query} query={route.query} />
            )}
            {route.page === "patient" && <PatientPage id={route.id} />}
          </main>
        </ApolloProvider>
      ) : (
        <main>
          <p>
            Paste a token above: <code>hms token --hospital SLUG --role front_desk --client
            react-dashboard</code>.
          </p>
        </main>
      )}
      <DevPanel />
    </>
  );
}
