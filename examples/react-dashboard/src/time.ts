// Days and clock times are the hospital's (viewer.hospital.timezone), whatever the time zone of
// the computer the page runs on: a front desk's "today" is the hospital's today.
//
// A day is a plain YYYY-MM-DD string; the API speaks UTC instants (RFC 3339).

const PARTS = ["year", "month", "day", "hour", "minute", "second"] as const;
type Parts = Record<(typeof PARTS)[number], number>;

const formats = new Map<string, Intl.DateTimeFormat>();

/** The wall-clock reading of `instant` in `zone`. */
function partsIn(instant: Date, zone: string): Parts {
  let format = formats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formats.set(zone, format);
  }
  const parts = Object.fromEntries(PARTS.map((name) => [name, 0])) as Parts;
  for (const part of format.formatToParts(instant)) {
    if ((PARTS as readonly string[]).includes(part.type)) {
      parts[part.type as keyof Parts] = Number(part.value);
    }
  }
  return parts;
}

const pad = (n: number) => String(n).padStart(2, "0");

/** How far `zone`'s clocks are ahead of UTC at `instant`, in milliseconds. */
function offset(instant: number, zone: string): number {
  const p = partsIn(new Date(instant), zone);
  const wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return wall - Math.floor(instant / 1000) * 1000;
}

/** The instant at which `zone`'s clocks read `day` `time` (HH:MM). In a gap (spring forward)
 * the time after it; in an overlap (fall back) the earlier of the two. */
export function instantAt(day: string, time: string, zone: string): string {
  const [y = 1970, m = 1, d = 1] = day.split("-").map(Number);
  const [hh = 0, mm = 0] = time.split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  const first = wall - offset(wall, zone);
  const second = wall - offset(first, zone);
  return new Date(Math.min(first, second)).toISOString();
}

/** [start, end) of `day` in `zone` as UTC instants, which the API's DateTime wants. */
export function dayRange(day: string, zone: string): { from: string; to: string } {
  return { from: instantAt(day, "00:00", zone), to: instantAt(addDays(day, 1), "00:00", zone) };
}

export function today(zone: string): string {
  const p = partsIn(new Date(), zone);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

export function addDays(day: string, days: number): string {
  const [y = 1970, m = 1, d = 1] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

/** HH:MM in `zone`. */
export function clock(instant: string, zone: string): string {
  const p = partsIn(new Date(instant), zone);
  return `${pad(p.hour)}:${pad(p.minute)}`;
}

/** YYYY-MM-DD HH:MM in `zone`. */
export function dateTime(instant: string, zone: string): string {
  const p = partsIn(new Date(instant), zone);
  return `${p.year}-${pad(p.month)}-${pad(p.day)} ${pad(p.hour)}:${pad(p.minute)}`;
}

export function longDay(day: string): string {
  const [y = 1970, m = 1, d = 1] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString([], {
    timeZone: "UTC",
    weekday: "long",
    year: "numeric",
    month: "long",
    day: "numeric",
  });
}
