//! Text that came from a certificate or from the network, made safe to show.
//!
//! A certificate's subject, issuer and names, and whatever a master or proxy says, are
//! chosen by whoever made them. Printed raw, an escape sequence in a subjectAltName can
//! clear the screen, draw a fake fingerprint or a fake "verdict OK", or a right-to-left
//! override can reorder what the operator reads. So every such string is shown through
//! [`escape`]: control characters (C0, DEL, C1), bidirectional and invisible formatting
//! characters, and line separators become visible escapes (`\x1b`, `\u202e`), and a
//! backslash becomes `\\`, so the escaped text maps back to exactly the bytes that were
//! presented. Everything else, letters of any script included, is left alone.
//!
//! [`Untrusted`] holds such a string: its `Display` escapes, its JSON form is the string
//! itself, JSON-escaped. [`to_json_pretty`] writes JSON in which the characters above are
//! `\uXXXX` escapes too (standard JSON escapes only C0), so `--json` output read raw on a
//! terminal is as safe as the text form, and decodes to the original string.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io;

use serde::{Serialize, Serializer};

/// Whether `c` must not reach a terminal or log as itself.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Bidirectional controls (Unicode's "Trojan Source" list).
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Zero-width and invisible characters that hide or join text.
        | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'
        // Line and paragraph separators: line breaks to some terminals and log viewers.
        | '\u{2028}' | '\u{2029}')
}

/// `text` with every unsafe character (and the backslash) written as a visible escape;
/// borrowed when there is nothing to escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) && u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` in double quotes, escaped: how an error quotes a value it refuses.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escape(text).replace('"', "\\\""))
}

/// A size for people: `1 MiB`, `16 KiB`, `300 bytes`.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A duration for people: `10 s`, `1.5 s`, `250 ms`.
pub fn seconds(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A string from a certificate or the network. `Display` shows it escaped; serialized,
/// it is the string as presented.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Untrusted(String);

impl Untrusted {
    /// Wraps a string as presented.
    pub fn new(text: impl Into<String>) -> Self {
        Untrusted(text.into())
    }

    /// The string exactly as presented. Never print this: use `Display`.
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Untrusted {
    fn from(text: &str) -> Self {
        Untrusted(text.to_owned())
    }
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.0))
    }
}

impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", escape(&self.0))
    }
}

impl Serialize for Untrusted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `value` as pretty JSON (two-space indent) in which every unsafe character of
/// [`escape`] is a `\uXXXX` escape. Still plain JSON: a parser reads back the original
/// strings.
///
/// # Errors
/// `value` cannot be serialized (a map with non-string keys, a non-finite float).
pub fn to_json_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, SafeFormatter(serde_json::ser::PrettyFormatter::new()));
    value.serialize(&mut ser)?;
    // The formatter writes only what serde_json gives it (UTF-8) and ASCII escapes.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// serde_json's pretty formatter, with unsafe characters in strings escaped as `\uXXXX`.
struct SafeFormatter(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // Pretty printing: delegate layout to serde_json's own formatter.
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_bidi_and_the_backslash_and_nothing_else() {
        assert!(matches!(escape("master.example.com"), Cow::Borrowed(_)));
        assert_eq!(escape("Ünïcödé 名前 ok"), "Ünïcödé 名前 ok");
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("x\r\ny\t\x7f\u{9b}"), "x\\x0d\\x0ay\\x09\\x7f\\x9b");
        assert_eq!(escape("exe\u{202e}txt\u{2066}\u{200b}\u{2028}"), "exe\\u202etxt\\u2066\\u200b\\u2028");
        // Injective: a literal backslash sequence cannot pass for an escaped control.
        assert_eq!(escape("\\x1b"), "\\\\x1b");
        assert_ne!(escape("\\x1b"), escape("\x1b"));
    }

    #[test]
    fn json_stays_json_and_round_trips() {
        let hostile = "a\x1b[31m\u{202e}\u{9b}\\\"\n";
        let text = to_json_pretty(&serde_json::json!({ "name": hostile, "list": [Untrusted::from(hostile)] })).unwrap();
        assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{text:?}");
        assert!(text.contains("\\u001b[31m\\u202e\\u009b\\\\\\\"\\n"), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], hostile);
        assert_eq!(back["list"][0], hostile);
        assert_eq!(Untrusted::from(hostile).to_string(), "a\\x1b[31m\\u202e\\x9b\\\\\"\\x0a");
    }
}
