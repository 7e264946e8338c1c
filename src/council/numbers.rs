//! The numbers a sentence states: each with its sign, its precision (how
//! many decimals were written, which sets how far off a rounded figure may
//! be) and its unit, normalized to the unit the packet stores it in.
//!
//! What is a number here and what is not:
//!
//! - `50.3%`, `-12.5 bps`, `−12.5bps`, `1,256`, `0.503`, `91.33 ms`, `1.8x`,
//!   `2.5k`, `+3,561.9`: numbers.
//! - `2026-12-03` (a date) and `12:00:09` (a time of day): dates and times,
//!   reported apart so the verifier can check the day.
//! - Digits inside a word (`p99`, `v2`, `ETH2`, `meta_label2`, `SMA20`,
//!   `top-3`): names, not numbers.
//! - A word that starts with digits and goes on in letters (`35e8a49d`,
//!   `73pct`, `1st`): reported apart; the verifier lets it stand only if the
//!   packet holds it verbatim (a model or trade id), so no number hides in one.

use chrono::NaiveDate;

/// What a stated number is measured in, as the packet's units group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No unit written: compared with any value in the packet's own unit.
    Bare,
    /// `%` or `x`: a fraction (`ratio`, `probability`), `%` scaled by 0.01.
    Ratio,
    /// `bps` or `bp`.
    Bps,
    /// `ms` or `s`, in milliseconds.
    Duration,
    /// A unit no packet value has (`min`, `µs`, `pct`, `USD`): matches nothing.
    Foreign,
}

/// One number in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Stated {
    /// As written, for the report (`50.3%`).
    pub text: String,
    /// The value in the packet's base unit of its kind (`%` divided by
    /// 100, seconds in ms, `k` multiplied out).
    pub value: f64,
    /// Half a unit of the last digit written, in the same base unit: how
    /// far a correctly rounded figure can be from the exact value.
    pub rounding: f64,
    /// A sign was written (`+`, `-`, `−`).
    pub signed: bool,
    pub kind: Kind,
}

/// What a text states: its numbers and its dates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statements {
    pub numbers: Vec<Stated>,
    pub dates: Vec<NaiveDate>,
    /// Times of day (`12:00:09`) and dates that do not parse (`2026-13-40`):
    /// nothing in a packet states them, so they cannot be verified.
    pub unverifiable: Vec<String>,
    /// Words that start with digits and go on in letters (`35e8a49d`,
    /// `73pct`): a name only if the packet has it verbatim.
    pub glued: Vec<String>,
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every number, date and time in `text`.
pub fn scan(text: &str) -> Statements {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Statements::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_numeric() && !c.is_ascii_digit() {
            // Arabic-Indic, fullwidth, superscript digits, fractions: not
            // read here, so not verifiable.
            out.unverifiable.push(c.to_string());
            i += 1;
            continue;
        }
        if !c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        if prev.is_some_and(is_word) {
            // Digits inside a word that starts with letters (`p99`, `v2`,
            // `ETH2`, `USD5000`): a percentile's name, or a name the packet
            // must hold.
            let start = (0..i)
                .rev()
                .take_while(|&k| is_word(chars[k]))
                .last()
                .unwrap_or(i);
            let end = skip_word(&chars, i);
            let word: String = chars[start..end].iter().collect();
            if !is_percentile(&word) {
                out.glued.push(word);
            }
            i = end;
            continue;
        }
        if prev == Some('.') && i.checked_sub(2).is_some_and(|p| is_word(chars[p])) {
            // `v1.2`'s second part: read with its word above.
            i = skip_word(&chars, i);
            continue;
        }
        if let Some((mut end, token)) = date_or_time(&chars, i) {
            if token.contains('-') && chars.get(end) == Some(&'T') {
                // A timestamp: its time of day goes with its date.
                if let Some((time_end, _)) = date_or_time(&chars, end + 1) {
                    end = time_end;
                    if chars.get(end) == Some(&'.') {
                        end += 1;
                        while chars.get(end).is_some_and(char::is_ascii_digit) {
                            end += 1;
                        }
                    }
                    if chars.get(end) == Some(&'Z') {
                        end += 1;
                    }
                }
            }
            if chars.get(end).is_some_and(|&n| is_word(n)) {
                // Glued to letters (`2026-12-02Z`, `9:30am`): unverifiable.
                let word_end = skip_word(&chars, end);
                out.unverifiable.push(chars[i..word_end].iter().collect());
                i = word_end;
                continue;
            }
            match NaiveDate::parse_from_str(&token, "%Y-%m-%d") {
                Ok(date) => out.dates.push(date),
                Err(_) => out.unverifiable.push(token),
            }
            i = end;
            continue;
        }
        // `.5`: a number whose dot comes first.
        let leading_dot = prev == Some('.');
        let (end, number) = read_number(&chars, i);
        let number = if leading_dot {
            let digits = end - i;
            let text: String = chars[i..end].iter().collect();
            (format!("0.{text}").parse().unwrap_or(f64::NAN), digits)
        } else {
            number
        };
        let at = if leading_dot { i - 1 } else { i };
        let prev = at.checked_sub(1).map(|p| chars[p]);
        if chars.get(end) == Some(&'.') && chars.get(end + 1).is_some_and(char::is_ascii_digit) {
            // `1.2.3`: a version or an address, checked like a digit-led word.
            let word_end = skip_word(&chars, end);
            out.glued.push(chars[i..word_end].iter().collect());
            i = word_end;
            continue;
        }
        let before = at.checked_sub(2).map(|p| chars[p]);
        if prev.is_some_and(is_sign) && before.is_some_and(is_sign) {
            // `+-350`: which sign is meant?
            out.unverifiable.push(chars[at - 2..end].iter().collect());
            i = end;
            continue;
        }
        if prev.is_some_and(|p| matches!(p, '$' | '€' | '£' | '¥')) {
            // A currency: the packet holds none.
            out.unverifiable.push(chars[at - 1..end].iter().collect());
            i = end;
            continue;
        }
        // After a digit a minus is a range's dash (`10-20`), not a sign;
        // after a letter it is a hyphen (`top-3`: the 3 is read, unsigned).
        let signed = prev.is_some_and(is_sign)
            && !before.is_some_and(|b| b.is_ascii_digit() || b.is_alphabetic() || b == '_');
        let sign = if signed && prev != Some('+') {
            -1.0
        } else {
            1.0
        };
        let Some((unit_end, kind, scale)) = unit(&chars, end) else {
            // Followed by letters that are no unit (`35e8a49d`, `73pct`):
            // an id if the packet has it, else a number in disguise.
            let word_end = skip_word(&chars, end);
            out.glued.push(chars[i..word_end].iter().collect());
            i = word_end;
            continue;
        };
        if kind == Kind::Foreign {
            out.unverifiable.push(chars[at..unit_end].iter().collect());
            i = unit_end;
            continue;
        }
        let start = if signed { at - 1 } else { at };
        let (value, decimals) = number;
        out.numbers.push(Stated {
            text: chars[start..unit_end]
                .iter()
                .collect::<String>()
                .trim()
                .to_string(),
            value: sign * value * scale,
            rounding: 0.5 * 10f64.powi(-(decimals as i32)) * scale,
            signed,
            kind,
        });
        i = unit_end;
    }
    out
}

fn skip_word(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (is_word(chars[i]) || chars[i] == '.' || chars[i] == ',') {
        // A full stop ends a word unless a letter or digit follows (`1.2.3`);
        // a comma unless a letter follows (`ETH2,99%` is a name and a number).
        let next = chars.get(i + 1).copied();
        match chars[i] {
            '.' if !next.is_some_and(is_word) => break,
            ',' if !next.is_some_and(char::is_alphabetic) => break,
            _ => {}
        }
        i += 1;
    }
    i
}

fn is_sign(c: char) -> bool {
    matches!(c, '-' | '−' | '–' | '‒' | '﹣' | '－' | '+')
}

/// `p50`, `p99`, `p99.9`: a percentile's name, not a number.
fn is_percentile(word: &str) -> bool {
    word.strip_prefix(['p', 'P']).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .split('.')
                .all(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
    })
}

/// `YYYY-MM-DD` or `HH:MM[:SS]` at `i`, with where it ends.
fn date_or_time(chars: &[char], i: usize) -> Option<(usize, String)> {
    let digits = |from: usize, n: usize| {
        (from..from + n).all(|k| chars.get(k).is_some_and(char::is_ascii_digit))
    };
    if digits(i, 4)
        && chars.get(i + 4) == Some(&'-')
        && digits(i + 5, 2)
        && chars.get(i + 7) == Some(&'-')
        && digits(i + 8, 2)
    {
        let end = i + 10;
        return Some((end, chars[i..end].iter().collect()));
    }
    let two = if digits(i, 2) {
        2
    } else if digits(i, 1) {
        1
    } else {
        return None;
    };
    if chars.get(i + two) == Some(&':') && digits(i + two + 1, 2) {
        let mut end = i + two + 3;
        if chars.get(end) == Some(&':') && digits(end + 1, 2) {
            end += 3;
        }
        return Some((end, chars[i..end].iter().collect()));
    }
    None
}

/// The number at `i`: its value and how many decimals were written.
/// Thousands separators count only in groups of three (`1,256`, not `1,25`).
fn read_number(chars: &[char], i: usize) -> (usize, (f64, usize)) {
    let mut digits = String::new();
    let mut end = i;
    while end < chars.len() && chars[end].is_ascii_digit() {
        digits.push(chars[end]);
        end += 1;
    }
    while chars.get(end) == Some(&',')
        && (end + 1..end + 4).all(|k| chars.get(k).is_some_and(char::is_ascii_digit))
        && !chars.get(end + 4).is_some_and(char::is_ascii_digit)
    {
        digits.extend(&chars[end + 1..end + 4]);
        end += 4;
    }
    let mut decimals = 0;
    if chars.get(end) == Some(&'.') && chars.get(end + 1).is_some_and(char::is_ascii_digit) {
        digits.push('.');
        end += 1;
        while end < chars.len() && chars[end].is_ascii_digit() {
            digits.push(chars[end]);
            decimals += 1;
            end += 1;
        }
    }
    (end, (digits.parse().unwrap_or(f64::NAN), decimals))
}

/// The unit after a number at `i` (spaces allowed before a word unit):
/// where it ends, its kind and the factor to the kind's base unit. `None`
/// when letters follow that are not a unit.
fn unit(chars: &[char], i: usize) -> Option<(usize, Kind, f64)> {
    match chars.get(i) {
        Some('%') => return Some((i + 1, Kind::Ratio, 0.01)),
        Some('‰') => return Some((i + 1, Kind::Foreign, 1.0)),
        Some(c) if is_word(*c) => return word_unit(chars, i),
        _ => {}
    }
    // Any run of spaces (no-break and narrow ones too) before a unit.
    let mut j = i;
    while chars.get(j).is_some_and(|c| c.is_whitespace()) {
        j += 1;
    }
    if j > i {
        match chars.get(j) {
            Some('%') => return Some((j + 1, Kind::Ratio, 0.01)),
            Some('‰') => return Some((j + 1, Kind::Foreign, 1.0)),
            _ => {}
        }
        if let Some(found) = word_unit(chars, j)
            && (found.1 != Kind::Bare || found.2 != 1.0)
        {
            return Some(found);
        }
    }
    Some((i, Kind::Bare, 1.0))
}

fn word_unit(chars: &[char], i: usize) -> Option<(usize, Kind, f64)> {
    let mut end = i;
    while end < chars.len() && is_word(chars[end]) {
        end += 1;
    }
    let word: String = chars[i..end].iter().collect();
    let (kind, scale) = match word.as_str() {
        "bps" | "bp" => (Kind::Bps, 1.0),
        "ms" => (Kind::Duration, 1.0),
        "s" | "sec" | "second" | "seconds" => (Kind::Duration, 1000.0),
        "milliseconds" => (Kind::Duration, 1.0),
        "x" | "×" => (Kind::Ratio, 1.0),
        "k" | "K" => (Kind::Bare, 1e3),
        "M" => (Kind::Bare, 1e6),
        // Units the packet never uses: a number in them cannot be checked.
        "min" | "mins" | "minute" | "minutes" | "h" | "hr" | "hrs" | "hour" | "hours" | "us"
        | "µs" | "μs" | "ns" | "day" | "days" | "pct" | "percent" | "pp" | "USD" | "usd"
        | "EUR" | "eur" | "dollars" => (Kind::Foreign, 1.0),
        _ if i > 0 && chars[i - 1].is_whitespace() => return Some((i, Kind::Bare, 1.0)),
        _ => return None,
    };
    Some((end, kind, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(text: &str) -> Vec<(f64, Kind, bool)> {
        scan(text)
            .numbers
            .into_iter()
            .map(|n| (n.value, n.kind, n.signed))
            .collect()
    }

    #[test]
    fn units_signs_and_separators_are_read() {
        assert_eq!(
            numbers("win rate 50.3%, 1,256 trades, -12.5 bps and −3bps, 91.33 ms, 2 s, 1.8x, +4"),
            vec![
                (0.503, Kind::Ratio, false),
                (1256.0, Kind::Bare, false),
                (-12.5, Kind::Bps, true),
                (-3.0, Kind::Bps, true),
                (91.33, Kind::Duration, false),
                (2000.0, Kind::Duration, false),
                (1.8, Kind::Ratio, false),
                (4.0, Kind::Bare, true),
            ]
        );
        let n = &scan("59.50%").numbers[0];
        assert!((n.rounding - 0.00005).abs() < 1e-12, "{n:?}");
        assert_eq!(n.text, "59.50%");
        assert_eq!(numbers("2.5k signals"), vec![(2500.0, Kind::Bare, false)]);
    }

    #[test]
    fn digits_inside_words_are_names_to_check() {
        // Percentiles are names; other words with digits are reported, for
        // the verifier to find in the packet.
        assert_eq!(scan("p99 and p99.9 latency"), Statements::default());
        for (text, words) in [
            ("model v2", vec!["v2"]),
            ("ETH2 and meta_label2", vec!["ETH2", "meta_label2"]),
            ("SMA20 crossed, USD5000", vec!["SMA20", "USD5000"]),
            ("release 1.2.3", vec!["1.2.3"]),
            ("model 35e8a49d won.", vec!["35e8a49d"]),
        ] {
            let s = scan(text);
            assert_eq!(s.numbers, vec![], "{text}");
            assert_eq!(s.glued, words, "{text}");
        }
        // A comma after a name does not hide the number after it.
        assert_eq!(numbers("ETH2,99%"), vec![(0.99, Kind::Ratio, false)]);
        // A range's second figure is a number, not a name.
        assert_eq!(
            numbers("10-20 bps"),
            vec![(10.0, Kind::Bare, false), (20.0, Kind::Bps, false)]
        );
        // After a word a minus is a hyphen: `top-3`'s 3 is read, unsigned.
        assert_eq!(numbers("top-3"), vec![(3.0, Kind::Bare, false)]);
        assert_eq!(numbers("down-12%"), vec![(0.12, Kind::Ratio, false)]);
        assert_eq!(numbers("fell -5 bps"), vec![(-5.0, Kind::Bps, true)]);
    }

    #[test]
    fn disguised_numbers_are_read_or_unverifiable() {
        // A leading dot, other dashes as signs, spaces of any kind before a unit.
        assert_eq!(numbers(".99"), vec![(0.99, Kind::Bare, false)]);
        assert_eq!(numbers("fell –350.4 bps"), vec![(-350.4, Kind::Bps, true)]);
        assert_eq!(numbers("0.503\u{a0}%"), vec![(0.00503, Kind::Ratio, false)]);
        assert_eq!(
            numbers("0.503\u{202f}%"),
            vec![(0.00503, Kind::Ratio, false)]
        );
        assert_eq!(numbers("0.503  %"), vec![(0.00503, Kind::Ratio, false)]);
        assert_eq!(
            numbers("91.33\u{a0}s"),
            vec![(91330.0, Kind::Duration, false)]
        );
        assert_eq!(numbers("1.84 M USD"), vec![(1.84e6, Kind::Bare, false)]);
        // What the packet cannot hold is unverifiable, never skipped.
        for text in [
            "٩٩٪",
            "５０%",
            "¾",
            "²99%",
            "2.5 minutes",
            "2.5 hours",
            "91.33 µs",
            "$350",
            "+-350",
            "2026-12-02Z",
            "9:30am",
            "5‰",
            "50 pct",
        ] {
            let s = scan(text);
            assert!(!s.unverifiable.is_empty(), "{text}: {s:?}");
        }
    }

    #[test]
    fn dates_and_times_are_apart_from_numbers() {
        let s = scan(
            "on 2026-12-03 at 12:00:09 and 9:30, not 2026-13-40. Fired 2026-12-02T11:58:40.123Z.",
        );
        assert_eq!(s.numbers, vec![]);
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        assert_eq!(s.dates, vec![day(3), day(2)]);
        assert_eq!(s.unverifiable, vec!["12:00:09", "9:30", "2026-13-40"]);
    }

    #[test]
    fn a_full_stop_ends_a_number() {
        assert_eq!(
            numbers("It was 12. Then 0.5."),
            vec![(12.0, Kind::Bare, false), (0.5, Kind::Bare, false)]
        );
        // `1,25` is a list, not a thousands separator.
        assert_eq!(
            numbers("1,25"),
            vec![(1.0, Kind::Bare, false), (25.0, Kind::Bare, false)]
        );
    }
}
