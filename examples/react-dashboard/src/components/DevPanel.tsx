// A small panel for developers: what each operation cost (extensions.cost) and what went over
// the wire (hash only or with the document, GET or POST, the Idempotency-Key).
import { useState } from "react";

import { useDevLog, type Entry } from "../devlog";

function costLine(entry: Entry): string {
  const cost = entry.cost;
  if (!cost) return "no cost reported";
  const parts = [`requested ${cost.requestedQueryCost}`, `actual ${cost.actualQueryCost ?? "–"}`];
  const throttle = cost.throttleStatus;
  if (throttle) {
    const available = Math.floor(throttle.currentlyAvailable);
    parts.push(`budget ${available}/${throttle.maximumAvailable} (+${throttle.restoreRate}/s)`);
  }
  return parts.join(" · ");
}

export function DevPanel() {
  const log = useDevLog();
  const [open, setOpen] = useState(false);
  const last = log[0];
  return (
    <aside className="dev-panel" aria-label="Dev panel">
      <button type="button" className="link" onClick={() => setOpen(!open)}>
        {open ? "▾" : "▸"} dev
      </button>
      {last ? (
        <span data-testid="last-cost" data-operation={last.operationName}>
          <strong>{last.operationName}</strong> {costLine(last)}
        </span>
      ) : (
        <span>no operation yet</span>
      )}
      {open && (
        <table>
          <thead>
            <tr>
              <th>operation</th>
              <th>sent</th>
              <th>cost</th>
            </tr>
          </thead>
          <tbody>
            {log.map((entry, i) => (
              <tr key={i}>
                <td>
                  {entry.operationType} {entry.operationName}
                </td>
                <td>
                  {entry.sent.map((s, j) => (
                    <div key={j}>
                      {s.method} {s.withDocument ? "with document" : "hash only"} →{" "}
                      {s.status ?? "…"}
                      {s.idempotencyKey && <> · key {s.idempotencyKey.slice(0, 8)}…</>}
                    </div>
                  ))}
                </td>
                <td>{costLine(entry)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </aside>
  );
}
