// Book the patient with a practitioner. Domain failures come back as userErrors and are shown
// next to the form: SLOT_TAKEN when the practitioner is already booked then (the database's
// exclusion constraint decides), VALIDATION for a bad period.
import { useMutation } from "@apollo/client/react";
import { useState, type FormEvent } from "react";

import { BookAppointmentDocument, PatientPageDocument } from "../__generated__/graphql";
import { RequestError, UserErrors } from "../components/Problems";
import type { Practitioner } from "../hospital";
import { addDays, clock, dateTime, instantAt, today } from "../time";

const DURATIONS = [15, 30, 45, 60];

/** The day and time entered are the hospital's (`zone`), wherever the browser is. */
export function BookingForm({
  patientId,
  zone,
  practitioners,
}: {
  patientId: string;
  zone: string;
  practitioners: Practitioner[];
}) {
  const active = practitioners.filter((p) => p.active);
  const [practitionerId, setPractitionerId] = useState("");
  const [day, setDay] = useState(() => addDays(today(zone), 1));
  const [time, setTime] = useState("09:00");
  const [minutes, setMinutes] = useState(30);
  const [book, { data, loading, error }] = useMutation(BookAppointmentDocument, {
    // The new appointment belongs in the patient's list, in the server's order.
    refetchQueries: [PatientPageDocument],
    awaitRefetchQueries: true,
  });
  const chosen = practitionerId || active[0]?.id || "";
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const startAt = instantAt(day, time, zone);
    const endAt = new Date(Date.parse(startAt) + minutes * 60_000).toISOString();
    await book({ variables: { input: { patientId, practitionerId: chosen, startAt, endAt } } });
  };
  const payload = data?.scheduleAppointment;
  const booked = payload?.appointment;
  return (
    <form className="booking" onSubmit={submit} aria-label="Book an appointment">
      <label>
        With{" "}
        <select value={chosen} onChange={(e) => setPractitionerId(e.target.value)} required>
          {active.map((p) => (
            <option key={p.id} value={p.id}>
              {p.givenName} {p.familyName} ({p.specialty})
            </option>
          ))}
        </select>
      </label>
      <label>
        Day <input type="date" value={day} onChange={(e) => setDay(e.target.value)} required />
      </label>
      <label>
        At{" "}
        <input
          type="time"
          step={900}
          value={time}
          onChange={(e) => setTime(e.target.value)}
          required
        />
      </label>
      <label>
        For{" "}
        <select value={minutes} onChange={(e) => setMinutes(Number(e.target.value))}>
          {DURATIONS.map((m) => (
            <option key={m} value={m}>
              {m} min
            </option>
          ))}
        </select>
      </label>
      <button type="submit" disabled={loading || !chosen}>
        Book
      </button>
      {booked && (
        <p className="success" role="status">
          Booked {dateTime(booked.startAt, zone)}–{clock(booked.endAt, zone)} with{" "}
          {booked.practitioner.givenName} {booked.practitioner.familyName}.
        </p>
      )}
      <UserErrors errors={payload?.userErrors ?? []} />
      <RequestError error={error} />
    </form>
  );
}
