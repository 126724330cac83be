// One patient: who they are, their appointments (cancel one) and encounters, and a booking form.
import { useQuery } from "@apollo/client/react";

import { PatientPageDocument } from "../__generated__/graphql";
import { RequestError } from "../components/Problems";
import { useHospital } from "../hospital";
import { dateTime } from "../time";
import { AppointmentRow } from "./AppointmentRow";
import { BookingForm } from "./BookingForm";

export function PatientPage({ id }: { id: string }) {
  // errorPolicy "all": a field the role may not read (a confidential patient's birth date) is null
  // with a FORBIDDEN error on its path; the rest of the page still shows.
  const page = useQuery(PatientPageDocument, { variables: { id }, errorPolicy: "all" });
  const { hospital, practitioners, error } = useHospital();
  const patient = page.data?.patient;
  if (!patient || !hospital) {
    return (
      <section>
        <RequestError error={page.error ?? error} />
        <p>{page.loading || !hospital ? "Loading…" : "No such patient in this hospital."}</p>
      </section>
    );
  }
  const zone = hospital.timezone;
  return (
    <section aria-labelledby="patient-title">
      <h1 id="patient-title">
        {patient.familyName}, {patient.givenName}{" "}
        <small title="Medical record number">{patient.mrn}</small>
      </h1>
      <RequestError error={page.error} />
      <dl className="facts">
        <dt>Born</dt>
        <dd>{patient.birthDate ?? "–"}</dd>
        <dt>Gender</dt>
        <dd>{patient.gender.toLowerCase()}</dd>
        <dt>Phone</dt>
        <dd>{patient.phone ?? "–"}</dd>
        <dt>Email</dt>
        <dd>{patient.email ?? "–"}</dd>
        <dt>Status</dt>
        <dd>{patient.active ? "active" : "inactive"}</dd>
      </dl>

      <h2>
        Book an appointment <small>times in {zone}</small>
      </h2>
      <BookingForm patientId={patient.id} zone={zone} practitioners={practitioners} />

      <h2>Appointments</h2>
      <table className="appointments">
        <thead>
          <tr>
            <th>When</th>
            <th>With</th>
            <th>Status</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {patient.appointments.edges.map(({ node }) => (
            <AppointmentRow key={node.id} appointment={node} zone={zone} />
          ))}
        </tbody>
      </table>
      {patient.appointments.edges.length === 0 && <p className="muted">No appointments.</p>}

      <h2>Encounters</h2>
      <table className="encounters">
        <thead>
          <tr>
            <th>Start</th>
            <th>End</th>
            <th>Class</th>
            <th>Status</th>
            <th>With</th>
          </tr>
        </thead>
        <tbody>
          {patient.encounters.edges.map(({ node }) => (
            <tr key={node.id} data-testid="encounter-row">
              <td>{dateTime(node.periodStart, zone)}</td>
              <td>{node.periodEnd ? dateTime(node.periodEnd, zone) : "ongoing"}</td>
              <td>{node.class}</td>
              <td>{node.status}</td>
              <td>{node.practitioner?.familyName ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {patient.encounters.edges.length === 0 && <p className="muted">No encounters.</p>}
    </section>
  );
}
