//! Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated purely.
//!
//! Fields accept `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n`, `a-b/n`.
//! Day of week 0 and 7 are Sunday. As in Vixie cron, when both day-of-month and
//! day-of-week are restricted a time matches when *either* matches.

use time::{Date, Duration, PrimitiveDateTime, Time};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    dom_star: bool,
    dow_star: bool,
    text: String,
}

fn parse_field(field: &str, lo: u32, hi: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let star = field == "*" || field.starts_with("*/");
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(n) if n > 0 => (r, n),
                _ => return Err(format!("`{part}`: step must be a positive number")),
            },
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else {
            let num = |v: &str| v.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (num(a), num(b)),
                None => {
                    let n = num(range);
                    // `5/15` means 5, 20, 35, 50 (from 5 to the end).
                    (n, if part.contains('/') { Some(hi) } else { n })
                }
            };
            match (a, b) {
                (Some(a), Some(b)) if a <= b => (a, b),
                _ => return Err(format!("`{part}` is outside {lo}-{hi}")),
            }
        };
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Cron {
    /// Parse an expression; the error says which field is wrong.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "`{expr}` has {} fields; expected 5 (minute hour day month weekday)",
                f.len()
            ));
        }
        let (minutes, _) = parse_field(f[0], 0, 59).map_err(|e| format!("minute: {e}"))?;
        let (hours, _) = parse_field(f[1], 0, 23).map_err(|e| format!("hour: {e}"))?;
        let (days, dom_star) = parse_field(f[2], 1, 31).map_err(|e| format!("day of month: {e}"))?;
        let (months, _) = parse_field(f[3], 1, 12).map_err(|e| format!("month: {e}"))?;
        let (mut weekdays, dow_star) = parse_field(f[4], 0, 7).map_err(|e| format!("day of week: {e}"))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            dom_star,
            dow_star,
            text: expr.to_string(),
        })
    }

    /// The expression text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, d: Date) -> bool {
        if self.months & (1 << u8::from(d.month())) == 0 {
            return false;
        }
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().number_days_from_sunday()) != 0;
        match (self.dom_star, self.dow_star) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// Whether the minute containing `t` matches.
    pub fn matches(&self, t: PrimitiveDateTime) -> bool {
        self.day_matches(t.date()) && self.hours & (1 << t.hour()) != 0 && self.minutes & (1 << t.minute()) != 0
    }

    /// The first matching minute strictly after `t` (seconds dropped), searching at most
    /// five years ahead; `None` for expressions that never match (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, t: PrimitiveDateTime) -> Option<PrimitiveDateTime> {
        let start = t.replace_second(0).ok()?.replace_nanosecond(0).ok()? + Duration::minutes(1);
        let mut date = start.date();
        let limit = date.checked_add(Duration::days(366 * 5))?;
        let mut first = true;
        while date <= limit {
            if self.day_matches(date) {
                let (h0, m0) = if first { (start.hour(), start.minute()) } else { (0, 0) };
                for h in h0..24u8 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    let mstart = if h == h0 { m0 } else { 0 };
                    for m in mstart..60u8 {
                        if self.minutes & (1 << m) != 0 {
                            return Some(PrimitiveDateTime::new(date, Time::from_hms(h, m, 0).ok()?));
                        }
                    }
                }
            }
            first = false;
            date = date.next_day()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn defaults_of_the_schedule() {
        let nightly = Cron::parse("0 2 * * *").unwrap();
        assert_eq!(
            nightly.next_after(datetime!(2026-11-22 04:47:12)),
            Some(datetime!(2026-11-23 02:00))
        );
        assert_eq!(
            nightly.next_after(datetime!(2026-11-22 01:59:59)),
            Some(datetime!(2026-11-22 02:00))
        );
        assert_eq!(nightly.next_after(datetime!(2026-11-22 02:00)), Some(datetime!(2026-11-23 02:00)));
        // 2026-11-22 is a Sunday.
        let weekly = Cron::parse("0 3 * * 0").unwrap();
        assert_eq!(weekly.next_after(datetime!(2026-11-22 03:00)), Some(datetime!(2026-11-29 03:00)));
        assert_eq!(weekly.next_after(datetime!(2026-11-21 10:00)), Some(datetime!(2026-11-22 03:00)));
        let sunday7 = Cron::parse("0 3 * * 7").unwrap();
        assert_eq!(sunday7.next_after(datetime!(2026-11-21 10:00)), Some(datetime!(2026-11-22 03:00)));
        let hourly = Cron::parse("0 * * * *").unwrap();
        assert_eq!(hourly.next_after(datetime!(2026-12-31 23:30)), Some(datetime!(2027-01-01 00:00)));
        let janitor = Cron::parse("0 */6 * * *").unwrap();
        assert_eq!(janitor.next_after(datetime!(2026-11-22 06:00)), Some(datetime!(2026-11-22 12:00)));
    }

    #[test]
    fn lists_ranges_steps() {
        let c = Cron::parse("5/20 9-17/4 * * 1-5").unwrap();
        assert!(c.matches(datetime!(2026-11-23 09:25)), "Monday 09:25");
        assert!(c.matches(datetime!(2026-11-23 13:45)));
        assert!(!c.matches(datetime!(2026-11-23 11:25)), "11 not in 9-17/4");
        assert!(!c.matches(datetime!(2026-11-22 09:25)), "Sunday");
        let l = Cron::parse("0,30 0 1,15 * *").unwrap();
        assert_eq!(l.next_after(datetime!(2026-11-15 00:30)), Some(datetime!(2026-12-01 00:00)));
    }

    #[test]
    fn dom_or_dow_when_both_restricted() {
        let c = Cron::parse("0 0 13 * 5").unwrap();
        assert!(c.matches(datetime!(2026-11-13 00:00)), "the 13th");
        assert!(c.matches(datetime!(2026-11-20 00:00)), "a Friday");
        assert!(!c.matches(datetime!(2026-11-21 00:00)));
    }

    #[test]
    fn impossible_and_invalid() {
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(datetime!(2026-01-01 00:00)), None);
        assert_eq!(
            Cron::parse("0 0 29 2 *").unwrap().next_after(datetime!(2026-03-01 00:00)),
            Some(datetime!(2028-02-29 00:00))
        );
        assert!(Cron::parse("61 * * * *").unwrap_err().starts_with("minute"));
        assert!(Cron::parse("* * * *").is_err());
        assert!(Cron::parse("*/0 * * * *").is_err());
        assert!(Cron::parse("5-1 * * * *").is_err());
        assert!(Cron::parse("x * * * *").is_err());
    }
}
