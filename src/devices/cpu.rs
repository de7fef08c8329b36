//! The CPU slot: one device for all the node's CPUs, as Determined's agent describes it
//! (`agent/internal/detect/cpu.go`) from gopsutil's reading of `/proc/cpuinfo`
//! (gopsutil v2.19.9, `cpu/cpu_linux.go`, as pinned by `agent/go.mod`).
//!
//! gopsutil's rules, kept here: a `processor` line starts a processor entry (one per
//! logical CPU); a line's key is the text before its first `:` and its value the text
//! between the first and the second `:`, both trimmed; `model name` or `cpu` sets the
//! model (a value containing POWER7 or POWER8 also sets the vendor to `IBM`); `vendor_id`
//! or `vendorId` sets the vendor; a `Processor` line (old ARM kernels) names the model of
//! the entries that start after it; lines before the first `processor` line are dropped.
//! The file is `$HOST_PROC/cpuinfo` when `HOST_PROC` is set and not empty, else
//! `/proc/cpuinfo`.
//!
//! Determined's device: id 0, type `cpu`, uuid = the first entry's vendor, brand =
//! `"<model> x <count> cores"` per distinct model joined with `", "`, where count is the
//! number of entries with that model (gopsutil counts one core per entry, so this is the
//! number of logical CPUs). Go lists the models in map order, which is random; here they
//! are in order of first appearance.
//!
//! Deliberate difference: gopsutil fails the whole reading when a `processor`, `stepping`
//! or `cache size` value is not a number; those fields say nothing about the device, so
//! they are not read here.

use std::path::{Path, PathBuf};

use super::device::{Device, DeviceType};
use super::report::{CpuError, Notice};

/// One logical CPU, as far as the device needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Processor {
    pub model_name: String,
    pub vendor_id: String,
}

/// The cpuinfo file to read: `$HOST_PROC/cpuinfo` or `/proc/cpuinfo`.
pub(crate) fn cpuinfo_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let proc = env("HOST_PROC").filter(|dir| !dir.is_empty()).unwrap_or_else(|| "/proc".to_owned());
    Path::new(&proc).join("cpuinfo")
}

/// The processor entries of a cpuinfo text, by gopsutil's rules.
pub(crate) fn parse(text: &str) -> Vec<Processor> {
    let mut processors = Vec::new();
    let mut processor_name = String::new();
    let mut current: Option<Processor> = None;
    // Lines before the first `processor` line fill an entry that is then thrown away.
    let mut discarded = Processor::default();
    for line in text.lines() {
        let mut parts = line.split(':');
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else { continue };
        let (key, value) = (key.trim(), value.trim());
        if key == "Processor" {
            processor_name = value.to_owned();
            continue;
        }
        if key == "processor" {
            processors.extend(current.take());
            current = Some(Processor { model_name: processor_name.clone(), vendor_id: String::new() });
            continue;
        }
        let entry = current.as_mut().unwrap_or(&mut discarded);
        match key {
            "vendorId" | "vendor_id" => entry.vendor_id = value.to_owned(),
            "model name" | "cpu" => {
                entry.model_name = value.to_owned();
                if value.contains("POWER8") || value.contains("POWER7") {
                    entry.vendor_id = "IBM".to_owned();
                }
            }
            _ => {}
        }
    }
    processors.extend(current);
    processors
}

/// Determined's CPU device for these entries; `None` when there is none.
pub(crate) fn device(processors: &[Processor]) -> Option<Device> {
    let first = processors.first()?;
    let mut models: Vec<(&str, usize)> = Vec::new();
    for processor in processors {
        match models.iter_mut().find(|(model, _)| *model == processor.model_name) {
            Some((_, count)) => *count += 1,
            None => models.push((&processor.model_name, 1)),
        }
    }
    let brand = models.iter().map(|(model, count)| format!("{model} x {count} cores")).collect::<Vec<_>>().join(", ");
    Some(Device { id: 0, brand, uuid: first.vendor_id.clone(), kind: DeviceType::Cpu })
}

/// Reads `path` and makes the CPU device, noting fields the file lacks.
pub(crate) fn detect(path: &Path, notices: &mut Vec<Notice>) -> Result<Device, CpuError> {
    let text = std::fs::read(path).map_err(|error| CpuError::Read { path: path.to_owned(), error })?;
    let processors = parse(&String::from_utf8_lossy(&text));
    let device = device(&processors).ok_or_else(|| CpuError::NoProcessors { path: path.to_owned() })?;
    if processors.iter().any(|p| p.model_name.is_empty()) {
        notices.push(Notice::CpuInfoIncomplete {
            path: path.to_owned(),
            field: "model name",
            effect: format!("the CPU slot's brand is \"{}\"", device.brand),
        });
    }
    if device.uuid.is_empty() {
        notices.push(Notice::CpuInfoIncomplete {
            path: path.to_owned(),
            field: "vendor_id",
            effect: "the CPU slot's uuid is empty".to_owned(),
        });
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/devices/cpuinfo");

    fn sample(name: &str) -> (Device, Vec<Notice>) {
        let mut notices = Vec::new();
        let device = detect(&Path::new(DATA).join(name), &mut notices).unwrap();
        (device, notices)
    }

    fn cpu(brand: &str, uuid: &str) -> Device {
        Device { id: 0, brand: brand.into(), uuid: uuid.into(), kind: DeviceType::Cpu }
    }

    #[test]
    fn two_intel_sockets_are_one_device_counting_logical_cpus() {
        let (device, notices) = sample("intel-xeon-e5-2603-v4-2-socket.txt");
        assert_eq!(device, cpu("Intel(R) Xeon(R) CPU E5-2603 v4 @ 1.70GHz x 12 cores", "GenuineIntel"));
        assert!(notices.is_empty());
    }

    #[test]
    fn recorded_amd_vm() {
        let (device, notices) = sample("amd-epyc-2-vcpu-vm.txt");
        assert_eq!(device, cpu("AMD EPYC x 2 cores", "AuthenticAMD"));
        assert!(notices.is_empty());
    }

    #[test]
    fn aarch64_without_model_or_vendor_is_reported_as_go_reports_it() {
        let (device, notices) = sample("aarch64-neoverse-n1.txt");
        assert_eq!(device, cpu(" x 4 cores", ""));
        let texts: Vec<String> = notices.iter().map(ToString::to_string).collect();
        let path = format!("{DATA}/aarch64-neoverse-n1.txt");
        assert_eq!(
            texts,
            [
                format!(
                    "{path} has no \"model name\" line, so the CPU slot's brand is \" x 4 cores\", as Determined's \
                     agent reports it"
                ),
                format!(
                    "{path} has no \"vendor_id\" line, so the CPU slot's uuid is empty, as Determined's agent \
                     reports it"
                ),
            ]
        );
    }

    #[test]
    fn an_old_arm64_processor_line_names_the_entries_after_it() {
        let (device, _) = sample("arm64-kernel-3.10.txt");
        assert_eq!(device, cpu("AArch64 Processor rev 4 (aarch64) x 4 cores", ""));
        let late = parse("processor : 0\nProcessor : Named late\nprocessor : 1\n");
        assert_eq!(late.iter().map(|p| p.model_name.as_str()).collect::<Vec<_>>(), ["", "Named late"]);
    }

    #[test]
    fn models_are_counted_separately_in_order_of_appearance() {
        let text = "processor: 0\nmodel name: B\nprocessor: 1\nmodel name: A\nprocessor: 2\nmodel name: B\n";
        assert_eq!(device(&parse(text)).unwrap().brand, "B x 2 cores, A x 1 cores");
    }

    #[test]
    fn gopsutil_line_rules() {
        // The value is the text between the first and second colon.
        assert_eq!(parse("processor : 0\nmodel name : Odd: Name\n")[0].model_name, "Odd");
        // `cpu` names the model (POWER); POWER7 and POWER8 set the vendor to IBM.
        let power = parse("processor : 0\ncpu : POWER8E (raw), altivec supported\n");
        assert_eq!(device(&power).unwrap(), cpu("POWER8E (raw), altivec supported x 1 cores", "IBM"));
        assert_eq!(parse("processor : 0\ncpu : POWER9 (raw)\n")[0].vendor_id, "");
        // vendorId is the other spelling; lines before the first processor are dropped.
        assert_eq!(parse("processor : 0\nvendorId : V\n")[0].vendor_id, "V");
        assert_eq!(parse("vendor_id : V\nprocessor : 0\n")[0].vendor_id, "");
        // Values gopsutil would fail on do not matter here.
        assert_eq!(parse("processor : x\nstepping : ?\ncache size : big\n").len(), 1);
    }

    #[test]
    fn no_processor_or_no_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("cpuinfo");
        std::fs::write(&empty, "model name : X\n").unwrap();
        let err = detect(&empty, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} lists no processor (no \"processor : N\" line), so there is no CPU to report", empty.display())
        );
        let missing = dir.path().join("nope");
        let err = detect(&missing, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{err}");
    }

    #[test]
    fn host_proc_replaces_proc_when_set_and_not_empty() {
        assert_eq!(cpuinfo_path(&|_| None), Path::new("/proc/cpuinfo"));
        assert_eq!(cpuinfo_path(&|_| Some(String::new())), Path::new("/proc/cpuinfo"));
        assert_eq!(cpuinfo_path(&|k| (k == "HOST_PROC").then(|| "/host/proc".into())), Path::new("/host/proc/cpuinfo"));
    }
}
