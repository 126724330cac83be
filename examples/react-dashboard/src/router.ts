// Hash routes, so the built app is a few static files any server can hand out:
//   #/                    today's appointments        #/schedule/2026-01-05  another day
//   #/patients?q=ad       patient search              #/patients/<id>        a patient's page
import { useSyncExternalStore } from "react";

export type Route =
  | { page: "schedule"; date: string | null }
  | { page: "patients"; query: string }
  | { page: "patient"; id: string };

export function parse(hash: string): Route {
  const [path = "", search = ""] = hash.replace(/^#/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "patients" && parts[1]) return { page: "patient", id: parts[1] };
  if (parts[0] === "patients") {
    return { page: "patients", query: new URLSearchParams(search).get("q") ?? "" };
  }
  return { page: "schedule", date: parts[0] === "schedule" ? (parts[1] ?? null) : null };
}

export function href(route: Route): string {
  switch (route.page) {
    case "schedule":
      return route.date ? `#/schedule/${route.date}` : "#/";
    case "patients":
      return route.query ? `#/patients?q=${encodeURIComponent(route.query)}` : "#/patients";
    case "patient":
      return `#/patients/${encodeURIComponent(route.id)}`;
  }
}

export function navigate(route: Route): void {
  window.location.hash = href(route);
}

function subscribe(listener: () => void): () => void {
  window.addEventListener("hashchange", listener);
  return () => window.removeEventListener("hashchange", listener);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash);
  return parse(hash);
}
