//! Cron schedules as the operator that reads them understands them, and the
//! interval between runs that staleness is judged against.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// Which cron dialect an operator parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Five fields (minute first) plus `@daily`-style descriptors: Kubernetes
    /// CronJobs and VolSync (robfig `ParseStandard`).
    Standard,
    /// CloudNativePG ScheduledBackup: robfig/cron v1 `Parse`, seconds first and
    /// day-of-week optional. A five-field schedule is accepted but read as
    /// `sec min hour dom month`, so `0 */6 * * *` runs every 6 *minutes*.
    SecondsFirst,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    /// The five-field trap: parsed, but very likely not what the author meant.
    pub seconds_field_misread: bool,
}

impl Schedule {
    pub fn parse(expr: &str, dialect: Dialect) -> Result<Self, String> {
        let expr = expr.trim();
        let descriptor = expr.starts_with('@');
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (pattern, seconds, misread) = match dialect {
            Dialect::Standard => {
                if !descriptor && fields.len() != 5 {
                    return Err(format!("{expr:?}: expected 5 fields (minute hour day-of-month month day-of-week), found {}", fields.len()));
                }
                (expr.to_string(), Seconds::Disallowed, false)
            }
            Dialect::SecondsFirst => match fields.len() {
                _ if descriptor => (expr.to_string(), Seconds::Disallowed, false),
                6 => (expr.to_string(), Seconds::Required, false),
                5 => (format!("{expr} *"), Seconds::Required, true),
                n => return Err(format!("{expr:?}: expected 6 fields (second minute hour day-of-month month day-of-week), found {n}")),
            },
        };
        let parser = CronParser::builder().seconds(seconds).build();
        let cron = parser.parse(&pattern).map_err(|e| format!("{expr:?}: {e}"))?;
        Ok(Schedule { cron, seconds_field_misread: misread })
    }

    /// The longest gap between consecutive runs over the next few runs after
    /// `from`; staleness must tolerate the longest gap (e.g. weekends).
    pub fn interval(&self, from: DateTime<Utc>) -> Option<Duration> {
        let runs: Vec<DateTime<Utc>> = self.cron.iter_after(from).take(8).collect();
        runs.windows(2).map(|w| w[1] - w[0]).max()
    }

    /// The newest run at or before `at` (looked for up to a year back).
    pub fn last_run_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [Duration::days(8), Duration::days(366)].iter().find_map(|back| self.cron.iter_after(at - *back).take_while(|t| *t <= at).last())
    }
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Schedule::parse(s, Dialect::Standard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn standard_hourly_and_descriptors() {
        let from = at("2026-11-25T12:00:00Z");
        assert_eq!(Schedule::parse("0 * * * *", Dialect::Standard).unwrap().interval(from), Some(Duration::hours(1)));
        assert_eq!(Schedule::parse("@daily", Dialect::Standard).unwrap().interval(from), Some(Duration::days(1)));
        assert_eq!(Schedule::parse("@hourly", Dialect::Standard).unwrap().interval(from), Some(Duration::hours(1)));
    }

    #[test]
    fn weekday_schedule_uses_longest_gap() {
        let from = at("2026-11-25T12:00:00Z");
        let s = Schedule::parse("0 3 * * 1-5", Dialect::Standard).unwrap();
        assert_eq!(s.interval(from), Some(Duration::days(3)));
    }

    #[test]
    fn standard_rejects_six_fields() {
        assert!(Schedule::parse("0 0 3 * * *", Dialect::Standard).is_err());
        assert!(Schedule::parse("every day", Dialect::Standard).is_err());
    }

    #[test]
    fn cnpg_five_fields_are_read_seconds_first() {
        let from = at("2026-11-25T12:00:00Z");
        let s = Schedule::parse("0 */6 * * *", Dialect::SecondsFirst).unwrap();
        assert!(s.seconds_field_misread);
        assert_eq!(s.interval(from), Some(Duration::minutes(6)));
        let s = Schedule::parse("0 0 */6 * * *", Dialect::SecondsFirst).unwrap();
        assert!(!s.seconds_field_misread);
        assert_eq!(s.interval(from), Some(Duration::hours(6)));
        let s = Schedule::parse("@daily", Dialect::SecondsFirst).unwrap();
        assert_eq!(s.interval(from), Some(Duration::days(1)));
    }
}
