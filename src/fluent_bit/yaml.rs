//! The YAML format, written through serde_norway (so quoting is the serializer's job)
//! and read back to the same shape as the classic reader's.

use serde_norway::{Mapping, Value as Yaml};

use super::classic::Parsed;
use super::{FluentError, Kind, Section};

/// Keys written as YAML numbers; every other value is a string.
const NUMERIC: &[&str] = &["port", "flush"];

pub(super) fn render(comments: &[String], sections: &[Section]) -> Result<String, FluentError> {
    let mut service = Mapping::new();
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for section in sections {
        let mut map = Mapping::new();
        for (key, value) in &section.entries {
            let key = key.to_ascii_lowercase();
            let value = match value.as_str().parse::<u64>() {
                Ok(n) if NUMERIC.contains(&key.as_str()) => Yaml::Number(n.into()),
                _ => Yaml::String(value.as_str().to_owned()),
            };
            map.insert(Yaml::String(key), value);
        }
        match section.kind {
            Kind::Service => service = map,
            Kind::Input => inputs.push(Yaml::Mapping(map)),
            Kind::Output => outputs.push(Yaml::Mapping(map)),
        }
    }
    let mut pipeline = Mapping::new();
    pipeline.insert("inputs".into(), Yaml::Sequence(inputs));
    pipeline.insert("outputs".into(), Yaml::Sequence(outputs));
    let mut root = Mapping::new();
    root.insert("service".into(), Yaml::Mapping(service));
    root.insert("pipeline".into(), Yaml::Mapping(pipeline));
    let body = serde_norway::to_string(&Yaml::Mapping(root))
        .map_err(|e| FluentError::SelfCheck { detail: format!("YAML serialization failed: {e}") })?;
    let mut out = String::new();
    for line in comments {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&body);
    Ok(out)
}

/// Reads YAML back to the classic reader's shape: `service`, then `pipeline.inputs`, then
/// `pipeline.outputs`.
///
/// # Errors
/// Not YAML, a section that is not a mapping, a value that is not a string or number,
/// or an `${…}` expansion.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let root: Yaml = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut parsed = Parsed::default();
    if let Some(service) = root.get("service") {
        parsed.sections.push((Kind::Service.to_string(), entries(service)?));
    }
    for (list, kind) in [("inputs", Kind::Input), ("outputs", Kind::Output)] {
        let items = root.get("pipeline").and_then(|p| p.get(list)).and_then(Yaml::as_sequence);
        for item in items.into_iter().flatten() {
            parsed.sections.push((kind.to_string(), entries(item)?));
        }
    }
    Ok(parsed)
}

fn entries(section: &Yaml) -> Result<Vec<(String, String)>, String> {
    let map = section.as_mapping().ok_or("a section is not a mapping")?;
    map.iter()
        .map(|(k, v)| {
            let key = k.as_str().ok_or("a key is not a string")?.to_ascii_lowercase();
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Number(n) => n.to_string(),
                _ => return Err(format!("{key} has a value that is not a string")),
            };
            if value.contains("${") {
                return Err(format!("an environment expansion in the value of {key}"));
            }
            Ok((key, value))
        })
        .collect()
}
