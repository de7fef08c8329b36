//! The outer object of a frame, read without building it: each name's body stays a slice
//! of the frame's text, so reading a frame costs nothing beyond the frame itself, however
//! many names or nested values it carries (a `serde_json::Value` of the frame would cost
//! several times its size).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::DecodeError;

/// How many unknown names an error lists, and how much of each: enough to say what a
/// newer master sent, never the frame itself.
const NAMES_KEPT: usize = 8;
const NAME_CHARS: usize = 64;

/// The frame's object: the body of each known name, and the first few other names set.
pub(super) struct Envelope<'a, 'k> {
    known: &'k [&'static str],
    /// The last body given for each of `known` (Go's decoder keeps the last of a repeated
    /// name), `null` included.
    bodies: Vec<Option<&'a RawValue>>,
    /// Other names set (non-null), in frame order, at most [`NAMES_KEPT`], each cut to
    /// [`NAME_CHARS`] characters.
    pub(super) others: Vec<String>,
}

impl<'a, 'k> Envelope<'a, 'k> {
    /// Reads `text`'s outer object.
    pub(super) fn read(text: &'a str, known: &'k [&'static str]) -> Result<Envelope<'a, 'k>, DecodeError> {
        // Validates the whole frame as JSON first (a scan, no allocation), so "not JSON"
        // and "not an object" stay distinct errors.
        let whole: &RawValue = serde_json::from_str(text).map_err(DecodeError::NotJson)?;
        if !whole.get().starts_with('{') {
            return Err(DecodeError::NotAnObject);
        }
        let mut envelope = Envelope { known, bodies: vec![None; known.len()], others: Vec::new() };
        let mut de = serde_json::Deserializer::from_str(whole.get());
        (&mut envelope).deserialize(&mut de).map_err(DecodeError::NotJson)?;
        Ok(envelope)
    }

    /// The first of `known`, in its order, whose body is not `null`.
    pub(super) fn first_set(&self) -> Option<(&'static str, &'a RawValue)> {
        let set = |(name, body): (&&'static str, &Option<&'a RawValue>)| Some((*name, (*body)?));
        self.known.iter().zip(&self.bodies).filter_map(set).find(|(_, body)| body.get() != "null")
    }
}

impl<'de, 'k> DeserializeSeed<'de> for &mut Envelope<'de, 'k> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'k> Visitor<'de> for &mut Envelope<'de, 'k> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(Name(name)) = map.next_key()? {
            let body: &'de RawValue = map.next_value()?;
            match self.known.iter().position(|k| *k == name) {
                Some(i) => self.bodies[i] = Some(body),
                None if body.get() != "null" && self.others.len() < NAMES_KEPT => {
                    let mut kept: String = name.chars().take(NAME_CHARS).collect();
                    if kept.len() < name.len() {
                        kept.push('…');
                    }
                    if !self.others.contains(&kept) {
                        self.others.push(kept);
                    }
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// A name, borrowed from the frame unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name<'de>, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}
