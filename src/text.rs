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
///
/// Hand-written rather than taken from a Unicode crate: the set is small, chosen for what
/// a terminal or a reader can be fooled by, and must not move when a dependency updates.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Bidirectional controls (Unicode's "Trojan Source" list).
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        // Line and paragraph separators: line breaks to some terminals and log viewers.
        | '\u{2028}' | '\u{2029}'
        // Default-ignorable and format characters: drawn as nothing (or as blank space),
        // so they hide inside a name, join or split it, or make two different names
        // look the same. Soft hyphen, combining grapheme joiner, Hangul fillers, Khmer
        // inherent vowels, Mongolian selectors, zero-width and invisible operators,
        // variation selectors, the byte order mark, interlinear annotations, musical
        // formatting, and the tag characters.
        | '\u{ad}' | '\u{34f}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}'
        | '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2065}' | '\u{206a}'..='\u{206f}' | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}'
        // Other format characters (Unicode category Cf): prepended marks that fold into
        // the next character.
        | '\u{600}'..='\u{605}' | '\u{6dd}' | '\u{70f}' | '\u{890}' | '\u{891}' | '\u{8e2}'
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}'
        // Spaces other than U+0020, which read as one: "master example" with a no-break
        // space is another name than with a space.
        | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
        // Noncharacters: never text, so never shown as if they were.
        | '\u{fdd0}'..='\u{fdef}')
        || (u32::from(c) & 0xfffe) == 0xfffe
}

/// `text` with every unsafe character (and the backslash) written as a visible escape;
/// borrowed when there is nothing to escape. The escapes have a fixed width (`\xNN`,
/// `\uNNNN`, `\UNNNNNNNN`), so a following hex digit can never be read as part of one,
/// and escaped text maps back to exactly one original.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || is_unsafe(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let n = u32::from(c);
        let _ = match c {
            '\\' => out.write_str("\\\\"),
            c if !is_unsafe(c) => out.write_char(c),
            _ if n <= 0xff => write!(out, "\\x{n:02x}"),
            _ if n <= 0xffff => write!(out, "\\u{n:04x}"),
            _ => write!(out, "\\U{n:08x}"),
        };
    }
    Cow::Owned(out)
}

/// `text` in double quotes, escaped: how an error quotes a value it refuses.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escape(text).replace('"', "\\\""))
}

/// `text` cut to its first `max` characters, saying how long it was: what an error shows of
/// a text a peer chose, which may be as long as a whole message.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}… (cut; {} in all)", &text[..end], bytes(text.len() as u64))),
    }
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
/// [`escape`] is a `\uXXXX` escape (two, a surrogate pair, past U+FFFF). Still plain JSON: a parser reads back the original
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
                // JSON's escape is one UTF-16 unit: a character past U+FFFF is two.
                let mut units = [0; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
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
    fn invisible_characters_are_shown_and_escapes_have_a_fixed_width() {
        // A soft hyphen, a variation selector, a Hangul filler and a tag character hide
        // inside a name that otherwise reads as "master".
        assert_eq!(escape("mas\u{ad}ter\u{fe0f}\u{3164}"), "mas\\xadter\\ufe0f\\u3164");
        // Past U+FFFF: eight digits, so "\u{e0041}1" cannot read as U+E004 then "11".
        assert_eq!(escape("a\u{e0041}1"), "a\\U000e00411");
        assert_ne!(escape("\u{e0041}1"), escape("\u{e004}11"));
        // Spaces that read as U+0020, and noncharacters.
        assert_eq!(escape("a\u{a0}b\u{3000}c\u{fffe}\u{10ffff}"), "a\\xa0b\\u3000c\\ufffe\\U0010ffff");
    }

    #[test]
    fn clip_keeps_short_text_and_says_how_long_long_text_was() {
        assert!(matches!(clip("short", 5), Cow::Borrowed("short")));
        assert_eq!(clip("ééééé", 2), "éé… (cut; 10 bytes in all)");
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
        // Past U+FFFF, a surrogate pair: still JSON, still the same string read back.
        let tag = "m\u{e0041}";
        let text = to_json_pretty(&tag).unwrap();
        assert_eq!(text, "\"m\\udb40\\udc41\"");
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), tag);
    }

    /// Reads [`escape`]'s output back; a test of its injectivity.
    fn unescape(text: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let width = match chars.next()? {
                '\\' => {
                    out.push('\\');
                    continue;
                }
                'x' => 2,
                'u' => 4,
                'U' => 8,
                _ => return None,
            };
            let hex: String = chars.by_ref().take(width).collect();
            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
        }
        Some(out)
    }

    proptest::proptest! {
        #[test]
        fn escape_is_injective_and_leaves_nothing_unsafe(text in "\\PC*|[\\x00-\\x{ff}\\u{2000}-\\u{2070}\\u{e0000}-\\u{e0080}\\\\0-9a-fuxU]*") {
            let shown = escape(&text);
            proptest::prop_assert!(!shown.chars().any(is_unsafe));
            proptest::prop_assert_eq!(unescape(&shown), Some(text));
        }
    }
}
