// A day's appointments (today's by default, in the hospital's time zone), one column per
// practitioner.
import { useQuery } from "@apollo/client/react";

import { DayScheduleDocument, type DayScheduleQuery } from "../__generated__/graphql";
import { RequestError } from "../components/Problems";
import { useHospital, type Practitioner } from "../hospital";
import { href, navigate } from "../router";
import { addDays, clock, dayRange, longDay, today } from "../time";

type Appointment = DayScheduleQuery["appointments"]["edges"][number]["node"];

export function SchedulePage({ date }: { date: string | null }) {
  const { hospital, practitioners, error } = useHospital();
  if (!hospital) {
    return (
      <section>
        <RequestError error={error} />
        <p>Loading…</p>
      </section>
    );
  }
  return (
    <Day
      day={date ?? today(hospital.timezone)}
      zone={hospital.timezone}
      name={hospital.name}
      practitioners={practitioners}
    />
  );
}

function Day({
  day,
  zone,
  name,
  practitioners,
}: {
  day: string;
  zone: string;
  name: string;
  practitioners: Practitioner[];
}) {
  const schedule = useQuery(DayScheduleDocument, {
    variables: dayRange(day, zone),
    errorPolicy: "all",
    notifyOnNetworkStatusChange: true,
  });
  const appointments = schedule.data?.appointments.edges.map((edge) => edge.node) ?? [];
  const byPractitioner = new Map<string, Appointment[]>();
  for (const appointment of appointments) {
    const list = byPractitioner.get(appointment.practitioner.id) ?? [];
    list.push(appointment);
    byPractitioner.set(appointment.practitioner.id, list);
  }
  // Everyone with an appointment that day, and every active practitioner (free all day).
  const columns = practitioners.filter((p) => p.active || byPractitioner.has(p.id));
  const pageInfo = schedule.data?.appointments.pageInfo;
  const go = (to: string) => navigate({ page: "schedule", date: to });
  return (
    <section aria-labelledby="schedule-title">
      <h1 id="schedule-title">
        {longDay(day)}
        <small>
          {name} · times in {zone}
        </small>
      </h1>
      <nav className="day-nav">
        <button type="button" onClick={() => go(addDays(day, -1))}>
          ← Previous day
        </button>
        <button type="button" onClick={() => navigate({ page: "schedule", date: null })}>
          Today
        </button>
        <button type="button" onClick={() => go(addDays(day, 1))}>
          Next day →
        </button>
        <input
          type="date"
          aria-label="Day"
          value={day}
          onChange={(e) => e.target.value && go(e.target.value)}
        />
        <span className="count" data-testid="appointment-count">
          {schedule.data ? (
            <>
              {appointments.length} appointment{appointments.length === 1 ? "" : "s"}
              {pageInfo?.hasNextPage ? " so far" : ""}
            </>
          ) : (
            "Loading…"
          )}
        </span>
      </nav>
      <RequestError error={schedule.error} />
      <div className="columns">
        {columns.map((practitioner) => {
          const list = byPractitioner.get(practitioner.id) ?? [];
          return (
            <div className="column" key={practitioner.id} data-testid="practitioner-column">
              <h2>
                {practitioner.givenName} {practitioner.familyName}
                <small>{practitioner.specialty}</small>
              </h2>
              {schedule.data && list.length === 0 && <p className="muted">No appointments</p>}
              <ol>
                {list.map((a) => (
                  <li key={a.id} className={`status-${a.status.toLowerCase()}`}>
                    <time dateTime={a.startAt}>
                      {clock(a.startAt, zone)}–{clock(a.endAt, zone)}
                    </time>{" "}
                    <a href={href({ page: "patient", id: a.patient.id })}>
                      {a.patient.familyName}, {a.patient.givenName}
                    </a>{" "}
                    <span className="badge">{a.status}</span>
                  </li>
                ))}
              </ol>
            </div>
          );
        })}
      </div>
      {pageInfo?.hasNextPage && (
        <button
          type="button"
          disabled={schedule.loading}
          onClick={() => schedule.fetchMore({ variables: { after: pageInfo.endCursor } })}
        >
          Load more appointments
        </button>
      )}
    </section>
  );
}
