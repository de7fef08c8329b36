//! NVIDIA GPUs and MIG instances through `nvidia-smi`, as Determined's agent finds them
//! (`agent/internal/detect/nvidia.go`):
//!
//! 1. `nvidia-smi --query-gpu=driver_version --format=csv,noheader`: the driver version,
//!    logged only. If this fails, detection ends with that failure (Determined's agent
//!    logs it and runs the next queries, which fail alike).
//! 2. `nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader`: when the output
//!    starts with `Enabled` (so the first GPU's mode decides), `nvidia-smi -L`; every line
//!    matching Determined's expression `(MIG \S+).+\(UUID.+(MIG.+)\)` is a device: brand
//!    `MIG 1g.5gb`, uuid `MIG-…`, ids 0, 1, 2, … in listing order across GPUs. If there is
//!    at least one, these are the devices, whatever `visible_gpus` and
//!    `CUDA_VISIBLE_DEVICES` say.
//! 3. Otherwise `nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader`, with
//!    `--id=<visible_gpus>` appended when `visible_gpus` is set (nvidia-smi then selects by
//!    index, UUID or PCI bus ID). Each record `index, name, uuid` is a device, trimmed, in
//!    output order. When `CUDA_VISIBLE_DEVICES` is set, a record is kept only if one of its
//!    comma-separated entries (not trimmed) equals the trimmed index or UUID, so a set but
//!    empty variable hides every GPU.
//!
//! The parsers are pure functions of the tool's text; [`detect`] runs the commands.

use std::sync::LazyLock;

use regex_lite::Regex;

use super::command::{command_line, run_tool, Runner, ToolError};
use super::csv;
use super::device::{Device, DeviceType};
use super::report::{BadOutput, NoGpus, Notice, Outcome};

/// The tool.
pub(crate) const TOOL: &str = "nvidia-smi";

/// What nvidia-smi prints when the driver sees no GPU (or none matches `--id`).
const NO_DEVICES: &str = "No devices were found";

/// Determined's `detectMIGRegExp`. Go's `\S` is ASCII (`[^\t\n\f\r ]`), spelled out here.
static MIG_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(MIG [^\t\n\f\r ]+).+\(UUID.+(MIG.+)\)").expect("the MIG expression is valid"));

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

/// The GPU query's arguments, with `--id=<visible_gpus>` when set.
pub(crate) fn gpu_query_args(visible_gpus: &str) -> Vec<String> {
    let mut list = args(&["--query-gpu=index,name,uuid", "--format=csv,noheader"]);
    if !visible_gpus.is_empty() {
        list.push(format!("--id={visible_gpus}"));
    }
    list
}

/// The driver version: the first CSV record, which must have one field.
pub(crate) fn parse_driver_version(text: &str) -> Result<String, BadOutput> {
    let records = csv::records(text)?;
    let first = records.first().ok_or_else(BadOutput::empty)?;
    match first.fields.as_slice() {
        [version] => Ok(version.clone()),
        fields => Err(BadOutput {
            line_number: Some(first.line_number),
            line: first.line.to_owned(),
            reason: format!("expected 1 field (the driver version), found {}", fields.len()),
        }),
    }
}

/// Whether MIG instances are looked for: Go's `strings.HasPrefix(out, "Enabled")`.
pub(crate) fn mig_enabled(text: &str) -> bool {
    text.starts_with("Enabled")
}

/// The MIG instances in `nvidia-smi -L` output, numbered in listing order.
pub(crate) fn parse_mig_instances(text: &str) -> Vec<Device> {
    text.lines()
        .filter_map(|line| MIG_LINE.captures(line))
        .enumerate()
        .map(|(id, found)| Device {
            id: id as i64,
            brand: found[1].to_owned(),
            uuid: found[2].to_owned(),
            kind: DeviceType::Cuda,
        })
        .collect()
}

/// The GPUs of the GPU query, how many records it listed, and which were kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GpuList {
    pub devices: Vec<Device>,
    pub listed: usize,
}

/// The records of the GPU query, filtered by `CUDA_VISIBLE_DEVICES` (`None`: unset). As in
/// Go, the filter runs before the index is read, so a hidden record's index is not checked.
pub(crate) fn parse_gpus(text: &str, cuda_visible_devices: Option<&str>) -> Result<GpuList, BadOutput> {
    let mut list = GpuList { devices: Vec::new(), listed: 0 };
    for record in csv::records(text)? {
        let bad =
            |reason: String| BadOutput { line_number: Some(record.line_number), line: record.line.to_owned(), reason };
        let [index, name, uuid] = record.fields.as_slice() else {
            let found = record.fields.len();
            return Err(bad(format!("expected 3 comma-separated fields (index, name, uuid), found {found}")));
        };
        list.listed += 1;
        let (index, uuid) = (index.trim(), uuid.trim());
        if let Some(allowed) = cuda_visible_devices {
            if !allowed.split(',').any(|entry| entry == index || entry == uuid) {
                continue;
            }
        }
        let id = index.parse::<i64>().map_err(|_| bad(format!("the GPU index \"{index}\" is not an integer")))?;
        list.devices.push(Device { id, brand: name.trim().to_owned(), uuid: uuid.to_owned(), kind: DeviceType::Cuda });
    }
    Ok(list)
}

/// Runs one nvidia-smi query. `Err(None)` when nvidia-smi says it sees no GPU, with
/// whatever exit status (6 in the versions seen); `Err(Some(error))` for other failures.
fn query(runner: &dyn Runner, args: &[String]) -> Result<String, Option<ToolError>> {
    match run_tool(runner, TOOL, args) {
        Ok(text) if text.trim() == NO_DEVICES => Err(None),
        Ok(text) => Ok(text),
        Err(error) if error.printed(NO_DEVICES) => Err(None),
        Err(error) => Err(Some(error)),
    }
}

/// Where a failed step leaves detection: `None` to go on (a warning is noted), or the
/// outcome to stop with.
fn settle(failure: Option<ToolError>, then: &'static str, notices: &mut Vec<Notice>) -> Option<Outcome> {
    match failure {
        None => Some(Outcome::NoGpus(NoGpus::NoDevicesFound { tool: TOOL })),
        Some(error @ ToolError::NotFound { .. }) => Some(Outcome::NotInstalled(error)),
        // Timeouts and start failures would only repeat for the next command.
        Some(error @ ToolError::Run { .. }) => Some(Outcome::Failed(error)),
        Some(error) => {
            notices.push(Notice::ToolFailed { error, then });
            None
        }
    }
}

/// Looks for NVIDIA GPUs as described in the module documentation.
pub(crate) fn detect(
    runner: &dyn Runner,
    visible_gpus: &str,
    cuda_visible_devices: Option<&str>,
    notices: &mut Vec<Notice>,
) -> Outcome {
    let version_args = args(&["--query-gpu=driver_version", "--format=csv,noheader"]);
    match query(runner, &version_args) {
        Ok(text) => match parse_driver_version(&text) {
            Ok(version) => notices.push(Notice::DriverVersion { vendor: "NVIDIA", version }),
            Err(bad) => notices.push(Notice::ToolFailed {
                error: bad.into_error(command_line(TOOL, &version_args)),
                then: "the driver version is not logged",
            }),
        },
        // Determined's agent logs this failure and runs the next two queries, which fail
        // the same way; one failure is reported here instead of three.
        Err(Some(error @ ToolError::Failed { .. })) => return Outcome::Failed(error),
        Err(failure) => {
            if let Some(outcome) = settle(failure, "the driver version is not logged", notices) {
                return outcome;
            }
        }
    }

    if let Some(instances) = mig_instances(runner, visible_gpus, cuda_visible_devices, notices) {
        return instances;
    }

    let gpu_query = gpu_query_args(visible_gpus);
    let text = match query(runner, &gpu_query) {
        Ok(text) => text,
        Err(None) => return Outcome::NoGpus(NoGpus::NoDevicesFound { tool: TOOL }),
        Err(Some(error @ ToolError::NotFound { .. })) => return Outcome::NotInstalled(error),
        Err(Some(error)) => return Outcome::Failed(error),
    };
    match parse_gpus(&text, cuda_visible_devices) {
        Err(bad) => Outcome::Failed(bad.into_error(command_line(TOOL, &gpu_query))),
        Ok(list) if !list.devices.is_empty() => Outcome::Devices(list.devices),
        Ok(GpuList { listed: 0, .. }) => Outcome::NoGpus(NoGpus::NoneListed { tool: TOOL }),
        Ok(GpuList { listed, .. }) => Outcome::NoGpus(NoGpus::FilteredOut {
            tool: TOOL,
            variable: "CUDA_VISIBLE_DEVICES",
            value: cuda_visible_devices.unwrap_or_default().to_owned(),
            listed,
            matched_by: "index or UUID",
        }),
    }
}

/// Step 2: the MIG instances when MIG mode is on and there are some (`Some` ends
/// detection), `None` to list whole GPUs.
fn mig_instances(
    runner: &dyn Runner,
    visible_gpus: &str,
    cuda_visible_devices: Option<&str>,
    notices: &mut Vec<Notice>,
) -> Option<Outcome> {
    let mode = match query(runner, &args(&["--query-gpu=mig.mode.current", "--format=csv,noheader"])) {
        Ok(text) => text,
        Err(failure) => return settle(failure, "MIG instances are not looked for", notices),
    };
    let modes: Vec<String> = mode.lines().map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
    if modes.iter().any(|m| m == "Enabled") && modes.iter().any(|m| m != "Enabled") {
        notices.push(Notice::MixedMigModes { modes });
    }
    if !mig_enabled(&mode) {
        return None;
    }
    let listing = match query(runner, &args(&["-L"])) {
        Ok(text) => text,
        Err(failure) => return settle(failure, "whole GPUs are listed instead of MIG instances", notices),
    };
    let instances = parse_mig_instances(&listing);
    if instances.is_empty() {
        notices.push(Notice::MigWithoutInstances);
        return None;
    }
    let mut settings = Vec::new();
    if !visible_gpus.is_empty() {
        settings.push(format!("visible_gpus=\"{visible_gpus}\""));
    }
    if let Some(value) = cuda_visible_devices {
        settings.push(format!("CUDA_VISIBLE_DEVICES=\"{value}\""));
    }
    if !settings.is_empty() {
        notices.push(Notice::MigIgnoresSelection { settings });
    }
    Some(Outcome::Devices(instances))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = include_str!("../../tests/data/devices/nvidia-smi/query-gpu-a100-4.csv");
    const LIST_MIG: &str = include_str!("../../tests/data/devices/nvidia-smi/list-mig.txt");
    const LIST_MIG_R450: &str = include_str!("../../tests/data/devices/nvidia-smi/list-mig-r450.txt");
    const STRAY: &str = include_str!("../../tests/data/devices/nvidia-smi/query-gpu-stray-line.csv");

    const GPU_UUIDS: [&str; 4] = [
        "GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e",
        "GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90",
        "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "GPU-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b",
    ];

    fn gpu(id: i64) -> Device {
        Device {
            id,
            brand: "NVIDIA A100-SXM4-40GB".into(),
            uuid: GPU_UUIDS[id as usize].into(),
            kind: DeviceType::Cuda,
        }
    }

    fn ids(list: &GpuList) -> Vec<i64> {
        list.devices.iter().map(|d| d.id).collect()
    }

    #[test]
    fn reads_every_gpu_trimmed_in_output_order() {
        let list = parse_gpus(QUERY, None).unwrap();
        assert_eq!(list, GpuList { devices: (0..4).map(gpu).collect(), listed: 4 });
        let reordered = concat!(
            "3, NVIDIA A100-SXM4-40GB ,  GPU-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b \n",
            "0,NVIDIA A100-SXM4-40GB,GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e",
        );
        assert_eq!(parse_gpus(reordered, None).unwrap().devices, [gpu(3), gpu(0)]);
    }

    #[test]
    fn cuda_visible_devices_selects_by_index_or_uuid_untrimmed() {
        assert_eq!(ids(&parse_gpus(QUERY, Some("1,3")).unwrap()), [1, 3]);
        let by_uuid = format!("{},0", GPU_UUIDS[2]);
        assert_eq!(ids(&parse_gpus(QUERY, Some(&by_uuid)).unwrap()), [0, 2]);
        // Entries are compared as written: " 2" is not "2" (Determined's own test case).
        assert_eq!(ids(&parse_gpus(QUERY, Some(" 2")).unwrap()), Vec::<i64>::new());
        assert_eq!(ids(&parse_gpus(QUERY, Some("7")).unwrap()), Vec::<i64>::new());
    }

    #[test]
    fn cuda_visible_devices_set_but_empty_hides_every_gpu_unset_hides_none() {
        let empty = parse_gpus(QUERY, Some("")).unwrap();
        assert_eq!((empty.devices.len(), empty.listed), (0, 4));
        assert_eq!(parse_gpus(QUERY, None).unwrap().devices.len(), 4);
    }

    #[test]
    fn hidden_records_are_not_checked_but_records_with_a_bad_shape_are() {
        let text = "x, Mystery, GPU-x\n0, NVIDIA A100-SXM4-40GB, GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e\n";
        assert_eq!(parse_gpus(text, Some("0")).unwrap().devices, [gpu(0)]);
        let bad = parse_gpus(text, None).unwrap_err();
        assert_eq!(bad.line_number, Some(1));
        assert_eq!(bad.reason, "the GPU index \"x\" is not an integer");
        let bad = parse_gpus(STRAY, Some("0")).unwrap_err();
        assert_eq!(
            bad,
            BadOutput {
                line_number: Some(1),
                line: "WARNING: infoROM is corrupted at gpu 0000:07:00.0".into(),
                reason: "expected 3 comma-separated fields (index, name, uuid), found 1".into(),
            }
        );
        assert_eq!(parse_gpus("", None).unwrap(), GpuList { devices: vec![], listed: 0 });
    }

    #[test]
    fn mig_instances_are_numbered_across_gpus_in_listing_order() {
        let found = parse_mig_instances(LIST_MIG);
        let expected = [
            ("MIG 3g.20gb", "MIG-4c5d6e7f-8a9b-5c0d-9e1f-2a3b4c5d6e7f"),
            ("MIG 2g.10gb", "MIG-5d6e7f8a-9b0c-5d1e-8f2a-3b4c5d6e7f8a"),
            ("MIG 1g.5gb", "MIG-6e7f8a9b-0c1d-5e2f-a3b4-c5d6e7f8a9b0"),
            ("MIG 1g.5gb", "MIG-7f8a9b0c-1d2e-5f3a-b4c5-d6e7f8a9b0c1"),
            ("MIG 3g.20gb", "MIG-8a9b0c1d-2e3f-5a4b-85c6-d7e8f9a0b1c2"),
            ("MIG 3g.20gb", "MIG-9b0c1d2e-3f4a-5b5c-96d7-e8f9a0b1c2d3"),
        ];
        let expected: Vec<Device> = expected
            .iter()
            .enumerate()
            .map(|(i, (brand, uuid))| Device {
                id: i as i64,
                brand: (*brand).into(),
                uuid: (*uuid).into(),
                kind: DeviceType::Cuda,
            })
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn old_mig_uuids_run_to_the_last_parenthesis() {
        let found = parse_mig_instances(LIST_MIG_R450);
        let uuids: Vec<&str> = found.iter().map(|d| d.uuid.as_str()).collect();
        assert_eq!(
            uuids,
            ["MIG-GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e/1/0", "MIG-GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e/2/0",]
        );
        assert!(found.iter().all(|d| d.brand == "MIG 3g.20gb"));
        // GPU lines and lines without "(UUID" are not instances.
        assert!(parse_mig_instances("GPU 0: A100 (UUID: GPU-1)\nMIG 1g.5gb Device 0\n").is_empty());
    }

    #[test]
    fn mig_mode_is_the_first_gpus() {
        assert!(mig_enabled("Enabled\nDisabled\n"));
        assert!(!mig_enabled("Disabled\nEnabled\n"));
        assert!(!mig_enabled("[N/A]\n"));
        assert!(!mig_enabled(" Enabled"));
    }

    #[test]
    fn visible_gpus_is_passed_whole_to_id() {
        assert_eq!(gpu_query_args(""), ["--query-gpu=index,name,uuid", "--format=csv,noheader"]);
        assert_eq!(gpu_query_args("0,GPU-abc")[2], "--id=0,GPU-abc");
    }

    #[test]
    fn driver_version_is_the_first_record() {
        let text = include_str!("../../tests/data/devices/nvidia-smi/driver-version.csv");
        assert_eq!(parse_driver_version(text), Ok("535.129.03".to_owned()));
        assert_eq!(parse_driver_version("").unwrap_err().reason, "it is empty");
        assert_eq!(parse_driver_version("1, 2").unwrap_err().reason, "expected 1 field (the driver version), found 2");
    }
}
