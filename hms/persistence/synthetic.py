"""Synthetic hospital data: plausible rows for ``hms seed``, generated fast and reproducibly.

Rows come out as plain tuples in table column order, ready for binary COPY (ids as 32-digit hex
strings, which asyncpg parses in C). The contract:

* **Deterministic**: a hospital's rows depend only on ``(rng_seed, slug, now)``. Each stream
  (patients, visits) has its own ``random.Random``, so the order in which a caller consumes them
  does not change the data. Names and MRNs do not depend on ``now`` at all.
* **Valid**: every row satisfies the CHECKs, foreign keys and the no-double-booking exclusion
  constraint. Appointments are drawn per working day onto a 15-minute grid with an occupancy
  bitmask per practitioner, so a practitioner's appointments never overlap, whatever the status.
* **Plausible**: MRNs follow registration order; appointments and encounters only involve patients
  registered before the visit; past appointments are mostly fulfilled, future ones booked; walk-in
  encounters that have not ended yet are ``in-progress`` with no ``period_end``.
* **Cheap**: the generator shares two cores with PostgreSQL during a million-patient load, so
  the hot loops index precomputed tables with ``rng.random()`` and reuse precomputed datetimes
  instead of calling ``randrange``/``choice`` or doing date arithmetic per row.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import random
import unicodedata
import uuid
import zoneinfo
from collections.abc import Collection, Iterator, Sequence
from typing import NamedTuple

from hms.models.ids import uuid7_int

Row = tuple[object, ...]

APPOINTMENTS_PER_PATIENT = 5
ENCOUNTERS_PER_PATIENT = 3
PATIENTS_PER_PRACTITIONER = 50
MIN_PRACTITIONERS = 5
PAST_DAYS = 730  # the schedule covers about two years back ...
FUTURE_DAYS = 91  # ... and three months ahead
REGISTRATION_DAYS = 3 * 365
SLOTS_PER_DAY = 36  # 08:00-17:00 local in quarter hours
#: Share of fulfilled appointments that get an encounter; walk-ins make up the rest of the target.
ENCOUNTER_PER_FULFILLED = 0.7
P_FULFILLED = 0.81

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_QUARTER = dt.timedelta(minutes=15)


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _rows(text: str) -> list[list[str]]:
    """Parse a ``|``-separated table; an indented line without ``|`` continues the last cell."""
    rows: list[list[str]] = []
    for line in text.strip("\n").splitlines():
        if "|" in line:
            rows.append([cell.strip() for cell in line.split("|")])
        else:
            rows[-1][-1] += " " + line.strip()
    return rows


#: slug | name | timezone: the catalogue new hospitals are drawn from (``-2``, ``-3`` when used up)
HOSPITALS = _rows("""
    st-mary        | St. Mary's Hospital             | Europe/London
    riverside      | Riverside General Hospital      | America/New_York
    northside      | Northside Medical Center        | America/Chicago
    lakeview       | Lakeview Community Hospital     | America/Denver
    mercy          | Mercy Regional Medical Center   | America/Los_Angeles
    st-luke        | St. Luke's Hospital             | Europe/Dublin
    hillcrest      | Hillcrest Memorial Hospital     | Australia/Sydney
    harbor-view    | Harbor View Medical Center      | Pacific/Auckland
    good-samaritan | Good Samaritan Hospital         | Europe/Berlin
    valley         | Valley Children's Hospital      | America/Phoenix
    cedar-grove    | Cedar Grove University Hospital | America/Toronto
    bayside        | Bayside Clinic                  | Asia/Singapore
""")
FEMALE = _names(
    "Olivia Emma Ava Sophia Isabella Mia Charlotte Amelia Harper Evelyn Abigail Emily Elizabeth "
    "Sofia Madison Avery Ella Scarlett Grace Chloe Victoria Riley Aria Lily Zoey Penelope Layla "
    "Nora Hannah Maria Fatima Aisha Mei Yuki Priya Ananya Sara Lucía Elena Ingrid Astrid Chiara "
    "Amara Zainab Leila Noor Camila Valentina Daniela Margaret Dorothy Ruth Helen Patricia Linda "
    "Barbara Susan Nancy Karen Jennifer Chioma Siobhan"
)
MALE = _names(
    "Liam Noah Oliver Elijah James William Benjamin Lucas Henry Theodore Jack Levi Alexander "
    "Mateo Daniel Michael Mason Sebastian Ethan Logan Owen Samuel Jacob Asher Aiden John Joseph "
    "Wyatt David Leo Mohammed Ahmed Omar Ali Hiroshi Kenji Wei Jun Arjun Rahul Carlos Diego Luis "
    "José Juan Lars Erik Pierre Luca Marco Kwame Chidi Ivan Dmitri Robert Richard Thomas Charles "
    "George Frank Paul Seán Tomasz"
)
FAMILY = _names(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Patel Shah Kumar "
    "Singh Khan Chen Wang Li Zhang Liu Kim Park Choi Tanaka Suzuki Sato Okafor Adeyemi Mensah "
    "Mwangi Müller Schmidt Schneider Fischer Weber Rossi Russo Ferrari Bianchi Dubois Moreau "
    "Laurent Lefebvre Novák Kowalski Nowak Ivanov Petrov Jensen Hansen Nielsen Johansson "
    "Andersson O'Brien Murphy Kelly O'Connor Byrne MacDonald Silva Santos Oliveira Costa Pereira "
    "Haddad Cohen Levy Friedman Yilmaz Kaya Demir Hassan Nakamura Ito Gupta Reddy Das Fernandes "
    "García-López Nwosu Boateng Abara Horvath Papadopoulos"
)


class Specialty(NamedTuple):
    name: str
    weight: int  # share of practitioners
    reasons: tuple[str, ...]  # typical appointment reasons


class WalkIn(NamedTuple):
    kind: str  # encounter class
    weight: int  # share of walk-in encounters
    shortest: int  # length of stay, minutes
    longest: int
    reasons: tuple[str, ...]


def _list(cell: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in cell.split(";"))


SPECIALTIES = tuple(
    Specialty(name, int(weight), _list(reasons))
    for name, weight, reasons in _rows("""
    General Practice   | 24 | Annual physical; Follow-up visit; Blood pressure check;
                                Medication review; Lab results review; Vaccination
    Internal Medicine  | 10 | Diabetes management; Follow-up visit; Fatigue; Lab results review
    Pediatrics         | 10 | Well-child visit; Vaccination; Fever; Ear pain
    Cardiology         |  6 | Chest pain follow-up; Echocardiogram review; Palpitations
    Obstetrics and Gynecology | 6 | Prenatal visit; Postpartum check; Annual exam
    Orthopedics        |  6 | Knee pain; Back pain; Post-operative check; Sports injury
    Emergency Medicine |  5 | Wound check; Follow-up after ED visit
    Psychiatry         |  5 | Initial assessment; Medication review; Therapy session
    Dermatology        |  4 | Skin rash; Mole check; Acne follow-up
    Neurology          |  4 | Headache; Seizure follow-up; Numbness
    Oncology           |  4 | Chemotherapy review; Scan results; Follow-up visit
    Endocrinology      |  3 | Thyroid follow-up; Diabetes management
    Gastroenterology   |  3 | Abdominal pain; Colonoscopy consultation
    Ophthalmology      |  3 | Vision check; Glaucoma follow-up
    Otolaryngology     |  2 | Hearing test; Sinusitis
    Pulmonology        |  2 | Asthma review; Shortness of breath
    Urology            |  2 | Urinary symptoms; Kidney stone follow-up
    Rheumatology       |  2 | Joint pain; Arthritis follow-up
    """)
)
#: Walk-ins are the unscheduled encounters: emergencies, admissions, observation, home and video.
WALK_INS = tuple(
    WalkIn(kind, int(weight), int(shortest), int(longest), _list(reasons))
    for kind, weight, shortest, longest, reasons in _rows("""
    EMER   | 50 |   45 |   480 | Chest pain; Shortness of breath; Fall; Abdominal pain;
                                  Laceration; Fever; Suspected fracture; Allergic reaction
    IMP    | 18 | 1440 | 14400 | Pneumonia; Hip replacement; Heart failure; Appendectomy; Stroke
    OBSENC | 14 |  240 |  2160 | Observation after fall; Chest pain observation; Dehydration
    HH     |  8 |   30 |    90 | Home wound care; Post-discharge visit; Medication check
    VR     | 10 |   10 |    30 | Telehealth follow-up; Prescription renewal; Results discussion
    """)
)
CANCELLATION_REASONS = _list(
    "Patient request; Patient unwell; Rescheduled; Practitioner unavailable; Transport problem;"
    " Weather; Duplicate booking"
)
_DOMAINS = ("example.com", "example.org", "example.net")
_AREA_CODES = tuple(range(201, 990, 37))
_WALK_IN_PICKS = tuple(walk_in for walk_in in WALK_INS for _ in range(walk_in.weight))
_DURATIONS = (1,) * 9 + (2,) * 8 + (3,) * 3  # 15 min 45%, 30 min 40%, 45 min 15%
_WEEKDAY_LOAD = (1.15, 1.05, 1.0, 1.0, 0.8)


def _ascii(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


_EMAIL_NAME = {name: _ascii(name) for name in (*FEMALE, *MALE, *FAMILY)}


def uuid7_hex(ms: int, rand: int) -> str:
    """The id ``hms.models.ids.uuid7`` would make for ``ms``, but with caller-supplied random bits.

    ``rand`` supplies the 74 random bits, drawn from a seeded RNG so a seed reproduces its ids;
    hex without dashes because that is what asyncpg's COPY encoder parses fastest.
    """
    return f"{uuid7_int(ms, rand):032x}"


def _ms(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def _spread(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``weights`` that sum to ``total``."""
    scale = sum(weights) or 1.0
    parts: list[int] = []
    acc, done = 0.0, 0
    for weight in weights:
        acc += weight
        upto = round(total * acc / scale)
        parts.append(upto - done)
        done = upto
    return parts


@dataclasses.dataclass(frozen=True, slots=True)
class HospitalPlan:
    """One hospital to create: its identity and size. ``seed`` keys all of its random streams."""

    id: uuid.UUID
    slug: str
    name: str
    timezone: str
    patients: int
    seed: str

    @property
    def practitioners(self) -> int:
        return max(MIN_PRACTITIONERS, round(self.patients / PATIENTS_PER_PRACTITIONER))

    @property
    def appointments(self) -> int:
        return APPOINTMENTS_PER_PATIENT * self.patients


def plan_hospitals(
    taken: Collection[str], count: int, patients: int, rng_seed: int, now: dt.datetime
) -> list[HospitalPlan]:
    """``count`` new hospitals whose slugs avoid ``taken`` (``st-mary``, then ``st-mary-2``, ...).

    The per-hospital seed includes the slug, so seeding the same database twice with the same
    ``rng_seed`` yields new hospitals with distinct ids instead of colliding with the first run.
    """
    catalogue = list(HOSPITALS)
    random.Random(rng_seed).shuffle(catalogue)
    used, round_ = set(taken), 1
    plans: list[HospitalPlan] = []
    while len(plans) < count:
        for base_slug, base_name, timezone in catalogue:
            slug = base_slug if round_ == 1 else f"{base_slug}-{round_}"
            if slug in used or len(plans) == count:
                continue
            used.add(slug)
            seed = f"{rng_seed}/{slug}"
            rand = random.Random(f"{seed}/id").getrandbits(74)
            name = base_name if round_ == 1 else f"{base_name} {round_}"
            hospital_id = uuid.UUID(uuid7_hex(_ms(now), rand))
            plans.append(HospitalPlan(hospital_id, slug, name, timezone, patients, seed))
        round_ += 1
    return plans


def _zone(name: str) -> tuple[dt.tzinfo, str]:
    try:
        return zoneinfo.ZoneInfo(name), name
    except zoneinfo.ZoneInfoNotFoundError:  # no tz database (e.g. Windows without tzdata)
        return dt.UTC, "UTC"


def hospital_row(plan: HospitalPlan) -> Row:
    return (plan.id.hex, plan.slug, plan.name, _zone(plan.timezone)[1])


@dataclasses.dataclass(slots=True)
class _Day:
    weekday: int
    midnight_ms: int  # local midnight, as UTC epoch milliseconds
    eligible: int  # patients registered before this day: visits pick among them
    appointments: int = 0
    walk_ins: int = 0
    slots: tuple[dt.datetime, ...] = ()  # 08:00 ... 17:00 local, every 15 minutes, in UTC
    slots_ms: tuple[int, ...] = ()


class HospitalRows:
    """All rows of one new hospital. Call ``patients()`` and ``visits()`` in any order."""

    def __init__(self, plan: HospitalPlan, now: dt.datetime) -> None:
        self.plan, self.now, self.now_ms = plan, now, _ms(now)
        self.hospital_id = plan.id.hex
        zone = _zone(plan.timezone)[0]
        people = random.Random(f"{plan.seed}/practitioners")
        self._practitioners: list[Row] = []
        self._reasons: list[tuple[str, ...]] = []
        picks_all: list[int] = []
        picks_active: list[int] = []
        start_ms = _ms(now - dt.timedelta(days=REGISTRATION_DAYS))
        specialty_weights = [specialty.weight for specialty in SPECIALTIES]
        for j in range(plan.practitioners):
            given = people.choice(FEMALE if people.random() < 0.55 else MALE)
            specialty, _, reasons = people.choices(SPECIALTIES, specialty_weights)[0]
            active = people.random() < 0.95
            row_id = uuid7_hex(start_ms + j, people.getrandbits(74))
            self._practitioners.append(
                (self.hospital_id, row_id, given, people.choice(FAMILY), specialty, active)
            )
            self._reasons.append(reasons)
            share = 1 + int(people.random() * 3)  # part-timers get fewer appointments
            picks_all += [j] * share
            if active:
                picks_active += [j] * share
        self._picks_all, self._picks_active = picks_all, picks_active or picks_all

        # The registry first: visits need every patient's id and registration time.
        registry = random.Random(f"{plan.seed}/registry")
        span = self.now_ms - start_ms
        recent_ms = self.now_ms - 30 * 86_400_000
        self._patient_ms = sorted(
            # ~5% joined in the last 30 days on top of a steady stream: "new patients" is non-empty.
            recent_ms + int(registry.random() * (self.now_ms - recent_ms))
            if registry.random() < 0.05
            else start_ms + int(registry.random() * span)
            for _ in range(plan.patients)
        )
        self._patient_ids = [uuid7_hex(ms, registry.getrandbits(74)) for ms in self._patient_ms]
        # ~1% have died since registering; visits after the death pick someone else.
        self._deceased = {
            i: ms + int(registry.random() * (self.now_ms - ms))
            for i, ms in enumerate(self._patient_ms)
            if registry.random() < 0.01
        }

        visits = self._visits_rng = random.Random(f"{plan.seed}/visits")
        today = now.astimezone(zone).date()
        self._days: list[_Day] = []
        for offset in range(-PAST_DAYS, FUTURE_DAYS + 1):
            date = today + dt.timedelta(days=offset)
            midnight = dt.datetime(date.year, date.month, date.day, tzinfo=zone)
            midnight_ms = _ms(midnight)
            registered = bisect.bisect_left(self._patient_ms, midnight_ms)
            day = _Day(date.weekday(), midnight_ms, max(1, registered))
            if day.weekday < 5:
                opening = midnight.replace(hour=8).astimezone(dt.UTC)
                day.slots = tuple(opening + q * _QUARTER for q in range(SLOTS_PER_DAY + 1))
                day.slots_ms = tuple(_ms(slot) for slot in day.slots)
            self._days.append(day)
        workdays = [d for d in self._days if d.slots]
        loads = [_WEEKDAY_LOAD[d.weekday] * (0.85 + 0.3 * visits.random()) for d in workdays]
        for day, count in zip(workdays, _spread(plan.appointments, loads), strict=True):
            day.appointments = count
        past = [d for d in self._days if d.midnight_ms <= self.now_ms]
        booked_past = sum(d.appointments for d in past if d.slots and d.slots_ms[0] < self.now_ms)
        linked = ENCOUNTER_PER_FULFILLED * P_FULFILLED * booked_past
        walk_ins = max(0, round(ENCOUNTERS_PER_PATIENT * plan.patients - linked))
        for day, count in zip(past, _spread(walk_ins, [1.0] * len(past)), strict=True):
            day.walk_ins = count
        # Booking lead times (how long before the visit it was made), skewed towards short.
        self._leads = [
            dt.timedelta(
                days=1 + int(89 * visits.random() ** 2), seconds=int(visits.random() * 86400)
            )
            for _ in range(1009)
        ]
        self._leads_ms = [lead // dt.timedelta(milliseconds=1) for lead in self._leads]

    def practitioners(self) -> list[Row]:
        return self._practitioners

    def patients(self) -> Iterator[Row]:
        """Patient rows in registration order, so MRNs and ids both grow with ``created_at``."""
        rng = random.Random(f"{self.plan.seed}/patients")
        rand = rng.random
        hospital_id, deceased_ms = self.hospital_id, self._deceased
        n_female, n_male, n_family = len(FEMALE), len(MALE), len(FAMILY)
        born_from = dt.date(1930, 1, 1).toordinal()
        born_span = dt.date(2024, 12, 31).toordinal() - born_from + 1
        for i, (created_ms, row_id) in enumerate(
            zip(self._patient_ms, self._patient_ids, strict=True)
        ):
            created = EPOCH + dt.timedelta(milliseconds=created_ms)
            r = rand()
            gender = (
                "female" if r < 0.49 else "male" if r < 0.97 else "other" if r < 0.985
                else "unknown"
            )  # fmt: skip
            if gender == "female" or (gender != "male" and rand() < 0.5):
                given = FEMALE[int(rand() * n_female)]
            else:
                given = MALE[int(rand() * n_male)]
            family = FAMILY[int(rand() * n_family)]
            birth = dt.date.fromordinal(born_from + int(rand() * born_span))
            birth = min(birth, created.date())  # a newborn is registered on its birth day
            phone = email = nid = deceased = None
            if rand() < 0.85:
                area = _AREA_CODES[int(rand() * len(_AREA_CODES))]
                phone = f"+1 {area} 555 {int(rand() * 10_000):04d}"
            if rand() < 0.7:
                domain = _DOMAINS[int(rand() * 3)]
                email = f"{_EMAIL_NAME[given]}.{_EMAIL_NAME[family]}{int(rand() * 100)}@{domain}"
            if rand() < 0.8:
                nid = f"{int(rand() * 10_000):04d}"
            active = rand() < 0.9
            if i in deceased_ms:
                deceased = EPOCH + dt.timedelta(milliseconds=deceased_ms[i])
                active = False
            yield (
                hospital_id, row_id, f"MRN{i + 1:08d}", given, family, birth, gender, phone,
                email, active, deceased, nid, created, created, 1,
            )  # fmt: skip

    def chunks(self, target_rows: int) -> list[range]:
        """Day ranges of about ``target_rows`` visits (appointments and walk-ins) each."""
        chunks, first, rows = [], 0, 0
        for index, day in enumerate(self._days):
            rows += day.appointments + day.walk_ins
            if rows >= target_rows:
                chunks.append(range(first, index + 1))
                first, rows = index + 1, 0
        if first < len(self._days):
            chunks.append(range(first, len(self._days)))
        return chunks

    def visits(self, days: range, encounters: list[Row]) -> Iterator[Row]:
        """Yield the appointments of ``days``; append their encounters (and walk-ins) to a list.

        Chunks must be consumed in order, each one fully: the visit stream is one RNG sequence.
        The encounters are a side output because they can only be copied once their appointments
        are in; the caller copies ``encounters`` after draining this generator.
        """
        rng = self._visits_rng
        rand, bits = rng.random, rng.getrandbits
        hospital_id, now, now_ms = self.hospital_id, self.now, self.now_ms
        patient_ids, patient_ms, deceased = self._patient_ids, self._patient_ms, self._deceased
        practitioners, reasons = self._practitioners, self._reasons
        leads, leads_ms, n_leads = self._leads, self._leads_ms, len(self._leads)
        for c in days:
            day = self._days[c]
            slots, slots_ms, eligible = day.slots, day.slots_ms, day.eligible
            picks = self._picks_active if day.midnight_ms > now_ms else self._picks_all
            n_picks = len(picks)
            busy: dict[int, int] = {}  # practitioner -> bitmask of taken quarter hours today
            for _ in range(day.appointments):
                for _attempt in range(20):
                    j = picks[int(rand() * n_picks)]
                    quarters = _DURATIONS[int(rand() * 20)]
                    q = int(rand() * (SLOTS_PER_DAY + 1 - quarters))
                    mask = ((1 << quarters) - 1) << q
                    taken = busy.get(j, 0)
                    if not taken & mask:
                        busy[j] = taken | mask
                        break
                else:  # a fully booked day: drop this appointment rather than double-book
                    continue
                start, end, start_ms = slots[q], slots[q + quarters], slots_ms[q]
                p = int(rand() * eligible)
                if deceased.get(p, start_ms) < start_ms:
                    p = self._alive(eligible, start_ms)
                lead = int(rand() * n_leads)
                created, created_ms = start - leads[lead], start_ms - leads_ms[lead]
                if created_ms > now_ms:  # booked for the future: booked in the past
                    created, created_ms = now - leads[lead], now_ms - leads_ms[lead]
                if created_ms < patient_ms[p]:  # booked at registration
                    created_ms = patient_ms[p]
                    created = EPOCH + dt.timedelta(milliseconds=created_ms)
                cancellation = None
                r = rand()
                if slots_ms[q + quarters] <= now_ms:
                    status = (
                        "fulfilled" if r < P_FULFILLED else "cancelled" if r < 0.91
                        else "noshow" if r < 0.98 else "entered-in-error"
                    )  # fmt: skip
                elif start_ms <= now_ms:
                    status = "checked-in" if r < 0.6 else "arrived"
                else:
                    status = (
                        "booked" if r < 0.8 else "pending" if r < 0.88 else "proposed" if r < 0.93
                        else "waitlist" if r < 0.96 else "cancelled"
                    )  # fmt: skip
                if status == "cancelled":
                    cancellation = CANCELLATION_REASONS[int(rand() * len(CANCELLATION_REASONS))]
                options = reasons[j]
                reason = options[int(rand() * len(options))] if rand() < 0.9 else None
                row_id = uuid7_hex(created_ms, bits(74))
                practitioner_id = practitioners[j][1]
                yield (
                    hospital_id, row_id, patient_ids[p], practitioner_id, status, start, end,
                    reason, cancellation, created, created, 1,
                )  # fmt: skip
                if status == "fulfilled" and rand() < ENCOUNTER_PER_FULFILLED:
                    r = rand()
                    kind = "AMB" if r < 0.9 else "VR" if r < 0.97 else "HH"
                    encounters.append((
                        hospital_id, uuid7_hex(start_ms, bits(74)), patient_ids[p],
                        practitioner_id, row_id, "finished", kind, start, end, reason,
                        start, start, 1,
                    ))  # fmt: skip
                elif status == "checked-in":  # being seen right now
                    encounters.append((
                        hospital_id, uuid7_hex(start_ms, bits(74)), patient_ids[p],
                        practitioner_id, row_id, "in-progress", "AMB", start, None, reason,
                        start, start, 1,
                    ))  # fmt: skip
            self._walk_ins(day, encounters)

    def _walk_ins(self, day: _Day, out: list[Row]) -> None:
        """Unscheduled encounters of one day: emergencies, admissions, home and video visits."""
        rng = self._visits_rng
        rand, bits = rng.random, rng.getrandbits
        now_ms, picks = self.now_ms, self._picks_active
        for _ in range(day.walk_ins):
            start_ms = day.midnight_ms + int(rand() * 86_400_000)
            if start_ms > now_ms:  # later today: has not happened yet
                continue
            kind, _, shortest, longest, reasons = _WALK_IN_PICKS[int(rand() * len(_WALK_IN_PICKS))]
            end_ms = start_ms + 60_000 * (shortest + int(rand() * (longest - shortest)))
            start = EPOCH + dt.timedelta(milliseconds=start_ms)
            end: dt.datetime | None = None
            if end_ms > now_ms:
                status = "in-progress"
            else:
                status = "entered-in-error" if rand() < 0.01 else "finished"
                end = EPOCH + dt.timedelta(milliseconds=end_ms)
            practitioner_id = None
            if rand() < 0.7:
                practitioner_id = self._practitioners[picks[int(rand() * len(picks))]][1]
            p = int(rand() * day.eligible)
            if self._deceased.get(p, start_ms) < start_ms:
                p = self._alive(day.eligible, start_ms)
            patient_id = self._patient_ids[p]
            reason = reasons[int(rand() * len(reasons))]
            out.append((
                self.hospital_id, uuid7_hex(start_ms, bits(74)), patient_id, practitioner_id,
                None, status, kind, start, end, reason, start, start, 1,
            ))  # fmt: skip

    def _alive(self, eligible: int, at_ms: int) -> int:
        """Another patient among the first ``eligible``, alive at ``at_ms`` (rarely needed)."""
        rand = self._visits_rng.random
        for _ in range(100):
            p = int(rand() * eligible)
            if self._deceased.get(p, at_ms) >= at_ms:
                break
        return p  # after 100 misses (a tiny, mostly deceased registry) accept the last pick
