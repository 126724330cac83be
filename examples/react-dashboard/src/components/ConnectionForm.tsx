// "Paste a token": HMS has no login endpoint; in development `hms token --hospital SLUG --role
// front_desk --client react-dashboard` prints one.
import { useState, type FormEvent } from "react";

import type { Connection } from "../config";

export function ConnectionForm({
  connection,
  onSave,
}: {
  connection: Connection;
  onSave: (connection: Connection) => void;
}) {
  const [api, setApi] = useState(connection.api);
  const [token, setToken] = useState(connection.token);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    onSave({ api: api.trim(), token: token.trim() });
  };
  return (
    <form className="connection" onSubmit={submit} aria-label="Connection">
      <label>
        API <input value={api} onChange={(e) => setApi(e.target.value)} size={36} />
      </label>
      <label>
        Token{" "}
        <input
          name="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="paste the output of: hms token --role front_desk …"
          size={48}
        />
      </label>
      <button type="submit">Use</button>
    </form>
  );
}
