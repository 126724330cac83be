// What the dev panel shows: the requests this tab really sent (method, whether the document text
// went along, status) and the cost the server reported for each operation (extensions.cost).
import { useSyncExternalStore } from "react";

export interface ThrottleStatus {
  maximumAvailable: number;
  currentlyAvailable: number;
  restoreRate: number;
}

/** README "Cost limits": every executed answer carries this under extensions.cost. */
export interface Cost {
  requestedQueryCost: number;
  actualQueryCost: number | null;
  throttleStatus: ThrottleStatus | null;
}

export interface Sent {
  operationName: string;
  method: string;
  /** False when only the hash went (persisted query): the server ran its registered copy. */
  withDocument: boolean;
  idempotencyKey: string | null;
  status: number | null;
}

export interface Entry {
  operationName: string;
  operationType: string;
  cost: Cost | null;
  sent: Sent[];
}

const KEEP = 12;
let entries: readonly Entry[] = [];
let pending: Sent[] = [];
const listeners = new Set<() => void>();

function publish(next: readonly Entry[]): void {
  entries = next;
  for (const listener of listeners) listener();
}

export function recordSent(sent: Sent): void {
  pending.push(sent);
}

export function recordResult(
  operationName: string,
  operationType: string,
  cost: Cost | null,
): void {
  const sent = pending.filter((s) => s.operationName === operationName);
  pending = pending.filter((s) => s.operationName !== operationName);
  publish([{ operationName, operationType, cost, sent }, ...entries].slice(0, KEEP));
}

export function useDevLog(): readonly Entry[] {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => entries,
  );
}

/** extensions.cost if it has the documented shape, else null. */
export function costOf(extensions: Record<string, unknown> | undefined): Cost | null {
  const cost = extensions?.["cost"];
  if (typeof cost !== "object" || cost === null) return null;
  const value = cost as Partial<Cost>;
  if (typeof value.requestedQueryCost !== "number") return null;
  return {
    requestedQueryCost: value.requestedQueryCost,
    actualQueryCost: value.actualQueryCost ?? null,
    throttleStatus: value.throttleStatus ?? null,
  };
}
