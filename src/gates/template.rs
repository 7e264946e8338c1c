//! The `explain` templates of `configs/gates.yaml`: the placeholders a
//! template may use, the check a template passes when the file is read, and
//! the filling of one.

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "gate",
    "value",
    "threshold",
    "margin",
    "margin_pct",
    "unit",
    "regime",
    "mode",
    "allowed",
];

/// Checks a template: braces balanced, every placeholder known.
pub fn check(template: &str) -> Result<(), String> {
    const TEMPLATE_BYTES_MAX: usize = 1024;
    if template.len() > TEMPLATE_BYTES_MAX {
        return Err(format!(
            "is {} bytes; the limit is {TEMPLATE_BYTES_MAX}",
            template.len()
        ));
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("has a '}}' without its '{{' in {template:?}"));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("has a '{{' without its '}}' in {template:?}"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Fills `{name}` placeholders from `value`. Templates are checked when the
/// gates file is read ([`check`]), so an unknown name cannot reach
/// here; it is left as written if it does.
pub fn render(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match value(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(check("{gate} at {value}").is_ok());
        assert!(check("no placeholders").is_ok());
        let err = check("{gate} {evil}").unwrap_err();
        assert!(err.contains("unknown placeholder {evil}"), "{err}");
        assert!(check("{gate").unwrap_err().contains("without its '}'"));
        assert!(check("gate}").unwrap_err().contains("without its '{'"));
        assert!(check(&"x".repeat(2000)).is_err());
        // Unknown names are left as written by render.
        assert_eq!(render("a {x} b {", |_| None), "a {x} b {");
    }
}
