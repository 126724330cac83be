// Where the API is and who we are. HMS has no login endpoint: a token comes from the build
// (VITE_HMS_TOKEN), from a link (#token=…&api=…, as `npm run demo` prints) or from the "paste a
// token" form. Links and the form keep it in sessionStorage: it lives as long as the tab.

export const CLIENT_NAME = "react-dashboard";
export const DEFAULT_API = "http://127.0.0.1:8000/graphql";

export interface Connection {
  api: string;
  token: string;
}

const TOKEN_KEY = "hms.token";
const API_KEY = "hms.api";

/** Take `#token=…[&api=…]` out of the address bar into sessionStorage, once, at start.
 *
 * A link may only set the API together with a token: one naming an API alone could send the
 * token already in this tab somewhere else. */
function takeLinkedConnection(): void {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  const api = params.get("api");
  if (api) sessionStorage.setItem(API_KEY, api);
  else sessionStorage.removeItem(API_KEY);
  // The token must not stay in the history or be copied along with the address.
  window.history.replaceState(null, "", `${window.location.pathname}${window.location.search}#/`);
}

export function initialConnection(): Connection {
  takeLinkedConnection();
  return {
    api: sessionStorage.getItem(API_KEY) || import.meta.env.VITE_HMS_API || DEFAULT_API,
    token: sessionStorage.getItem(TOKEN_KEY) || import.meta.env.VITE_HMS_TOKEN || "",
  };
}

export function saveConnection(connection: Connection): void {
  sessionStorage.setItem(TOKEN_KEY, connection.token);
  sessionStorage.setItem(API_KEY, connection.api);
}
