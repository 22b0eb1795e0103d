//! Voting periods written as a whole number and a unit: `90s`, `30m`, `2h`, `7d`.

/// Why a period could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a voting period: write a whole number and s, m, h or d, such as 90s, 2h or 7d")]
pub struct DurationError(pub String);

/// The period in seconds.
///
/// # Errors
///
/// [`DurationError`] for anything but a positive whole number followed by `s`, `m`, `h`
/// or `d`.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    let bad = || DurationError(text.to_owned());
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(seconds).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_as_seconds() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        for bad in ["", "s", "0s", "7", "7w", "-1d", "1.5h", " 7d", "7 d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
