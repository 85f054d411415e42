//! When a schedule fires: its cron expression in its time zone, and which fire times are due
//! after a pause in the service (catch-up).
//!
//! Expressions are the `cron` crate's (6 or 7 fields, seconds first, day-of-week 1 = Sunday …
//! 7 = Saturday or names) or standard 5-field crontab (minute first, day-of-week 0 or 7 =
//! Sunday), which is translated: a `0` seconds field is prepended and numeric days of the week
//! become names. The time zone is an IANA name (`Europe/Berlin`), UTC by default.
//!
//! Daylight saving: a local time that does not exist (02:30 on the spring-forward day in
//! Berlin) does not fire that day; a local time that occurs twice (02:30 on the fall-back day)
//! fires once, at its first occurrence.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// What happens to fire times missed while the service was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed fire times are counted and dropped.
    Skip,
    /// The latest missed fire time fires (once); the others are dropped.
    #[default]
    Once,
    /// Every missed fire time fires, oldest first, up to `max_catch_up` (the latest ones).
    All,
}

/// A parsed cron expression in its zone.
#[derive(Debug, Clone)]
pub struct Timing {
    schedule: cron::Schedule,
    zone: Tz,
}

/// Day-of-week numbers of crontab (0 and 7 are Sunday) as the names the `cron` crate reads.
const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

fn crontab_day(token: &str) -> Result<String, String> {
    match token.parse::<usize>() {
        Ok(n) if n <= 7 => Ok(DAYS[n].to_string()),
        Ok(n) => Err(format!("day of week {n} is not 0 to 7")),
        Err(_) => Ok(token.to_string()), // `*`, `MON`…
    }
}

/// Translates a crontab day-of-week field (`1-5`, `0,6`, `*/2`, `MON-FRI`) for the cron crate.
fn crontab_days(field: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let translated = match range.split_once('-') {
            // `5-7` ends on Sunday-as-7: FRI-SAT plus SUN (the crate has no wrap-around).
            Some((a, "7")) if step.is_none() && a != "0" => {
                format!("{}-SAT,SUN", crontab_day(a)?)
            }
            Some((a, b)) => format!("{}-{}", crontab_day(a)?, crontab_day(b)?),
            None if range == "*" => "*".to_string(),
            None => crontab_day(range)?,
        };
        out.push(match step {
            Some(s) => format!("{translated}/{s}"),
            None => translated,
        });
    }
    Ok(out.join(","))
}

/// An expression in the cron crate's form.
fn normalise(expression: &str) -> Result<String, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    match fields.len() {
        5 => Ok(format!(
            "0 {} {} {} {} {}",
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            crontab_days(fields[4])?
        )),
        6 | 7 => Ok(fields.join(" ")),
        n => Err(format!(
            "{n} fields: expected 5 (crontab: minute hour day month weekday) or 6 to 7 (seconds \
             first)"
        )),
    }
}

impl Timing {
    /// Parses `expression` in `zone` (an IANA name); the error names what is wrong.
    pub fn parse(expression: &str, zone: &str) -> Result<Timing, String> {
        let zone = Tz::from_str(zone.trim()).map_err(|_| {
            format!("unknown time zone {zone:?} (an IANA name such as Europe/Berlin or UTC)")
        })?;
        let normalised = normalise(expression)?;
        let schedule = cron::Schedule::from_str(&normalised)
            .map_err(|e| format!("invalid cron expression {expression:?}: {e}"))?;
        Ok(Timing { schedule, zone })
    }

    /// The first fire time strictly after `after` (a repeated local time fires once).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        let wall = local.naive_local();
        self.schedule
            .after(&local)
            .find(|t| t.naive_local() != wall || !self.repeats(wall))
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether `wall` is a local time that occurs twice (the hour the clocks go back).
    fn repeats(&self, wall: chrono::NaiveDateTime) -> bool {
        matches!(
            self.zone.from_local_datetime(&wall),
            chrono::LocalResult::Ambiguous(_, _)
        )
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut t = after;
        while out.len() < count {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// A time in this schedule's zone, RFC 3339 with its offset.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.zone).to_rfc3339()
    }
}

/// What is due at `now` for a schedule last fired (or created) at `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Fire times to fire now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Fire times dropped by the catch-up policy.
    pub missed: u64,
    /// Whether any fire time was due before the latest one (the service was away).
    pub caught_up: bool,
    /// The latest fire time looked at (fired or missed): the schedule is done up to it.
    pub latest: Option<DateTime<Utc>>,
}

/// The fire times in `(last, now]`, reduced by `policy` (at most `max` with `All`). At most
/// 100,000 fire times are looked at (a per-second schedule after a day away).
pub fn due(
    timing: &Timing,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: CatchUp,
    max: usize,
) -> Due {
    let mut times = Vec::new();
    let mut t = last;
    while let Some(next) = timing.next_after(t) {
        if next > now || times.len() >= 100_000 {
            break;
        }
        times.push(next);
        t = next;
    }
    let total = times.len();
    let keep = match policy {
        // A single fire time due now is not a catch-up: it fires, whatever the policy.
        _ if total <= 1 => total,
        CatchUp::Skip => 0,
        CatchUp::Once => 1,
        CatchUp::All => max.max(1).min(total),
    };
    let latest = times.last().copied();
    let fire = times.split_off(total - keep);
    Due {
        missed: (total - keep) as u64,
        caught_up: total > 1 && keep > 0,
        fire,
        latest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn crontab_and_cron_forms() {
        let t = Timing::parse("30 6 * * 1-5", "UTC").unwrap();
        // 2026-12-04 is a Friday: next are Fri 06:30, Mon 06:30.
        let next = t.upcoming(at("2026-12-04T00:00:00Z"), 2);
        assert_eq!(
            next,
            [at("2026-12-04T06:30:00Z"), at("2026-12-07T06:30:00Z")]
        );
        let t = Timing::parse("0 0 12 * * SUN", "UTC").unwrap();
        assert_eq!(
            t.next_after(at("2026-12-04T00:00:00Z")),
            Some(at("2026-12-06T12:00:00Z"))
        );
        let t = Timing::parse("0 9 * * 0,7", "UTC").unwrap();
        assert_eq!(
            t.next_after(at("2026-12-04T00:00:00Z")),
            Some(at("2026-12-06T09:00:00Z"))
        );
        let t = Timing::parse("0 9 * * 5-7", "UTC").unwrap();
        let next = t.upcoming(at("2026-12-04T10:00:00Z"), 3);
        assert_eq!(
            next,
            [
                at("2026-12-05T09:00:00Z"),
                at("2026-12-06T09:00:00Z"),
                at("2026-12-11T09:00:00Z")
            ]
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        assert!(Timing::parse("* * *", "UTC")
            .unwrap_err()
            .contains("3 fields"));
        assert!(Timing::parse("61 * * * *", "UTC")
            .unwrap_err()
            .contains("invalid cron"));
        assert!(Timing::parse("0 9 * * 8", "UTC")
            .unwrap_err()
            .contains("day of week 8"));
        assert!(Timing::parse("0 9 * * *", "Mars/Olympus")
            .unwrap_err()
            .contains("unknown time zone"));
    }

    /// 02:30 in Berlin: on 2026-03-29 the clocks jump from 02:00 to 03:00 (no 02:30: no fire
    /// that day); on 2026-10-25 they go back from 03:00 to 02:00 (02:30 twice: one fire, at the
    /// first, 00:30 UTC).
    #[test]
    fn daylight_saving_in_berlin() {
        let t = Timing::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let spring = t.upcoming(at("2026-03-27T12:00:00Z"), 3);
        assert_eq!(
            spring,
            [
                at("2026-03-28T01:30:00Z"),
                at("2026-03-30T00:30:00Z"),
                at("2026-03-31T00:30:00Z")
            ]
        );
        let autumn = t.upcoming(at("2026-10-23T12:00:00Z"), 3);
        assert_eq!(
            autumn,
            [
                at("2026-10-24T00:30:00Z"),
                at("2026-10-25T00:30:00Z"),
                at("2026-10-26T01:30:00Z")
            ]
        );
        assert_eq!(
            t.local(at("2026-10-25T00:30:00Z")),
            "2026-10-25T02:30:00+02:00"
        );
    }

    #[test]
    fn catch_up_policies() {
        let t = Timing::parse("0 * * * *", "UTC").unwrap(); // hourly
        let last = at("2026-12-02T00:00:00Z");
        let now = at("2026-12-02T05:30:00Z"); // 01:00 … 05:00 missed
        let d = due(&t, last, now, CatchUp::Skip, 10);
        assert_eq!((d.fire.len(), d.missed, d.caught_up), (0, 5, false));
        assert_eq!(d.latest, Some(at("2026-12-02T05:00:00Z")));
        let d = due(&t, last, now, CatchUp::Once, 10);
        assert_eq!(
            (d.fire.clone(), d.missed, d.caught_up),
            (vec![at("2026-12-02T05:00:00Z")], 4, true)
        );
        let d = due(&t, last, now, CatchUp::All, 3);
        assert_eq!(
            (d.fire, d.missed),
            (
                vec![
                    at("2026-12-02T03:00:00Z"),
                    at("2026-12-02T04:00:00Z"),
                    at("2026-12-02T05:00:00Z")
                ],
                2
            )
        );
        // On time: one fire time due, whatever the policy.
        for policy in [CatchUp::Skip, CatchUp::Once, CatchUp::All] {
            let d = due(&t, at("2026-12-02T04:59:00Z"), now, policy, 10);
            assert_eq!(
                (d.fire.len(), d.missed, d.caught_up),
                (1, 0, false),
                "{policy:?}"
            );
        }
        assert!(due(&t, at("2026-12-02T05:00:00Z"), now, CatchUp::All, 10)
            .fire
            .is_empty());
    }
}
