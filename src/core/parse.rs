//! Parsers for the CLI's values: `K=V` pairs, CPU counts, memory sizes and durations. Exact
//! (no floats), with errors that name what was being parsed.

use super::error::CoreError;

/// Parses `K=V` (for `--env`, `--label`, `--label-add`); the value may be empty or hold `=`.
pub fn parse_key_value(text: &str) -> Result<(String, String), CoreError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(CoreError::parse(
            "key=value pair",
            text,
            "expected KEY=VALUE",
        )),
    }
}

/// Splits `12.5` into whole and fractional parts scaled by `10^scale_digits`, without floats.
fn parse_decimal(text: &str, scale_digits: u32, what: &'static str) -> Result<u64, CoreError> {
    let bad = |reason: &str| CoreError::parse(what, text, reason);
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad("expected a number"));
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(bad("expected a non-negative number"));
    }
    if fraction.len() > scale_digits as usize {
        return Err(bad("too precise"));
    }
    let scale = 10u64.pow(scale_digits);
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad("too large"))?
    };
    let fraction_scaled = if fraction.is_empty() {
        0
    } else {
        let padding = 10u64.pow(scale_digits - fraction.len() as u32);
        fraction.parse::<u64>().map_err(|_| bad("too large"))? * padding
    };
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction_scaled))
        .ok_or_else(|| bad("too large"))
}

/// Parses `--reserve-cpu` / `--limit-cpu` (`0.5`, `2`) into nano CPUs.
pub fn parse_cpus(text: &str) -> Result<u64, CoreError> {
    parse_decimal(text.trim(), 9, "cpu count")
}

/// Parses a memory size: plain bytes or a `b`, `k`, `m`, `g`, `t` suffix (optionally followed
/// by `b`, any case), binary multiples as in Docker: `512m`, `1g`, `1.5g`, `100k`, `4096`.
pub fn parse_memory(text: &str) -> Result<u64, CoreError> {
    let lower = text.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(CoreError::parse("memory size", text, "unknown unit")),
    };
    // Three decimals are plenty for "1.5g"; the result is rounded down to whole bytes.
    let thousandths = parse_decimal(number, 3, "memory size")
        .map_err(|_| CoreError::parse("memory size", text, "expected a number and a unit"))?;
    let bytes = (u128::from(thousandths) << shift) / 1000;
    u64::try_from(bytes).map_err(|_| CoreError::parse("memory size", text, "too large"))
}

/// Parses a duration such as `300ms`, `5s`, `1m`, `1h`, `1m30s` or `1.5s` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, CoreError> {
    let bad = |reason: &str| CoreError::parse("duration", text, reason);
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("missing unit (ms, s, m or h)"))?;
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad("unit is ms, s, m or h")),
        };
        let thousandths = parse_decimal(number, 3, "duration").map_err(|_| bad("bad number"))?;
        let part = u128::from(thousandths) * u128::from(unit_ms) / 1000;
        total_ms = u64::try_from(part)
            .ok()
            .and_then(|p| total_ms.checked_add(p))
            .ok_or_else(|| bad("too large"))?;
        rest = tail;
    }
    Ok(total_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_cpus_durations() {
        let memory = [
            ("512m", 512 << 20),
            ("1g", 1 << 30),
            ("100k", 102_400),
            ("4096", 4096),
        ];
        for (text, bytes) in memory {
            assert_eq!(parse_memory(text), Ok(bytes), "{text}");
        }
        assert_eq!(parse_memory("1.5G"), Ok(3 << 29));
        assert_eq!(parse_memory("12MB"), Ok(12 << 20));
        for bad in ["", "m", "12x", "-1m", "1..5g"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert!(parse_cpus("0.0000000001").is_err());
        assert!(parse_cpus("abc").is_err());
        let durations = [
            ("5s", 5_000),
            ("300ms", 300),
            ("1m", 60_000),
            ("1m30s", 90_000),
        ];
        for (text, ms) in durations {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        for bad in ["", "5", "5x", "s"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }
}
