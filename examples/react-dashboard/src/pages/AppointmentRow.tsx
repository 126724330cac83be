// An appointment of the patient page, with "Cancel" for those that may still be cancelled. The
// cancellation sends the version this page shows: if someone changed the appointment since, the
// server answers VERSION_CONFLICT (with the current version) instead of overwriting their change.
import { useApolloClient, useMutation } from "@apollo/client/react";
import { useState, type FormEvent } from "react";

import {
  CancelAppointmentDocument,
  PatientPageDocument,
  type AppointmentStatus,
  type PatientPageQuery,
} from "../__generated__/graphql";
import { RequestError, UserErrors } from "../components/Problems";
import { clock, dateTime } from "../time";

type Appointment = NonNullable<
  PatientPageQuery["patient"]
>["appointments"]["edges"][number]["node"];

/** Statuses from which CANCELLED may be reached (hms/models/workflow.py). */
const CANCELLABLE: ReadonlySet<AppointmentStatus> = new Set([
  "PROPOSED",
  "PENDING",
  "WAITLIST",
  "BOOKED",
  "ARRIVED",
  "CHECKED_IN",
]);

export function AppointmentRow({ appointment, zone }: { appointment: Appointment; zone: string }) {
  const [asking, setAsking] = useState(false);
  const [reason, setReason] = useState("");
  const client = useApolloClient();
  const [cancel, { data, loading, error, reset }] = useMutation(CancelAppointmentDocument);
  const userErrors = data?.cancelAppointment.userErrors ?? [];
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const result = await cancel({
      variables: {
        input: { id: appointment.id, reason: reason.trim(), expectedVersion: appointment.version },
      },
    });
    // The answer's id, status and version update this row (and any list showing it) in the cache.
    if (result.data?.cancelAppointment.appointment) setAsking(false);
  };
  const reload = async () => {
    // After a conflict: show what the other person did, then start over.
    await client.refetchQueries({ include: [PatientPageDocument] });
    reset();
    setAsking(false);
  };
  const { practitioner } = appointment;
  return (
    <tr data-testid="appointment-row" data-id={appointment.id}>
      <td>
        <time dateTime={appointment.startAt}>{dateTime(appointment.startAt, zone)}</time>–
        {clock(appointment.endAt, zone)}
      </td>
      <td>
        {practitioner.givenName} {practitioner.familyName} <small>{practitioner.specialty}</small>
      </td>
      <td>
        <span className="badge" data-testid="appointment-status">
          {appointment.status}
        </span>{" "}
        <small className="muted">v{appointment.version}</small>
      </td>
      <td>
        {CANCELLABLE.has(appointment.status) && !asking && (
          <button type="button" onClick={() => setAsking(true)}>
            Cancel…
          </button>
        )}
        {asking && (
          <form className="inline" onSubmit={submit} aria-label="Cancel appointment">
            <input
              aria-label="Reason"
              placeholder="Reason"
              required
              value={reason}
              onChange={(e) => setReason(e.target.value)}
            />
            <button type="submit" disabled={loading}>
              Confirm cancel
            </button>
            <button type="button" className="link" onClick={() => setAsking(false)}>
              Keep
            </button>
          </form>
        )}
        <UserErrors errors={userErrors} />
        {userErrors.some((e) => e.code === "VERSION_CONFLICT") && (
          <button type="button" onClick={reload}>
            Reload
          </button>
        )}
        <RequestError error={error} />
      </td>
    </tr>
  );
}
