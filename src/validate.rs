//! Field validators shared by config, API and catalog. Pure; each returns a message that
//! says what is expected.

/// An RFC 1123 host label used as an app hostname: 1–63 characters of `a-z0-9-`, not starting
/// or ending with `-`. Upper case is refused (names are shown and typed lower case).
pub fn hostname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("is {} characters long; at most 63 are allowed", s.len()));
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("may contain only lower-case letters a-z, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must not start or end with '-'".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must not be all digits".into());
    }
    Ok(())
}

/// A DNS name made of RFC 1123 labels separated by dots (at most 253 characters).
pub fn dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{label}` is not a valid DNS label"));
        }
    }
    Ok(())
}

/// Check that a cron expression has five fields of `*`, numbers, ranges, lists and steps,
/// each within its field's bounds. (Evaluation lives in the scheduler.)
pub fn cron_shape(expr: &str) -> Result<(), String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "`{expr}` has {} fields; expected 5 (minute hour day month weekday)",
            fields.len()
        ));
    }
    let bounds = [(0u32, 59u32), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (field, (lo, hi)) in fields.iter().zip(bounds) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(s) = step {
                match s.parse::<u32>() {
                    Ok(n) if n > 0 => {}
                    _ => return Err(format!("`{part}`: step must be a positive number")),
                }
            }
            if range == "*" {
                continue;
            }
            let (a, b) = match range.split_once('-') {
                Some((a, b)) => (a, b),
                None => (range, range),
            };
            let parse = |v: &str| v.parse::<u32>().ok().filter(|n| (lo..=hi).contains(n));
            match (parse(a), parse(b)) {
                (Some(a), Some(b)) if a <= b => {}
                _ => return Err(format!("`{part}` is outside {lo}-{hi}")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["nginx", "nginx-01", "a", "a1-b2", &"x".repeat(63)] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "123", &"x".repeat(64), "café", "a b"] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crons() {
        for ok in ["0 2 * * *", "*/15 * * * *", "0 3 * * 0", "0 0-6/2 1,15 * 1-5"] {
            assert!(cron_shape(ok).is_ok(), "{ok}");
        }
        for bad in ["", "* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "a * * * *"] {
            assert!(cron_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(dns_name("prox.local").is_ok());
        assert!(dns_name("prox..local").is_err());
        assert!(dns_name("-x.local").is_err());
    }
}
