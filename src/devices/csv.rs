//! The CSV that `nvidia-smi --format=csv` and `rocm-smi --csv` print, read by the rules of
//! Go's `encoding/csv` with its defaults, which Determined's agent uses: comma-separated,
//! spaces kept, blank lines skipped, RFC 4180 quotes (`""` inside a quoted field), a bare
//! `"` in an unquoted field is an error.
//!
//! Hand-written rather than the `csv` crate: that crate's quote handling is more lenient
//! than Go's, and the callers need each record with its line to quote in errors. One
//! difference from Go, deliberate: a quoted field must close on its own line (Go would
//! read on into the next line; no vendor tool prints such a field).

/// One non-blank line of CSV: its 1-based line number, the line, and its fields.
pub(crate) struct Record<'a> {
    pub line_number: usize,
    pub line: &'a str,
    pub fields: Vec<String>,
}

/// A line that is not CSV, with Go's wording of the reason.
pub(crate) struct BadLine<'a> {
    pub line_number: usize,
    pub line: &'a str,
    pub reason: &'static str,
}

/// The records of `text`, in order, or the first line that is not CSV.
pub(crate) fn records(text: &str) -> Result<Vec<Record<'_>>, BadLine<'_>> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let line_number = index + 1;
        let fields = fields(line).map_err(|reason| BadLine { line_number, line, reason })?;
        out.push(Record { line_number, line, fields });
    }
    Ok(out)
}

fn fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    None => return Err("a quoted field is not closed on its line"),
                    Some((at, '"')) => {
                        if quoted[at + 1..].starts_with('"') {
                            field.push('"');
                            chars.next();
                        } else {
                            break &quoted[at + 1..];
                        }
                    }
                    Some((_, c)) => field.push(c),
                }
            };
            fields.push(field);
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(fields),
                None => return Err("extraneous or missing \" in quoted-field"),
            }
        } else {
            let (field, next) = match rest.split_once(',') {
                Some((field, next)) => (field, Some(next)),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err("bare \" in non-quoted-field");
            }
            fields.push(field.to_owned());
            match next {
                Some(next) => rest = next,
                None => return Ok(fields),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Vec<String>> {
        records(text).ok().unwrap().into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn splits_like_go_encoding_csv() {
        assert_eq!(parse("0, A100, GPU-1\r\n\n1,B,"), [vec!["0", " A100", " GPU-1"], vec!["1", "B", ""]]);
        assert_eq!(parse("\"a,b\",\"say \"\"hi\"\"\",c"), [vec!["a,b", "say \"hi\"", "c"]]);
        assert_eq!(parse(" "), [vec![" "]]);
        assert!(parse("").is_empty());
    }

    #[test]
    fn names_the_bad_line_with_gos_reason() {
        let bad = records("0,a,b\n1,x\"y,z\n").err().unwrap();
        assert_eq!((bad.line_number, bad.line, bad.reason), (2, "1,x\"y,z", "bare \" in non-quoted-field"));
        let bad = records("\"a\"b,c").err().unwrap();
        assert_eq!(bad.reason, "extraneous or missing \" in quoted-field");
        assert!(records("\"open").is_err());
    }
}
