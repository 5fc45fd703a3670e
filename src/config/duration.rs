//! Human durations in config files: `500ms`, `30s`, `15m`, `1h30m`, `7d`.

use std::time::Duration;

/// Why a duration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration; write e.g. 30s, 15m or 1h")]
    Empty,
    #[error("invalid duration `{0}`; write e.g. 30s, 15m or 1h")]
    Invalid(String),
    #[error("number too large in duration `{0}`")]
    NumberTooLarge(String),
    #[error("duration `{text}` needs a unit (ms, s, m, h or d), e.g. {number}s")]
    NoUnit { text: String, number: u64 },
    #[error("unknown unit `{unit}` in duration `{text}` (use ms, s, m, h or d)")]
    UnknownUnit { text: String, unit: String },
    #[error("duration `{0}` is too large")]
    TooLarge(String),
}

/// Parse a duration written as one or more `<number><unit>` groups.
///
/// Units: `ms`, `s`, `m`, `h`, `d`. A bare number is rejected: the unit is what makes a
/// config line readable, and `60` could mean seconds or minutes.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Invalid(text.to_string()));
        }
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = num
            .parse()
            .map_err(|_| DurationError::NumberTooLarge(text.to_string()))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n
                .checked_mul(60)
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
            "d" => n
                .checked_mul(86_400)
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
            "" => {
                return Err(DurationError::NoUnit {
                    text: text.to_string(),
                    number: n,
                });
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
        if total == Duration::MAX {
            return Err(DurationError::TooLarge(text.to_string()));
        }
        rest = tail;
    }
    Ok(total)
}

/// A duration as a config file writes it (`1h30m`, `10m`, `500ms`), for messages.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 || out.is_empty() {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn formats_as_it_parses() {
        for text in ["500ms", "30s", "10m", "1h30m", "7d", "1d2h3m4s5ms", "0ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        let why = |t: &str| parse_duration(t).unwrap_err().to_string();
        assert!(why("60").contains("needs a unit"));
        assert!(why("5y").contains("unknown unit"));
        assert!(why("").contains("empty"));
        assert!(why("m5").contains("invalid duration"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999999s").is_err());
        assert!(why("9999999999999999d").contains("too large"));
    }
}
