//! JSON goldens of every message det-agent sends the master, each checked against the
//! field list of the Go struct the master decodes it into (Determined's source, file and
//! commit cited per test), and the refusals that keep a message the master would crash
//! on from ever being built or decoded.

use det_agent::link::protocol::{
    AgentStarted, Change, Container, ContainerFailure, ContainerInfo, ContainerLog, ContainerReattachAck,
    ContainerStarted, ContainerStateChanged, ContainerStatsRecord, DecodeError, Device, FailureType, FromMaster,
    RunMessage, ShapeError, SignalContainer, StartContainer, State, StdType, TaskStats, TaskType, Timestamp, ToMaster,
};
use serde_json::{json, Value};

/// JSON as written, objects keeping their keys' order (serde_json's `Value` sorts them).
#[derive(Debug, Clone)]
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    Scalar(Value),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Json>()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Scalar(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Null))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl std::ops::Index<&str> for Json {
    type Output = Json;
    fn index(&self, key: &str) -> &Json {
        match self {
            Json::Object(entries) => &entries.iter().find(|(k, _)| k == key).expect("key present").1,
            other => panic!("not an object: {other:?}"),
        }
    }
}

impl std::ops::Index<usize> for Json {
    type Output = Json;
    fn index(&self, i: usize) -> &Json {
        match self {
            Json::Array(items) => &items[i],
            other => panic!("not an array: {other:?}"),
        }
    }
}

/// The keys of an object, in the order written.
fn keys(json: &Json) -> Vec<&str> {
    match json {
        Json::Object(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
        other => panic!("not an object: {other:?}"),
    }
}

fn scalar(json: &Json) -> &Value {
    match json {
        Json::Scalar(v) => v,
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Encodes `message` and returns its body (keys in order) and the body as a `Value`,
/// checking the envelope names the message alone and decodes to what was sent.
fn body(message: &ToMaster, name: &str) -> (Json, Value) {
    let text = message.encode();
    assert!(text.starts_with(&format!("{{\"{name}\":")), "{text}");
    let json: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(keys(&json), [name]);
    // What the master decodes is what was sent.
    assert_eq!(&ToMaster::decode(&text).unwrap(), message);
    let value: Value = serde_json::from_str(&text).unwrap();
    (json[name].clone(), value[name].clone())
}

fn time(s: &str) -> Timestamp {
    Timestamp(time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap())
}

fn gpu() -> Device {
    Device { id: 0, brand: "NVIDIA A100".into(), uuid: "GPU-1".into(), kind: "cuda".into() }
}

/// `aproto.AgentStarted`: `Version`, `Devices`, `ContainersReattached`, `ResourcePoolName`
/// (master/pkg/aproto/master_message.go; `ResourcePoolName` from PR #9815, as in
/// WU-CVGL/determined@72cee938). `device.Device`: json tags `id`, `brand`, `uuid`, `type`
/// (master/pkg/device/device.go). `aproto.ContainerReattachAck`: `Container`, `Failure`.
#[test]
fn agent_started_golden() {
    let started = AgentStarted {
        version: "0.1.0".into(),
        devices: vec![gpu()],
        containers_reattached: vec![ContainerReattachAck {
            container: Container::new("c1", State::Running),
            failure: Some(ContainerFailure::new(FailureType::RestoreError, "container is gone on reattachment")),
        }],
        resource_pool_name: "gpu".into(),
    };
    let (json, body) = body(&ToMaster::AgentStarted(started), "AgentStarted");
    assert_eq!(keys(&json), ["Version", "Devices", "ContainersReattached", "ResourcePoolName"]);
    assert_eq!(keys(&json["Devices"][0]), ["id", "brand", "uuid", "type"]);
    assert_eq!(keys(&json["ContainersReattached"][0]), ["Container", "Failure"]);
    assert_eq!(keys(&json["ContainersReattached"][0]["Failure"]), ["FailureType", "ErrMsg", "ExitCode"]);
    assert_eq!(
        body,
        json!({"Version": "0.1.0", "Devices": [{"id": 0, "brand": "NVIDIA A100", "uuid": "GPU-1", "type": "cuda"}],
            "ContainersReattached": [{"Container": {"id": "c1", "state": "RUNNING", "devices": [], "description": ""},
                "Failure": {"FailureType": "container failed to restore after agent failure",
                    "ErrMsg": "container is gone on reattachment", "ExitCode": null}}],
            "ResourcePoolName": "gpu"})
    );
}

/// `aproto.ContainerStateChanged`: `Container`, `ContainerStarted`, `ContainerStopped`;
/// `ContainerStopped`: `Failure`; `ContainerFailure`: `FailureType`, `ErrMsg`, `ExitCode`
/// (master/pkg/aproto/master_message.go @a181189c, exit.go @07b04081). `cproto.Container`:
/// json tags `id`, `state`, `devices`, `description` (master/pkg/cproto/container.go @bc65ee1c).
#[test]
fn container_state_changed_terminated_golden() {
    let mut container = Container::new("7d1c", State::Assigned);
    container.devices = vec![gpu()];
    let failure =
        ContainerFailure { failure_type: FailureType::ContainerFailed, err_msg: "exit 3".into(), exit_code: Some(3) };
    let changed = ContainerStateChanged::terminated(container, Some(failure));
    let text = ToMaster::ContainerStateChanged(changed.clone()).encode();
    let (json, _) = body(&ToMaster::ContainerStateChanged(changed), "ContainerStateChanged");
    assert_eq!(keys(&json), ["Container", "ContainerStarted", "ContainerStopped"]);
    assert_eq!(keys(&json["Container"]), ["id", "state", "devices", "description"]);
    assert_eq!(keys(&json["ContainerStopped"]), ["Failure"]);
    assert_eq!(keys(&json["ContainerStopped"]["Failure"]), ["FailureType", "ErrMsg", "ExitCode"]);
    assert_eq!(
        text,
        r#"{"ContainerStateChanged":{"Container":{"id":"7d1c","state":"TERMINATED","devices":[{"id":0,"brand":"NVIDIA A100","uuid":"GPU-1","type":"cuda"}],"description":""},"ContainerStarted":null,"ContainerStopped":{"Failure":{"FailureType":"container failed with non-zero exit code","ErrMsg":"exit 3","ExitCode":3}}}}"#
    );
}

/// `aproto.ContainerStarted`: `ProxyAddress`, `ContainerInfo` (docker's `ContainerJSON`).
#[test]
fn container_state_changed_running_golden() {
    let info = ContainerInfo::from_inspect(json!({"Id": "abc", "HostConfig": {"NetworkMode": "bridge"}})).unwrap();
    let started = ContainerStarted { proxy_address: "10.0.0.5".into(), container_info: info };
    let changed = ContainerStateChanged::new(Container::new("7d1c", State::Starting), Change::Running(started));
    let (json, running) = body(&ToMaster::ContainerStateChanged(changed), "ContainerStateChanged");
    assert_eq!(running["Container"]["state"], "RUNNING");
    assert_eq!(keys(&json["ContainerStarted"]), ["ProxyAddress", "ContainerInfo"]);
    assert_eq!(running["ContainerStarted"]["ContainerInfo"]["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(running["ContainerStopped"], Value::Null);
    let pulling = ContainerStateChanged::new(Container::new("7d1c", State::Assigned), Change::Pulling);
    let (_, pulling) = body(&ToMaster::ContainerStateChanged(pulling), "ContainerStateChanged");
    assert_eq!((&pulling["Container"]["state"], &pulling["ContainerStarted"]), (&json!("PULLING"), &Value::Null));
}

/// `aproto.ContainerLog`: `ContainerID`, `Timestamp`, `Level`, `PullMessage`,
/// `RunMessage`, `AuxMessage`, `Source`, `AgentID` (master/pkg/aproto/master_message.go,
/// `Source` and `AgentID` as in WU-CVGL/determined@72cee938, which the master forwards);
/// `RunMessage`: `Value`, `StdType` (a number, Docker's stdcopy.StdType).
#[test]
fn container_log_golden() {
    let log = ContainerLog {
        container_id: "7d1c".into(),
        timestamp: time("2024-05-01T12:00:00.5Z"),
        level: Some("INFO".into()),
        pull_message: None,
        run_message: Some(RunMessage { value: "epoch 1".into(), std_type: StdType::Stderr }),
        aux_message: None,
        source: Some("agent".into()),
        agent_id: Some("node-1".into()),
    };
    let text = ToMaster::ContainerLog(log.clone()).encode();
    let (json, _) = body(&ToMaster::ContainerLog(log), "ContainerLog");
    assert_eq!(
        keys(&json),
        ["ContainerID", "Timestamp", "Level", "PullMessage", "RunMessage", "AuxMessage", "Source", "AgentID"]
    );
    assert_eq!(keys(&json["RunMessage"]), ["Value", "StdType"]);
    assert_eq!(scalar(&json["RunMessage"]["StdType"]), &json!(2));
    assert_eq!(
        text,
        r#"{"ContainerLog":{"ContainerID":"7d1c","Timestamp":"2024-05-01T12:00:00.5Z","Level":"INFO","PullMessage":null,"RunMessage":{"Value":"epoch 1","StdType":2},"AuxMessage":null,"Source":"agent","AgentID":"node-1"}}"#
    );
}

/// `aproto.ContainerStatsRecord`: `EndStats`, `Stats`, `TaskType` (master_message.go
/// @a181189c); `model.TaskStats`: `AllocationID`, `EventType`, `ContainerID`, `StartTime`,
/// `EndTime`, no json tags (master/pkg/model/task.go @0254f7d2).
#[test]
fn container_stats_record_golden() {
    let record = ContainerStatsRecord {
        end_stats: true,
        stats: TaskStats {
            allocation_id: "t.1".into(),
            event_type: "IMAGEPULL".into(),
            container_id: Some("7d1c".into()),
            start_time: Some(time("2024-05-01T12:00:00Z")),
            end_time: None,
        },
        task_type: TaskType::Trial,
    };
    let (json, body) = body(&ToMaster::ContainerStatsRecord(record), "ContainerStatsRecord");
    assert_eq!(keys(&json), ["EndStats", "Stats", "TaskType"]);
    assert_eq!(keys(&json["Stats"]), ["AllocationID", "EventType", "ContainerID", "StartTime", "EndTime"]);
    assert_eq!(
        body,
        json!({"EndStats": true, "Stats": {"AllocationID": "t.1", "EventType": "IMAGEPULL", "ContainerID": "7d1c",
            "StartTime": "2024-05-01T12:00:00Z", "EndTime": null}, "TaskType": "TRIAL"})
    );
}

/// The master's messages, as its `aproto.AgentMessage` envelope carries them
/// (master/pkg/aproto/agent_message.go @6e1c48a7): `StartContainer` {`Container`,
/// `Spec`}, `SignalContainer` {`ContainerID`, `Signal` (a number)}, `AgentShutdown` {`ErrMsg`}.
#[test]
fn the_masters_messages_decode_from_the_go_encoding() {
    let start = r#"{"MasterSetAgentOptions":null,"StartContainer":{"Container":{"id":"7d1c","state":"ASSIGNED","devices":[{"id":0,"brand":"NVIDIA A100","uuid":"GPU-1","type":"cuda"}],"description":"cmd-1"},"Spec":{"TaskType":"COMMAND"}},"SignalContainer":null,"AgentShutdown":null}"#;
    let FromMaster::StartContainer(StartContainer { container, spec }) = FromMaster::decode(start).unwrap() else {
        panic!("not StartContainer")
    };
    assert_eq!((container.id.as_str(), container.state, container.devices.len()), ("7d1c", State::Assigned, 1));
    assert_eq!(spec.parse::<serde_json::Value>().unwrap()["TaskType"], "COMMAND");
    let signal = r#"{"MasterSetAgentOptions":null,"StartContainer":null,"SignalContainer":{"ContainerID":"7d1c","Signal":9},"AgentShutdown":null}"#;
    assert_eq!(
        FromMaster::decode(signal).unwrap(),
        FromMaster::SignalContainer(SignalContainer { container_id: "7d1c".into(), signal: 9 })
    );
    // And the dev master encodes them the same way.
    let decoded = FromMaster::decode(start).unwrap();
    assert_eq!(FromMaster::decode(&decoded.encode()).unwrap(), decoded);
}

#[test]
fn messages_the_master_would_crash_on_cannot_be_decoded_or_built() {
    // TERMINATED without ContainerStopped, RUNNING without ContainerStarted: the master
    // dereferences both.
    let terminated =
        r#"{"ContainerStateChanged":{"Container":{"id":"c","state":"TERMINATED"},"ContainerStopped":null}}"#;
    let running = r#"{"ContainerStateChanged":{"Container":{"id":"c","state":"RUNNING"},"ContainerStarted":null}}"#;
    for (text, wanted) in
        [(terminated, ShapeError::TerminatedWithoutStopped), (running, ShapeError::RunningWithoutStarted)]
    {
        let err = ToMaster::decode(text).unwrap_err();
        assert!(matches!(err, DecodeError::Shape { name: "ContainerStateChanged", .. }), "{err}");
        assert!(err.to_string().contains(&wanted.to_string()), "{err}");
    }
    // An unknown name, or no name at all, panics the master.
    for text in ["{}", r#"{"ContainerExploded":{}}"#, r#"{"AgentStarted":null}"#] {
        assert!(matches!(ToMaster::decode(text), Err(DecodeError::NoKnownMessage { .. })), "{text}");
    }
    // A state or failure type the master does not know.
    let state =
        r#"{"ContainerStateChanged":{"Container":{"id":"c","state":"EXPLODED"},"ContainerStopped":{"Failure":null}}}"#;
    assert!(ToMaster::decode(state).unwrap_err().to_string().contains("invalid container state: EXPLODED"));
    let failure = r#"{"ContainerStateChanged":{"Container":{"id":"c","state":"TERMINATED"},"ContainerStopped":{"Failure":{"FailureType":"oops","ErrMsg":"","ExitCode":null}}}}"#;
    assert!(ToMaster::decode(failure).unwrap_err().to_string().contains("unknown failure type \"oops\""));
    // ContainerInfo must carry what the master reads.
    assert_eq!(ContainerInfo::from_inspect(json!({})), Err(ShapeError::NoNetworkMode));
    assert_eq!(
        ContainerInfo::from_inspect(json!({"HostConfig": {"NetworkMode": "host"}})),
        Err(ShapeError::HostModeWithoutConfig)
    );
    assert_eq!(ContainerInfo::from_inspect(json!([1])), Err(ShapeError::InfoNotObject));
    // The state always follows the change.
    let changed = ContainerStateChanged::new(Container::new("c", State::Running), Change::Starting);
    assert_eq!(changed.container().state, State::Starting);
}
