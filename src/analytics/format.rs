//! Numbers for people: what tables, alerts and reports print. Programs get
//! the exact values (CSV, JSON, Arrow); these are for reading.

/// A number as people read it: integers without decimals, two decimals from
/// 1 up, four significant digits below 1; trailing zeros dropped.
pub fn human_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs();
    if magnitude == 0.0 {
        return "0".to_string();
    }
    if !(1e-9..1e15).contains(&magnitude) {
        return format!("{v:.3e}");
    }
    if v == v.trunc() {
        return format!("{v:.0}");
    }
    let decimals = if magnitude >= 1.0 {
        2
    } else {
        (3 - magnitude.log10().floor() as i32).clamp(0, 12) as usize
    };
    let text = format!("{v:.decimals$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0" } else { text }.to_string()
}

/// A value in its unit: ratios and probabilities as percentages, bps, USD
/// and milliseconds with two decimals, anything else as [`human_number`].
pub fn in_unit(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let fixed = |x: f64| {
        let text = format!("{x:.2}");
        // -0.001 shows as 0.00, not -0.00.
        match text.strip_prefix('-') {
            Some(rest) if rest.bytes().all(|b| b == b'0' || b == b'.') => rest.to_string(),
            _ => text,
        }
    };
    match unit {
        "ratio" | "probability" => format!("{}%", fixed(v * 100.0)),
        "bps" | "usd" | "ms" => fixed(v),
        _ => human_number(v),
    }
}

/// A value with its unit, for a sentence: `16.67%` for a ratio, `-31.18 bps`,
/// `91.42 ms`, `12 trades`.
pub fn with_unit(v: f64, unit: &str) -> String {
    match unit {
        "ratio" | "probability" => in_unit(v, unit),
        "" => human_number(v),
        _ => format!("{} {unit}", in_unit(v, unit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(human_number(0.5033503509891513), "0.5034");
        assert_eq!(human_number(-5506.47000000001), "-5506.47");
        assert_eq!(human_number(305.0), "305");
        assert_eq!(human_number(0.000123456), "0.0001235");
        assert_eq!(human_number(1.5), "1.5");
        assert_eq!(human_number(-0.0000001), "-0.0000001");
        assert_eq!(human_number(f64::NAN), "NaN");
        assert_eq!(human_number(-0.0), "0");
        assert_eq!(human_number(f64::MAX), "1.798e308");
        assert_eq!(human_number(1e-13), "1.000e-13");
        assert_eq!(in_unit(-0.001, "bps"), "0.00");
        assert_eq!(in_unit(-0.0, "ratio"), "0.00%");
        assert_eq!(in_unit(0.5033503509891513, "ratio"), "50.34%");
        assert_eq!(in_unit(-5.514999, "bps"), "-5.51");
        assert_eq!(in_unit(12.0, "trades"), "12");
    }

    #[test]
    fn sentences_carry_the_unit() {
        assert_eq!(with_unit(0.1667, "ratio"), "16.67%");
        assert_eq!(with_unit(-31.18, "bps"), "-31.18 bps");
        assert_eq!(with_unit(91.4244, "ms"), "91.42 ms");
        assert_eq!(with_unit(12.0, "trades"), "12 trades");
    }
}
