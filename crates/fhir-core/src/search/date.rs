//! Date, dateTime and instant values as the range of instants they cover
//! (http://hl7.org/fhir/R4/search.html#date): the precision written is the width of the
//! range, the time zone written places it; a value without a time is taken in UTC.

use chrono::{Duration, FixedOffset, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};

use super::value::DateRange;

impl DateRange {
    /// The range `text` covers: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a date with a time
    /// `Thh:mm[:ss[.f+]]` and a zone `Z`/`±hh:mm` (UTC when a search value omits it).
    /// `None` when the text is not such a value or names no real date.
    pub fn parse(text: &str) -> Option<DateRange> {
        let (date, time) = match text.split_once('T') {
            Some((date, time)) => (date, Some(time)),
            None => (text, None),
        };
        let mut parts = date.split('-');
        let year = number(parts.next()?, 4)?;
        let month = match parts.next() {
            Some(month) => Some(number(month, 2)?),
            None => None,
        };
        let day = match parts.next() {
            Some(day) => Some(number(day, 2)?),
            None => None,
        };
        if parts.next().is_some() || (time.is_some() && day.is_none()) {
            return None;
        }
        let year = i32::try_from(year).ok().filter(|y| *y >= 1)?;
        let first = NaiveDate::from_ymd_opt(year, month.unwrap_or(1), day.unwrap_or(1))?;
        let Some(time) = time else {
            let low = first.and_hms_opt(0, 0, 0)?;
            let high = match (month, day) {
                (_, Some(_)) => low.checked_add_signed(Duration::days(1))?,
                (Some(_), None) => low.checked_add_months(Months::new(1))?,
                (None, _) => low.checked_add_months(Months::new(12))?,
            };
            return Some(utc_range(low, high));
        };
        let (clock, offset) = split_zone(time)?;
        let mut fields = clock.split(':');
        let hour = number(fields.next()?, 2)?;
        let minute = number(fields.next()?, 2)?;
        let seconds = fields.next();
        if fields.next().is_some() || hour > 23 || minute > 59 {
            return None;
        }
        let (second, nanos, width) = match seconds {
            None => (0, 0, Duration::minutes(1)),
            Some(seconds) => {
                let (whole, fraction) = match seconds.split_once('.') {
                    Some((w, f)) => (w, Some(f)),
                    None => (seconds, None),
                };
                // A leap second (`:60`) is placed at the end of the preceding second.
                let second = number(whole, 2).filter(|s| *s <= 60)?.min(59);
                match fraction {
                    None => (second, 0, Duration::seconds(1)),
                    Some(fraction) => {
                        if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                            return None;
                        }
                        // Digits past nanoseconds add no width chrono can represent.
                        let digits = &fraction[..fraction.len().min(9)];
                        let scale = 10u32.pow(9 - u32::try_from(digits.len()).ok()?);
                        let nanos = digits.parse::<u32>().ok()? * scale;
                        (second, nanos, Duration::nanoseconds(i64::from(scale)))
                    }
                }
            }
        };
        let local = first.and_hms_nano_opt(hour, minute, second, nanos)?;
        let low = offset.from_local_datetime(&local).single()?;
        let high = low.checked_add_signed(width)?;
        Some(DateRange {
            low: Some(low.with_timezone(&Utc)),
            high: Some(high.with_timezone(&Utc)),
        })
    }

    /// The range of a Period: from its start to the end of its end, open where one is missing.
    pub(super) fn spanning(start: Option<DateRange>, end: Option<DateRange>) -> DateRange {
        DateRange {
            low: start.and_then(|s| s.low),
            high: end.and_then(|e| e.high),
        }
    }
}

fn utc_range(low: NaiveDateTime, high: NaiveDateTime) -> DateRange {
    DateRange {
        low: Some(Utc.from_utc_datetime(&low)),
        high: Some(Utc.from_utc_datetime(&high)),
    }
}

/// `hh:mm:ss.fff` and its zone; no zone is UTC.
fn split_zone(time: &str) -> Option<(&str, FixedOffset)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, FixedOffset::east_opt(0)?));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Some((time, FixedOffset::east_opt(0)?));
    };
    let (clock, zone) = time.split_at(at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..].split_once(':')?;
    let (hours, minutes) = (number(hours, 2)?, number(minutes, 2)?);
    if hours > 14 || minutes > 59 {
        return None;
    }
    let seconds = i32::try_from(hours * 3600 + minutes * 60).ok()?;
    Some((clock, FixedOffset::east_opt(sign * seconds)?))
}

/// Exactly `width` ASCII digits.
fn number(text: &str, width: usize) -> Option<u32> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn range(text: &str) -> Option<(String, String)> {
        let r = DateRange::parse(text)?;
        let show = |d: Option<DateTime<Utc>>| {
            d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default()
        };
        Some((show(r.low), show(r.high)))
    }

    fn pair(low: &str, high: &str) -> Option<(String, String)> {
        Some((low.to_string(), high.to_string()))
    }

    #[test]
    fn precision_is_the_width() {
        assert_eq!(
            range("1944"),
            pair("1944-01-01T00:00:00Z", "1945-01-01T00:00:00Z")
        );
        assert_eq!(
            range("2020-02"),
            pair("2020-02-01T00:00:00Z", "2020-03-01T00:00:00Z")
        );
        assert_eq!(
            range("2020-12"),
            pair("2020-12-01T00:00:00Z", "2021-01-01T00:00:00Z")
        );
        assert_eq!(
            range("1974-12-25"),
            pair("1974-12-25T00:00:00Z", "1974-12-26T00:00:00Z")
        );
        assert_eq!(
            range("2017-01-25T08:00:00+01:00"),
            pair("2017-01-25T07:00:00Z", "2017-01-25T07:00:01Z")
        );
        assert_eq!(
            range("2015-02-07T13:28:17.239-05:00"),
            pair("2015-02-07T18:28:17.239Z", "2015-02-07T18:28:17.240Z")
        );
        assert_eq!(
            range("2020-01-01T10:00Z"),
            pair("2020-01-01T10:00:00Z", "2020-01-01T10:01:00Z")
        );
        assert_eq!(
            range("2020-01-01T10:00:00"),
            pair("2020-01-01T10:00:00Z", "2020-01-01T10:00:01Z")
        );
        assert_eq!(
            range("2016-12-31T23:59:60Z"),
            pair("2016-12-31T23:59:59Z", "2017-01-01T00:00:00Z")
        );
        assert_eq!(
            range("2020-06-01T00:00:00.1234567891+14:00"),
            pair(
                "2020-05-31T10:00:00.123456789Z",
                "2020-05-31T10:00:00.123456790Z"
            )
        );
    }

    #[test]
    fn malformed_and_impossible_dates_are_refused() {
        for text in [
            "",
            "20",
            "20201",
            "2020-2",
            "2020-13",
            "2021-02-29",
            "2020-01-01T",
            "2020-01T10:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T10:60Z",
            "2020-01-01T10:00:00.Z",
            "2020-01-01T10:00:00+15:00",
            "2020-01-01T10:00:00+0100",
            "2020-01-01T10:00:00:00Z",
            "0000",
            "２０２０",
            "2020-01-01-01",
        ] {
            assert_eq!(DateRange::parse(text), None, "{text}");
        }
    }
}
