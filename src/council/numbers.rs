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
        if !c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        // Digits glued to a word or another number (`p99`, `1.2.3`), or
        // hyphened to a word (`top-3`, `T-1`), are a name.
        let hyphened = prev == Some('-')
            && i.checked_sub(2)
                .is_some_and(|p| chars[p].is_alphabetic() || chars[p] == '_');
        if prev.is_some_and(|p| is_word(p) || p == '.') || hyphened {
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
                // Glued to a word: a name.
                i = skip_word(&chars, end);
                continue;
            }
            match NaiveDate::parse_from_str(&token, "%Y-%m-%d") {
                Ok(date) => out.dates.push(date),
                Err(_) => out.unverifiable.push(token),
            }
            i = end;
            continue;
        }
        let (end, number) = read_number(&chars, i);
        if chars.get(end) == Some(&'.') && chars.get(end + 1).is_some_and(char::is_ascii_digit) {
            // `1.2.3`: a version or an address, checked like a digit-led word.
            let word_end = skip_word(&chars, end);
            out.glued.push(chars[i..word_end].iter().collect());
            i = word_end;
            continue;
        }
        let sign = match prev {
            Some('-' | '−') => -1.0,
            _ => 1.0,
        };
        // After a digit a minus is a range's dash (`10-20`), not a sign.
        let signed = matches!(prev, Some('-' | '−' | '+'))
            && !i.checked_sub(2).is_some_and(|p| chars[p].is_ascii_digit());
        let sign = if signed { sign } else { 1.0 };
        let Some((unit_end, kind, scale)) = unit(&chars, end) else {
            // Followed by letters that are no unit (`35e8a49d`, `73pct`):
            // an id if the packet has it, else a number in disguise.
            let word_end = skip_word(&chars, end);
            out.glued.push(chars[i..word_end].iter().collect());
            i = word_end;
            continue;
        };
        let start = if signed { i - 1 } else { i };
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
        // A sentence's full stop or comma after a word ends it.
        if matches!(chars[i], '.' | ',') && !chars.get(i + 1).is_some_and(|c| is_word(*c)) {
            break;
        }
        i += 1;
    }
    i
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
        Some(' ') if chars.get(i + 1) == Some(&'%') => return Some((i + 2, Kind::Ratio, 0.01)),
        Some(c) if is_word(*c) => return word_unit(chars, i),
        _ => {}
    }
    if chars.get(i) == Some(&' ')
        && let Some(found) = word_unit(chars, i + 1)
        && found.1 != Kind::Bare
    {
        return Some(found);
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
        _ if i > 0 && chars[i - 1] == ' ' => return Some((i - 1, Kind::Bare, 1.0)),
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
    fn digits_inside_words_are_names() {
        for text in [
            "p99 latency",
            "model v2",
            "ETH2 and meta_label2",
            "SMA20 crossed",
        ] {
            assert_eq!(numbers(text), vec![], "{text}");
            assert_eq!(scan(text).glued, Vec::<String>::new(), "{text}");
        }
        assert_eq!(scan("release 1.2.3").glued, vec!["1.2.3".to_string()]);
        let s = scan("model 35e8a49d won 73pct.");
        assert_eq!(
            (s.numbers, s.glued),
            (vec![], vec!["35e8a49d".to_string(), "73pct".to_string()])
        );
        // A range's second figure is a number, not a name.
        assert_eq!(
            numbers("10-20 bps"),
            vec![(10.0, Kind::Bare, false), (20.0, Kind::Bps, false)]
        );
        // A minus after a word is a hyphen: `top-3` is a name.
        assert_eq!(numbers("top-3 and T-1"), vec![]);
        assert_eq!(numbers("fell -5 bps"), vec![(-5.0, Kind::Bps, true)]);
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
