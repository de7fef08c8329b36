//! The classic format: writing it, and reading it back the way Fluent Bit does.
//!
//! The reader exists so that every configuration is checked before it is written, and
//! so the tests can show that no value adds a line, a section or a meta command. It
//! follows Fluent Bit's rules: lines end at `\n` (a `\r` before it is dropped); leading
//! and trailing whitespace is trimmed; a line starting with `#` is a comment; `[NAME]`
//! opens a section; `@INCLUDE`/`@SET` are meta commands; anything else is `key value`,
//! split at the first run of whitespace, and `${…}` in a value is an expansion. It is
//! stricter than Fluent Bit where that is safer: a meta command, an expansion or a
//! stray `\r` is an error here, not a feature.

use super::Section;

/// A configuration as read back: section names upper-cased, keys lower-cased (Fluent
/// Bit compares both without regard to case), values as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `(NAME, [(key, value)])` in file order.
    pub sections: Vec<(String, Vec<(String, String)>)>,
}

impl Parsed {
    /// What `sections` should read back as.
    pub fn of(sections: &[Section]) -> Parsed {
        Parsed {
            sections: sections
                .iter()
                .map(|s| {
                    let entries =
                        s.entries.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().to_owned())).collect();
                    (s.kind.to_string(), entries)
                })
                .collect(),
        }
    }
}

/// Writes `comments` as `#` lines, then each section with its keys aligned.
pub(super) fn render(comments: &[String], sections: &[Section]) -> String {
    let mut out = String::new();
    for line in comments {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    for section in sections {
        out.push('\n');
        out.push_str(&format!("[{}]\n", section.kind));
        let width = section.entries.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in &section.entries {
            out.push_str(&format!("    {key:<width$} {}\n", value.as_str()));
        }
    }
    out
}

/// Reads a classic configuration as Fluent Bit would.
///
/// # Errors
/// A meta command, an `${…}` expansion, a carriage return inside a line, an entry
/// outside any section, a key without a value, or a malformed section header; the
/// message names the line.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    for (n, raw) in text.split('\n').enumerate() {
        let n = n + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.contains('\r') {
            return Err(format!("line {n}: a carriage return inside the line"));
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            return Err(format!("line {n}: a meta command: {}", crate::text::quoted(line)));
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').ok_or_else(|| format!("line {n}: a malformed section header"))?;
            parsed.sections.push((name.trim().to_ascii_uppercase(), Vec::new()));
            continue;
        }
        let (key, value) = line
            .split_once(|c: char| c.is_whitespace())
            .map(|(k, v)| (k, v.trim()))
            .filter(|(_, v)| !v.is_empty())
            .ok_or_else(|| format!("line {n}: a key without a value: {}", crate::text::quoted(line)))?;
        if value.contains("${") {
            return Err(format!("line {n}: an environment expansion in the value of {key}"));
        }
        let section = parsed.sections.last_mut().ok_or_else(|| format!("line {n}: an entry outside any section"))?;
        section.1.push((key.to_ascii_lowercase(), value.to_owned()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, Value};
    use super::*;

    #[test]
    fn reads_back_what_it_writes() {
        let sections = vec![Section {
            kind: Kind::Output,
            entries: vec![("Name", Value::new("http").unwrap()), ("tls.vhost", Value::new("m.example.com").unwrap())],
        }];
        let text = render(&["hello".to_owned()], &sections);
        assert_eq!(text, "# hello\n\n[OUTPUT]\n    Name      http\n    tls.vhost m.example.com\n");
        assert_eq!(parse(&text).unwrap(), Parsed::of(&sections));
    }

    #[test]
    fn sees_what_an_injected_value_would_do() {
        assert!(parse("[OUTPUT]\n    Host a\n@INCLUDE /etc/passwd\n").unwrap_err().contains("meta command"));
        assert!(parse("[OUTPUT]\n    Host ${SECRET}\n").unwrap_err().contains("expansion"));
        assert!(parse("Host a\n").unwrap_err().contains("outside any section"));
        assert!(parse("[OUTPUT]\n    Host\n").unwrap_err().contains("without a value"));
        let two = parse("[OUTPUT]\n    Host a\n[INPUT]\n    Name b\n").unwrap();
        assert_eq!(two.sections.len(), 2);
    }
}
