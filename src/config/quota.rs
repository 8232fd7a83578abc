//! A route's quota as the config validates it: its period, a calendar day or
//! month in UTC, and its requests per tier, which the quota counter applies.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    /// The period holding `unix_s`: days since the epoch, or months since year 0.
    pub fn index(self, unix_s: u64) -> u64 {
        let days = unix_s / 86_400;
        match self {
            Period::Day => days,
            Period::Month => {
                let (year, month) = civil_from_days(days as i64);
                (year as u64) * 12 + (month as u64 - 1)
            }
        }
    }

    /// Unix seconds at which period `index` ends.
    pub fn end_s(self, index: u64) -> u64 {
        match self {
            Period::Day => (index + 1) * 86_400,
            Period::Month => {
                let next = index + 1;
                (days_from_civil((next / 12) as i64, (next % 12 + 1) as u32).max(0) as u64) * 86_400
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

/// Howard Hinnant's civil-from-days: (year, month 1..=12) of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// Days since 1970-01-01 of the first day of `year`-`month`.
fn days_from_civil(year: i64, month: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A route's quota: the period and the requests per tier id.
#[derive(Clone, Debug)]
pub struct Quota {
    pub per: Period,
    pub by_tier: Vec<Option<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_periods_in_utc() {
        // 2026-11-23T12:00:00Z
        let t = 1_795_435_200;
        assert_eq!(Period::Day.end_s(Period::Day.index(t)), 1_795_478_400);
        let month = Period::Month.index(t);
        assert_eq!(month, 2026 * 12 + 10);
        assert_eq!(Period::Month.end_s(month), 1_796_083_200, "2026-12-01T00:00:00Z");
        // December rolls over to January of the next year.
        assert_eq!(Period::Month.end_s(2026 * 12 + 11), 1_798_761_600, "2027-01-01");
        assert_eq!(Period::Month.index(1_798_761_600), 2027 * 12);
    }
}
