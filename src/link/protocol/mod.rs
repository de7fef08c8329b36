//! The agent websocket's messages, as Determined encodes them: JSON text frames, one
//! object whose single non-null key names the message (`{"MasterSetAgentOptions": {…}}`),
//! with Go's field names (`master/pkg/aproto/agent_message.go` for the master's,
//! `master_message.go` for the agent's).
//!
//! Both directions are typed. The master panics on a message name it does not decode
//! (`master/internal/rm/agentrm/agent.go`, `HandleIncomingWebsocketMessage`), so
//! [`ToMaster`] can only hold the four it handles, each in a shape it accepts.
//!
//! Reading is stricter than Go's `encoding/json` in ways a Determined master never meets,
//! since Go's encoder never writes them: a name repeated inside a message's body, or a
//! `null` where Go's field is a plain string, is refused as a shape error (Go keeps the
//! last value, and reads `null` as ""), and names match exactly (Go also accepts them in
//! another case). The envelope itself follows Go: the last of a repeated name wins.
//! What the master chose to write is bounded in what it costs (lists at most
//! [`MAX_LISTED`] long, text shown and kept cut to 512 characters).

mod container;
mod device;
mod envelope;
mod raw;
mod report;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::text::Untrusted;

pub use container::{
    Change, Container, ContainerFailure, ContainerInfo, ContainerReattach, ContainerReattachAck, ContainerStarted,
    ContainerStateChanged, ContainerStopped, FailureType, ShapeError, SignalContainer, StartContainer, State,
};
pub use device::Device;
pub use raw::RawJson;
pub use report::{ContainerLog, ContainerStatsRecord, RunMessage, StdType, TaskStats, TaskType, Timestamp};

/// Determined's `aproto.ErrAgentMustReconnect`: how the master says an agent it no
/// longer remembers must register afresh, as an HTTP error body's `message` on the
/// upgrade and as `AgentShutdown`'s `ErrMsg`.
pub const AGENT_MUST_RECONNECT: &str = "agent is past reconnect period, it must restart";

/// Whether the master's `message` is [`AGENT_MUST_RECONNECT`]. Compared whole (around
/// white space), on the master's own words.
pub fn is_past_reconnect(message: &str) -> bool {
    message.trim() == AGENT_MUST_RECONNECT
}

/// A message from the master (`aproto.AgentMessage`).
#[derive(Debug, Clone, PartialEq)]
pub enum FromMaster {
    /// The master's first message after the upgrade.
    SetAgentOptions(MasterSetAgentOptions),
    /// Run a container.
    StartContainer(StartContainer),
    /// Signal a container (kill it: the master only sends SIGKILL).
    SignalContainer(SignalContainer),
    /// The master tells the agent to stop.
    Shutdown {
        /// Why, as the master put it.
        err_msg: String,
    },
}

/// A message to the master (`aproto.MasterMessage`): only the four the master decodes.
#[derive(Debug, Clone, PartialEq)]
pub enum ToMaster {
    /// The agent's answer to `MasterSetAgentOptions` (sent by the link).
    AgentStarted(AgentStarted),
    /// A container changed state.
    ContainerStateChanged(ContainerStateChanged),
    /// A container's log line.
    ContainerLog(ContainerLog),
    /// A container's timing record.
    ContainerStatsRecord(ContainerStatsRecord),
}

/// Why a text frame is not a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("the frame is not JSON ({})", serde_words(.0))]
    NotJson(serde_json::Error),
    /// JSON, but not an object (`null` included).
    #[error("the frame is not a JSON object")]
    NotAnObject,
    /// An object in which no known message is set (`{}`, or only unknown names).
    #[error("the frame names no message this side knows{}", .names.first().map(|n| format!(" (it names {})", crate::text::quoted(n))).unwrap_or_default())]
    NoKnownMessage {
        /// The non-null names it carried.
        names: Vec<String>,
    },
    /// A known message with a shape this side does not accept.
    #[error("{name} has an unexpected shape: {}", serde_words(.error))]
    Shape {
        /// The message.
        name: &'static str,
        /// What was wrong.
        error: serde_json::Error,
    },
}

/// serde_json's account of what was wrong, escaped and cut: it quotes the offending value,
/// which the master chose and which may be as long as the frame.
fn serde_words(error: &serde_json::Error) -> String {
    crate::text::escape(&crate::text::clip(&error.to_string(), SHOWN)).into_owned()
}

/// Most characters of the master's own text (a parse error's quote, `AgentShutdown`'s
/// `ErrMsg`) kept and shown.
const SHOWN: usize = 512;

/// `MasterSetAgentOptions`. `MasterInfo` and `LoggingOptions` are kept as the master
/// sent them (as text: [`RawJson`]): the link does not interpret the master's settings,
/// the application may.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MasterSetAgentOptions {
    /// `MasterInfo` (cluster ID, version, …).
    #[serde(default)]
    pub master_info: RawJson,
    /// `LoggingOptions`.
    #[serde(default)]
    pub logging_options: RawJson,
    /// Containers the master expects this agent to reattach (`null` on a fresh
    /// registration; at most [`MAX_LISTED`]).
    #[serde(default, deserialize_with = "bounded_list")]
    pub containers_to_reattach: Vec<ContainerReattach>,
}

/// What a master says about itself: `GET /info`'s answer, and `MasterInfo` in
/// `MasterSetAgentOptions` (Determined's `aproto.MasterInfo`, master/pkg/aproto/master_message.go,
/// with its snake_case JSON names). Every string came from the network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct MasterInfo {
    /// The master's version, e.g. `0.38.0`.
    #[serde(default, deserialize_with = "untrusted")]
    pub version: Untrusted,
    /// The cluster's ID (kept in the master's database; tasks see it as `DET_CLUSTER_ID`).
    #[serde(default, deserialize_with = "untrusted")]
    pub cluster_id: Untrusted,
    /// The master's ID (new at each master start; `DET_MASTER_ID`).
    #[serde(default, deserialize_with = "untrusted")]
    pub master_id: Untrusted,
    /// The cluster's name.
    #[serde(default, deserialize_with = "untrusted")]
    pub cluster_name: Untrusted,
}

impl MasterInfo {
    /// Reads a `MasterInfo` object; `None` unless it is a JSON object carrying a
    /// non-empty `version` and `cluster_id`, as every Determined master sends.
    pub fn from_json(bytes: &[u8]) -> Option<MasterInfo> {
        let info: MasterInfo = serde_json::from_slice(bytes).ok()?;
        (!info.version.is_empty() && !info.cluster_id.is_empty()).then_some(info)
    }
}

fn untrusted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Untrusted, D::Error> {
    Ok(Untrusted::new(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

/// `AgentStarted`: what this agent runs and can offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentStarted {
    /// det-agent's version.
    pub version: String,
    /// GPUs, or the CPU when there are none.
    #[serde(deserialize_with = "null_as_empty")]
    pub devices: Vec<Device>,
    /// What became of each container the master asked to reattach.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers_reattached: Vec<ContainerReattachAck>,
    /// The resource pool joined: always the pool's name, `default` when unset, since the
    /// master compares it with the pool it holds on every reconnect.
    #[serde(default)]
    pub resource_pool_name: String,
}

impl AgentStarted {
    /// This agent's answer to `options`: det-agent's version, `devices`, the pool, and
    /// every container the master lists as gone. det-agent runs no containers, so none
    /// survived; the Go agent acknowledges a missing container the same way
    /// (`agent/internal/containers/manager.go`, `ReattachContainers`), and the master then
    /// fails it at once instead of waiting.
    pub fn answering(options: &MasterSetAgentOptions, devices: Vec<Device>, resource_pool: &str) -> AgentStarted {
        let gone = options.containers_to_reattach.iter().map(|r| ContainerReattachAck {
            container: r.container.clone(),
            failure: Some(ContainerFailure::new(FailureType::RestoreError, "container is gone on reattachment")),
        });
        AgentStarted {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            devices,
            containers_reattached: gone.collect(),
            resource_pool_name: if resource_pool.is_empty() { "default" } else { resource_pool }.to_owned(),
        }
    }
}

impl FromMaster {
    /// Decodes a text frame from the master.
    ///
    /// # Errors
    /// The frame is not a message, names none this side knows, or has the wrong shape.
    pub fn decode(text: &str) -> Result<FromMaster, DecodeError> {
        let (name, body) =
            first_known(text, &["MasterSetAgentOptions", "StartContainer", "SignalContainer", "AgentShutdown"])?;
        match name {
            "MasterSetAgentOptions" => shape(name, body).map(FromMaster::SetAgentOptions),
            "StartContainer" => shape(name, body).map(FromMaster::StartContainer),
            "SignalContainer" => shape(name, body).map(FromMaster::SignalContainer),
            _ => {
                #[derive(Deserialize)]
                struct AgentShutdown {
                    #[serde(rename = "ErrMsg", default)]
                    err_msg: String,
                }
                shape::<AgentShutdown>(name, body)
                    .map(|s| FromMaster::Shutdown { err_msg: crate::text::clip(&s.err_msg, SHOWN).into_owned() })
            }
        }
    }

    /// The message's name.
    pub fn kind(&self) -> &'static str {
        match self {
            FromMaster::SetAgentOptions(_) => "MasterSetAgentOptions",
            FromMaster::StartContainer(_) => "StartContainer",
            FromMaster::SignalContainer(_) => "SignalContainer",
            FromMaster::Shutdown { .. } => "AgentShutdown",
        }
    }

    /// Encodes as the master does (for the dev master).
    pub fn encode(&self) -> String {
        let body = match self {
            FromMaster::SetAgentOptions(o) => serde_json::to_string(o),
            FromMaster::StartContainer(s) => serde_json::to_string(s),
            FromMaster::SignalContainer(s) => serde_json::to_string(s),
            FromMaster::Shutdown { err_msg } => serde_json::to_string(&serde_json::json!({ "ErrMsg": err_msg })),
        };
        envelope(self.kind(), body)
    }
}

impl ToMaster {
    /// Encodes as a text frame: `{"Name": body}`, the body's fields in Go's order.
    pub fn encode(&self) -> String {
        let body = match self {
            ToMaster::AgentStarted(m) => serde_json::to_string(m),
            ToMaster::ContainerStateChanged(m) => serde_json::to_string(m),
            ToMaster::ContainerLog(m) => serde_json::to_string(m),
            ToMaster::ContainerStatsRecord(m) => serde_json::to_string(m),
        };
        envelope(self.kind(), body)
    }

    /// Decodes a text frame as the master does (for the dev master): the first known
    /// message in Go's field order, every shape checked.
    ///
    /// # Errors
    /// What the master would fail on or crash on.
    pub fn decode(text: &str) -> Result<ToMaster, DecodeError> {
        let names = ["AgentStarted", "ContainerStateChanged", "ContainerLog", "ContainerStatsRecord"];
        let (name, body) = first_known(text, &names)?;
        match name {
            "AgentStarted" => shape(name, body).map(ToMaster::AgentStarted),
            "ContainerStateChanged" => shape(name, body).map(ToMaster::ContainerStateChanged),
            "ContainerLog" => shape(name, body).map(ToMaster::ContainerLog),
            _ => shape(name, body).map(ToMaster::ContainerStatsRecord),
        }
    }

    /// The message's name.
    pub fn kind(&self) -> &'static str {
        match self {
            ToMaster::AgentStarted(_) => "AgentStarted",
            ToMaster::ContainerStateChanged(_) => "ContainerStateChanged",
            ToMaster::ContainerLog(_) => "ContainerLog",
            ToMaster::ContainerStatsRecord(_) => "ContainerStatsRecord",
        }
    }
}

/// `{"kind":body}`, the body's fields in declaration order (Go's).
fn envelope(kind: &str, body: serde_json::Result<String>) -> String {
    // These types serialize to JSON without fail (string keys, no floats).
    let body = body.unwrap_or_else(|_| "null".to_owned());
    format!("{{{}:{body}}}", Value::String(kind.to_owned()))
}

/// The first of `known` set (non-null) in the frame's object, in `known`'s order, as Go
/// decodes its envelope structs: unknown names are ignored, and an object with none of
/// `known` set is no message. The bodies are slices of `text`: see [`envelope`].
fn first_known<'a>(text: &'a str, known: &[&'static str]) -> Result<(&'static str, &'a RawValue), DecodeError> {
    let envelope = envelope::Envelope::read(text, known)?;
    match envelope.first_set() {
        Some(found) => Ok(found),
        None => Err(DecodeError::NoKnownMessage { names: envelope.others }),
    }
}

fn shape<T: serde::de::DeserializeOwned>(name: &'static str, body: &RawValue) -> Result<T, DecodeError> {
    serde_json::from_str(body.get()).map_err(|error| DecodeError::Shape { name, error })
}

/// Most entries a list from the master may hold (`ContainersToReattach`): far more
/// containers than one node runs, and a bound on what a hostile frame can make det-agent
/// allocate (each entry costs several times its text once read).
pub const MAX_LISTED: usize = 65_536;

/// A list of at most [`MAX_LISTED`] entries; `null` is empty.
fn bounded_list<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct Bounded<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_LISTED} entries, or null")
        }
        fn visit_none<E>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut list = Vec::new();
            while let Some(entry) = seq.next_element()? {
                if list.len() == MAX_LISTED {
                    return Err(serde::de::Error::custom(format!("more than {MAX_LISTED} entries in a list")));
                }
                list.push(entry);
            }
            Ok(list)
        }
    }
    d.deserialize_option(Bounded(std::marker::PhantomData))
}

fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_go_encoding_with_null_siblings() {
        let text = r#"{"MasterSetAgentOptions":{"MasterInfo":{"version":"0.38.0"},"LoggingOptions":{},"ContainersToReattach":null},"StartContainer":null}"#;
        let FromMaster::SetAgentOptions(opts) = FromMaster::decode(text).unwrap() else { panic!() };
        assert_eq!(opts.master_info.parse::<Value>().unwrap()["version"], "0.38.0");
        assert!(opts.containers_to_reattach.is_empty());
        let start = FromMaster::decode(
            r#"{"MasterSetAgentOptions":null,"StartContainer":{"Container":{"id":"c1","state":"ASSIGNED","devices":null},"Spec":{}}}"#,
        )
        .unwrap();
        assert_eq!(start.kind(), "StartContainer");
        let shutdown = FromMaster::decode(r#"{"AgentShutdown":{"ErrMsg":"bye"}}"#).unwrap();
        assert_eq!(shutdown, FromMaster::Shutdown { err_msg: "bye".to_owned() });
        let signal = FromMaster::decode(r#"{"SignalContainer":{"ContainerID":"c1","Signal":9}}"#).unwrap();
        assert_eq!(signal, FromMaster::SignalContainer(SignalContainer { container_id: "c1".into(), signal: 9 }));
    }

    #[test]
    fn refuses_what_is_not_a_message_with_typed_errors() {
        assert!(matches!(FromMaster::decode("[1"), Err(DecodeError::NotJson(_))));
        assert!(matches!(FromMaster::decode("null"), Err(DecodeError::NotAnObject)));
        assert!(matches!(FromMaster::decode("{}"), Err(DecodeError::NoKnownMessage { names }) if names.is_empty()));
        let err = FromMaster::decode(r#"{"A":null,"Bogus\u001b":{}}"#).unwrap_err();
        assert_eq!(err.to_string(), "the frame names no message this side knows (it names \"Bogus\\x1b\")");
        let err = FromMaster::decode(r#"{"MasterSetAgentOptions":{"ContainersToReattach":7}}"#).unwrap_err();
        assert!(matches!(err, DecodeError::Shape { name: "MasterSetAgentOptions", .. }), "{err}");
        let err =
            FromMaster::decode(r#"{"SignalContainer":{"ContainerID":"\u001b[2J","Signal":"x\u001b"}}"#).unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }

    #[test]
    fn a_repeated_name_keeps_its_last_body_as_go_does() {
        let start = r#"{"Container":{"id":"c1","state":"ASSIGNED"},"Spec":{"a":[1, 2]}}"#;
        let text = format!(r#"{{"StartContainer":null,"StartContainer":{start},"SignalContainer":null}}"#);
        let FromMaster::StartContainer(s) = FromMaster::decode(&text).unwrap() else { panic!("{text}") };
        assert_eq!((s.container.id.as_str(), s.spec.get()), ("c1", r#"{"a":[1, 2]}"#));
        // A later null unsets it; an escaped name is the same name.
        let text = format!(r#"{{"StartContainer":{start},"StartContainer":null}}"#);
        assert!(matches!(FromMaster::decode(&text), Err(DecodeError::NoKnownMessage { .. })), "{text}");
        let text = r#" {"AgentShutdow\u006e":{"ErrMsg":"bye"}} "#;
        assert_eq!(FromMaster::decode(text).unwrap(), FromMaster::Shutdown { err_msg: "bye".to_owned() });
    }

    #[test]
    fn an_error_names_a_few_unknown_names_and_never_the_whole_frame() {
        let long = "N".repeat(10_000);
        let mut text = format!(r#"{{"{long}":1"#);
        for i in 0..100 {
            text.push_str(&format!(r#","X{i}":{{}}"#));
        }
        text.push('}');
        let Err(DecodeError::NoKnownMessage { names }) = FromMaster::decode(&text) else { panic!() };
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], format!("{}…", "N".repeat(64)));
        assert_eq!(names[1..], ["X0", "X1", "X2", "X3", "X4", "X5", "X6"]);
    }

    #[test]
    fn a_reattach_list_is_bounded() {
        let entry = r#"{"Container":{}}"#;
        let list = |n: usize| vec![entry; n].join(",");
        let frame = |n: usize| format!(r#"{{"MasterSetAgentOptions":{{"ContainersToReattach":[{}]}}}}"#, list(n));
        let FromMaster::SetAgentOptions(o) = FromMaster::decode(&frame(MAX_LISTED)).unwrap() else { panic!() };
        assert_eq!(o.containers_to_reattach.len(), MAX_LISTED);
        let err = FromMaster::decode(&frame(MAX_LISTED + 1)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MasterSetAgentOptions has an unexpected shape: more than 65536 entries in a list"),
            "{err}"
        );
    }

    #[test]
    fn the_masters_long_texts_are_cut_in_what_is_kept_and_shown() {
        let long = "x".repeat(1 << 20);
        let text = format!(r#"{{"AgentShutdown":{{"ErrMsg":"{long}"}}}}"#);
        let FromMaster::Shutdown { err_msg } = FromMaster::decode(&text).unwrap() else { panic!() };
        assert_eq!(err_msg, format!("{}… (cut; 1 MiB in all)", "x".repeat(512)));
        let text = format!(r#"{{"SignalContainer":{{"ContainerID":"c","Signal":"{long}"}}}}"#);
        let shown = FromMaster::decode(&text).unwrap_err().to_string();
        assert!(shown.len() < 700 && shown.contains("… (cut; "), "{} bytes: {}", shown.len(), &shown[..200]);
    }

    #[test]
    fn past_reconnect_is_the_masters_whole_message() {
        assert!(is_past_reconnect("agent is past reconnect period, it must restart"));
        assert!(is_past_reconnect(" agent is past reconnect period, it must restart\n"));
        assert!(!is_past_reconnect("the master says this agent is past reconnect period"));
        assert!(!is_past_reconnect(""));
    }

    #[test]
    fn agent_started_names_the_pool_and_acknowledges_every_listed_container_as_gone() {
        let options = MasterSetAgentOptions {
            containers_to_reattach: vec![ContainerReattach { container: Container::new("c1", State::Running) }],
            ..MasterSetAgentOptions::default()
        };
        let started = AgentStarted::answering(&options, Vec::new(), "");
        assert_eq!(started.resource_pool_name, "default");
        assert_eq!(started.containers_reattached.len(), 1);
        let failure = started.containers_reattached[0].failure.as_ref().unwrap();
        assert_eq!(failure.failure_type, FailureType::RestoreError);
    }
}
