//! Detection end to end: each slot type over recorded tool outputs (a fake [`Runner`]),
//! then the real-process runner against fake `nvidia-smi` scripts on a temporary `PATH`.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use super::command::command_line;
use super::*;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/devices");

const NV_VERSION: &str = "nvidia-smi --query-gpu=driver_version --format=csv,noheader";
const NV_MIG: &str = "nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader";
const NV_LIST: &str = "nvidia-smi -L";
const NV_QUERY: &str = "nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader";
const ROCM_VERSION: &str = "rocm-smi --showdriverversion --csv";
const ROCM_QUERY: &str = "rocm-smi --showuniqueid --showproductname --showbus --json";
const ROCM_QUERY_NO_NAME: &str = "rocm-smi --showuniqueid --showbus --json";

const INTEL: &str = "Intel(R) Xeon(R) CPU E5-2603 v4 @ 1.70GHz x 12 cores";

fn data(path: &str) -> String {
    std::fs::read_to_string(Path::new(DATA).join(path)).unwrap()
}

type Answer = Box<dyn Fn() -> Result<ToolOutput, RunError>>;

/// Answers command lines from recorded outputs (a later answer for the same line replaces
/// the earlier one). A program with no answers is not installed; an unexpected command line
/// of a program with answers fails the test.
#[derive(Default)]
struct Fake {
    answers: Vec<(String, Answer)>,
    calls: RefCell<Vec<String>>,
}

impl Fake {
    fn answer(mut self, line: &str, answer: impl Fn() -> Result<ToolOutput, RunError> + 'static) -> Self {
        self.answers.retain(|(known, _)| known != line);
        self.answers.push((line.to_owned(), Box::new(answer)));
        self
    }

    fn prints(self, line: &str, sample: &str) -> Self {
        let text = data(sample);
        self.answer(line, move || Ok(ToolOutput::success(text.clone())))
    }

    fn fails(self, line: &str, code: i32, stdout_sample: &str) -> Self {
        let text = data(stdout_sample);
        self.answer(line, move || Ok(ToolOutput::failure(code, text.clone(), "")))
    }

    /// A node with `nvidia-smi` and four A100s, MIG off.
    fn nvidia_plain(self) -> Self {
        self.prints(NV_VERSION, "nvidia-smi/driver-version.csv")
            .prints(NV_MIG, "nvidia-smi/mig-mode-disabled.csv")
            .prints(NV_QUERY, "nvidia-smi/query-gpu-a100-4.csv")
    }

    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Runner for Fake {
    fn run(&self, program: &str, args: &[String]) -> Result<ToolOutput, RunError> {
        let line = command_line(program, args);
        self.calls.borrow_mut().push(line.clone());
        match self.answers.iter().find(|(known, _)| *known == line) {
            Some((_, answer)) => answer(),
            None if self.answers.iter().any(|(known, _)| known.split(' ').next() == Some(program)) => {
                panic!("unexpected command: {line}")
            }
            None => Err(RunError::NotFound),
        }
    }
}

/// An environment with `HOST_PROC` pointing at a folder holding the Intel cpuinfo sample,
/// and `vars`.
struct Env {
    proc: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new(vars: &[(&str, &str)]) -> Self {
        let proc = tempfile::tempdir().unwrap();
        std::fs::write(proc.path().join("cpuinfo"), data("cpuinfo/intel-xeon-e5-2603-v4-2-socket.txt")).unwrap();
        Env { proc, vars: vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if name == "HOST_PROC" {
            return Some(self.proc.path().display().to_string());
        }
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

fn options(slot_type: SlotType) -> DetectOptions {
    DetectOptions::new(slot_type, "node-1")
}

fn run(options: &DetectOptions, env: &Env, runner: &dyn Runner) -> Result<Detection, DetectError> {
    detect(options, &|name| env.lookup(name), runner)
}

fn notices(detection: &Detection) -> Vec<(Level, String)> {
    detection.notices.iter().map(|n| (n.level(), n.to_string())).collect()
}

fn summary(devices: &[Device]) -> Vec<String> {
    devices.iter().map(|d| format!("{d} {}", d.uuid)).collect()
}

fn cpu_device() -> Vec<Device> {
    vec![Device { id: 0, brand: INTEL.into(), uuid: "GenuineIntel".into(), kind: DeviceType::Cpu }]
}

#[test]
fn none_reports_no_device_and_runs_nothing() {
    let fake = Fake::default();
    let found = run(&options(SlotType::None), &Env::new(&[]), &fake).unwrap();
    assert!(found.devices.is_empty() && found.notices.is_empty());
    assert!(fake.calls().is_empty());
}

#[test]
fn artificial_slots_win_over_the_slot_type_and_run_nothing() {
    let fake = Fake::default().nvidia_plain();
    let mut opts = options(SlotType::Cuda);
    opts.artificial_slots = 2;
    let found = run(&opts, &Env::new(&[]), &fake).unwrap();
    assert_eq!(
        found.devices.iter().map(|d| (d.id, d.brand.as_str(), d.kind)).collect::<Vec<_>>(),
        [(0, "Artificial", DeviceType::Cpu), (1, "Artificial", DeviceType::Cpu)]
    );
    assert!(fake.calls().is_empty());
}

#[test]
fn cpu_reads_host_proc_and_runs_nothing() {
    let fake = Fake::default().nvidia_plain();
    let found = run(&options(SlotType::Cpu), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert!(fake.calls().is_empty());
}

#[test]
fn auto_without_vendor_tools_is_the_cpu_logged_at_info() {
    let fake = Fake::default();
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(
        notices(&found),
        [
            (Level::Info, "nvidia-smi is not installed (not found on PATH), so no GPU of its vendor is used".into()),
            (Level::Info, "rocm-smi is not installed (not found on PATH), so no GPU of its vendor is used".into()),
        ]
    );
    assert_eq!(fake.calls(), [NV_VERSION, ROCM_VERSION]);
}

#[test]
fn auto_and_cuda_report_plain_gpus_in_order() {
    for slot_type in [SlotType::Auto, SlotType::Cuda] {
        let fake = Fake::default().nvidia_plain();
        let found = run(&options(slot_type), &Env::new(&[]), &fake).unwrap();
        assert_eq!(
            summary(&found.devices),
            [
                "cuda0 (NVIDIA A100-SXM4-40GB) GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e",
                "cuda1 (NVIDIA A100-SXM4-40GB) GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90",
                "cuda2 (NVIDIA A100-SXM4-40GB) GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "cuda3 (NVIDIA A100-SXM4-40GB) GPU-5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b",
            ]
        );
        assert_eq!(notices(&found), [(Level::Info, "NVIDIA driver version: 535.129.03".into())]);
        assert_eq!(fake.calls(), [NV_VERSION, NV_MIG, NV_QUERY]);
    }
}

#[test]
fn visible_gpus_goes_to_nvidia_smi_and_cuda_visible_devices_filters_its_answer() {
    let query = format!("{NV_QUERY} --id=0,1,3");
    let fake = Fake::default()
        .prints(NV_VERSION, "nvidia-smi/driver-version.csv")
        .prints(NV_MIG, "nvidia-smi/mig-mode-disabled.csv")
        .prints(&query, "nvidia-smi/query-gpu-a100-4.csv");
    let mut opts = options(SlotType::Cuda);
    opts.visible_gpus = "0,1,3".into();
    let env = Env::new(&[("CUDA_VISIBLE_DEVICES", "3,GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90")]);
    let found = run(&opts, &env, &fake).unwrap();
    assert_eq!(found.devices.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(fake.calls().last().unwrap(), &query);
}

#[test]
fn mig_instances_come_first_and_ignore_gpu_selection() {
    let fake = Fake::default()
        .prints(NV_VERSION, "nvidia-smi/driver-version.csv")
        .prints(NV_MIG, "nvidia-smi/mig-mode-enabled.csv")
        .prints(NV_LIST, "nvidia-smi/list-mig.txt")
        .prints(NV_QUERY, "nvidia-smi/query-gpu-a100-4.csv");
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices.len(), 6);
    assert_eq!(found.devices[5].to_string(), "cuda5 (MIG 3g.20gb)");
    assert_eq!(fake.calls(), [NV_VERSION, NV_MIG, NV_LIST]);
    assert_eq!(found.notices.len(), 1);

    let mut opts = options(SlotType::Cuda);
    opts.visible_gpus = "1".into();
    let found = run(&opts, &Env::new(&[("CUDA_VISIBLE_DEVICES", "1")]), &fake).unwrap();
    assert_eq!(found.devices.len(), 6);
    assert_eq!(notices(&found)[1], (
        Level::Warning,
        "MIG instances are used, and visible_gpus=\"1\" and CUDA_VISIBLE_DEVICES=\"1\" applies to whole GPUs only: \
         Determined's agent reports every MIG instance on the node"
            .into()
    ));
}

#[test]
fn mig_without_instances_or_unreadable_falls_back_to_whole_gpus() {
    let no_instances = Fake::default()
        .nvidia_plain()
        .prints(NV_MIG, "nvidia-smi/mig-mode-enabled.csv")
        .answer(NV_LIST, || Ok(ToolOutput::success("GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-8d3c)\n")));
    let found = run(&options(SlotType::Cuda), &Env::new(&[]), &no_instances).unwrap();
    assert_eq!(found.devices.len(), 4);
    assert_eq!(found.notices[1].level(), Level::Warning);
    assert!(found.notices[1].to_string().starts_with("MIG mode is enabled but `nvidia-smi -L` lists no MIG instance"));

    let list_fails = Fake::default()
        .prints(NV_VERSION, "nvidia-smi/driver-version.csv")
        .prints(NV_MIG, "nvidia-smi/mig-mode-enabled.csv")
        .answer(NV_LIST, || Ok(ToolOutput::failure(2, "", "Invalid combination")))
        .prints(NV_QUERY, "nvidia-smi/query-gpu-a100-4.csv");
    let found = run(&options(SlotType::Cuda), &Env::new(&[]), &list_fails).unwrap();
    assert_eq!(found.devices.len(), 4);
    assert_eq!(
        notices(&found)[1],
        (
            Level::Warning,
            "`nvidia-smi -L` failed with exit status 2: \"Invalid combination\"; whole GPUs are listed instead of MIG \
         instances"
                .into()
        )
    );
}

#[test]
fn a_failing_mig_mode_query_is_a_warning_and_whole_gpus_are_listed_as_in_go() {
    let fake = Fake::default().nvidia_plain().answer(NV_MIG, || Ok(ToolOutput::failure(3, "Field not supported", "")));
    let found = run(&options(SlotType::Cuda), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices.len(), 4);
    assert_eq!(
        notices(&found)[1],
        (
            Level::Warning,
            format!("`{NV_MIG}` failed with exit status 3: \"Field not supported\"; MIG instances are not looked for")
        )
    );
    assert_eq!(fake.calls(), [NV_VERSION, NV_MIG, NV_QUERY]);
}

#[test]
fn only_the_first_gpus_mig_mode_counts_and_a_mix_is_warned_about() {
    let fake = Fake::default()
        .prints(NV_VERSION, "nvidia-smi/driver-version.csv")
        .answer(NV_MIG, || Ok(ToolOutput::success("Disabled\nEnabled\n")))
        .prints(NV_QUERY, "nvidia-smi/query-gpu-a100-4.csv");
    let found = run(&options(SlotType::Cuda), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices.len(), 4);
    assert_eq!(fake.calls(), [NV_VERSION, NV_MIG, NV_QUERY]);
    assert_eq!(notices(&found)[1], (
        Level::Warning,
        "nvidia-smi reports MIG modes \"Disabled, Enabled\" for the GPUs; as in Determined's agent, the first GPU's \
         mode alone decides between MIG instances and whole GPUs"
            .into()
    ));
}

#[test]
fn cuda_with_a_failing_nvidia_smi_stops_with_what_it_said() {
    let fake = Fake::default()
        .fails(NV_VERSION, 9, "nvidia-smi/driver-not-loaded.txt")
        .fails(NV_MIG, 9, "nvidia-smi/driver-not-loaded.txt")
        .fails(NV_QUERY, 9, "nvidia-smi/driver-not-loaded.txt");
    let err = run(&options(SlotType::Cuda), &Env::new(&[]), &fake).unwrap_err();
    assert_eq!(
        err.to_string(),
        "slot_type cuda: `nvidia-smi --query-gpu=driver_version --format=csv,noheader` failed with exit status 9: \
         \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest \
         NVIDIA driver is installed and running.\"; run the command by hand to see why it fails and repair the \
         driver, or set slot_type to auto (GPUs when present, else the CPU), cpu or none"
    );
}

#[test]
fn auto_with_a_failing_nvidia_smi_warns_and_uses_the_cpu_as_go_does() {
    let fake = Fake::default()
        .fails(NV_VERSION, 9, "nvidia-smi/driver-not-loaded.txt")
        .fails(NV_MIG, 9, "nvidia-smi/driver-not-loaded.txt")
        .fails(NV_QUERY, 9, "nvidia-smi/driver-not-loaded.txt");
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices, cpu_device());
    let levels: Vec<Level> = found.notices.iter().map(Notice::level).collect();
    assert_eq!(levels, [Level::Warning, Level::Info]);
    assert_eq!(
        found.notices[0].to_string(),
        format!(
            "`{NV_VERSION}` failed with exit status 9: \"NVIDIA-SMI has failed because it couldn't communicate with \
             the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\"; AMD GPUs and then \
             the CPU are looked for instead"
        )
    );
    assert_eq!(fake.calls(), [NV_VERSION, ROCM_VERSION]);
}

#[test]
fn unreadable_nvidia_output_stops_auto_and_cuda_naming_the_line() {
    for slot_type in [SlotType::Auto, SlotType::Cuda] {
        let fake = Fake::default()
            .prints(NV_VERSION, "nvidia-smi/driver-version.csv")
            .prints(NV_MIG, "nvidia-smi/mig-mode-disabled.csv")
            .prints(NV_QUERY, "nvidia-smi/query-gpu-stray-line.csv");
        let err = run(&options(slot_type), &Env::new(&[]), &fake).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "slot_type {slot_type}: `{NV_QUERY}` printed line 1 \"WARNING: infoROM is corrupted at gpu \
                 0000:07:00.0\" that cannot be read: expected 3 comma-separated fields (index, name, uuid), found 1; \
                 run the command by hand"
            )),
            "{err}"
        );
    }
}

#[test]
fn cuda_without_nvidia_smi_is_an_error_saying_what_to_install() {
    let err = run(&options(SlotType::Cuda), &Env::new(&[]), &Fake::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "slot_type cuda: `{NV_VERSION}`: nvidia-smi is not installed (not found on PATH); install the GPU \
             driver's nvidia-smi where det-agent's PATH finds it, or set slot_type to auto (GPUs when present, else \
             the CPU), cpu or none"
        )
    );
}

#[test]
fn no_devices_found_is_an_error_for_cuda_and_info_for_auto() {
    let fake = Fake::default().fails(NV_VERSION, 6, "nvidia-smi/no-devices.txt");
    let err = run(&options(SlotType::Cuda), &Env::new(&[]), &fake).unwrap_err();
    assert!(matches!(err, DetectError::NoGpus { reason: NoGpus::NoDevicesFound { .. }, .. }));
    assert!(err.to_string().starts_with("slot_type cuda: nvidia-smi found no GPU (\"No devices were found\"); "));
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(notices(&found)[0], (Level::Info, "nvidia-smi found no GPU (\"No devices were found\")".into()));
    assert_eq!(fake.calls(), [NV_VERSION, NV_VERSION, ROCM_VERSION]);
    // Also when it exits 0.
    let zero = Fake::default().prints(NV_VERSION, "nvidia-smi/no-devices.txt");
    assert!(matches!(
        run(&options(SlotType::Cuda), &Env::new(&[]), &zero),
        Err(DetectError::NoGpus { reason: NoGpus::NoDevicesFound { .. }, .. })
    ));
}

#[test]
fn an_empty_cuda_visible_devices_hides_every_gpu_and_says_so() {
    let env = Env::new(&[("CUDA_VISIBLE_DEVICES", "")]);
    let err = run(&options(SlotType::Cuda), &env, &Fake::default().nvidia_plain()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "slot_type cuda: CUDA_VISIBLE_DEVICES=\"\" matches none of the 4 GPU(s) nvidia-smi lists (by index or UUID), \
         so none is used; CUDA_VISIBLE_DEVICES is set but empty, which hides every GPU; check visible_gpus and the \
         *_VISIBLE_DEVICES variables, or set slot_type to auto, cpu or none (an agent without slots)"
    );
    let found = run(&options(SlotType::Auto), &env, &Fake::default().nvidia_plain()).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(found.notices[1].level(), Level::Warning);
}

#[test]
fn a_hung_tool_is_reported_and_not_retried() {
    let fake = Fake::default().answer(NV_VERSION, || Err(RunError::TimedOut(Duration::from_secs(30))));
    let err = run(&options(SlotType::Cuda), &Env::new(&[]), &fake).unwrap_err();
    assert!(err.to_string().starts_with(&format!(
        "slot_type cuda: `{NV_VERSION}` could not be run: did not finish within 30 s and was stopped; "
    )));
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(found.notices[0].level(), Level::Warning);
    assert_eq!(fake.calls(), [NV_VERSION, NV_VERSION, ROCM_VERSION]);
}

#[test]
fn rocm_cards_sorted_and_auto_falls_through_to_them() {
    let fake = Fake::default()
        .prints(ROCM_VERSION, "rocm-smi/driver-version.csv")
        .prints(ROCM_QUERY, "rocm-smi/determined-rocm-test.json");
    for slot_type in [SlotType::Rocm, SlotType::Auto] {
        let found = run(&options(slot_type), &Env::new(&[("ROCR_VISIBLE_DEVICES", "3,0")]), &fake).unwrap();
        assert_eq!(summary(&found.devices), ["rocm0 (0x1002) 0x7ef570db1b346018", "rocm3 (0x1002) 0x2f94151ef4b53e39"]);
        assert_eq!(notices(&found).last().unwrap(), &(Level::Info, "ROCm driver version: 5.11.32.21.40".into()));
    }
}

#[test]
fn rocm_retries_without_the_product_name_as_go_does() {
    let fake = Fake::default()
        .prints(ROCM_VERSION, "rocm-smi/driver-version.csv")
        .answer(&format!("{ROCM_QUERY} -d 0 1"), || Ok(ToolOutput::failure(1, "", "KeyError: 'Card series'")))
        .prints(&format!("{ROCM_QUERY_NO_NAME} -d 0 1"), "rocm-smi/determined-rocm-test.json");
    let mut opts = options(SlotType::Rocm);
    opts.visible_gpus = "0,1".into();
    let found = run(&opts, &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices.len(), 4);
    assert_eq!(
        notices(&found)[1],
        (
            Level::Warning,
            format!(
            "rocm-smi detected a card without a product name, firmware issue possible (`{ROCM_QUERY} -d 0 1` failed \
             with exit status 1: \"KeyError: 'Card series'\"; the query without --showproductname worked)"
        )
        )
    );
}

#[test]
fn unreadable_rocm_output_is_a_warning_for_auto_as_in_go_and_an_error_for_rocm() {
    let fake = Fake::default()
        .prints(ROCM_VERSION, "rocm-smi/driver-version.csv")
        .answer(ROCM_QUERY, || Ok(ToolOutput::success(r#"{"system": {"Driver version": "6.2"}}"#)));
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &fake).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(
        notices(&found).last().unwrap(),
        &(
            Level::Warning,
            format!(
                "`{ROCM_QUERY}` printed output that cannot be read: the key \"system\" is not a card number (card0, \
             card1, …); the CPU is used instead"
            )
        )
    );
    assert!(matches!(run(&options(SlotType::Rocm), &Env::new(&[]), &fake), Err(DetectError::Tool { .. })));
}

#[test]
fn a_broken_cpu_description_is_an_error() {
    let env = Env::new(&[]);
    std::fs::write(env.proc.path().join("cpuinfo"), "").unwrap();
    let err = run(&options(SlotType::Cpu), &env, &Fake::default()).unwrap_err();
    assert!(matches!(err, DetectError::Cpu(CpuError::NoProcessors { .. })), "{err}");
}

// Real processes: fake `nvidia-smi` scripts first on a temporary PATH.

fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(dir: &Path) -> String {
    format!("{}:/usr/bin:/bin", dir.display())
}

#[test]
fn real_processes_answer_like_recorded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"case "$*" in
  --query-gpu=driver_version*) cat '{DATA}/nvidia-smi/driver-version.csv' ;;
  --query-gpu=mig.mode.current*) cat '{DATA}/nvidia-smi/mig-mode-disabled.csv' ;;
  "--query-gpu=index,name,uuid --format=csv,noheader --id=2,3") cat '{DATA}/nvidia-smi/query-gpu-a100-4.csv' ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac"#
    );
    script(dir.path(), "nvidia-smi", &body);
    let runner = SystemRunner::new(DEFAULT_TOOL_TIMEOUT).with_path(path_with(dir.path()));
    let mut opts = options(SlotType::Cuda);
    opts.visible_gpus = "2,3".into();
    let found = run(&opts, &Env::new(&[("CUDA_VISIBLE_DEVICES", "2,3")]), &runner).unwrap();
    assert_eq!(found.devices.iter().map(|d| d.id).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(notices(&found), [(Level::Info, "NVIDIA driver version: 535.129.03".into())]);
}

#[test]
fn a_real_failure_keeps_exit_status_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "nvidia-smi", "echo 'Failed to initialize NVML: Driver/library version mismatch' >&2; exit 18");
    let runner = SystemRunner::new(DEFAULT_TOOL_TIMEOUT).with_path(path_with(dir.path()));
    let out = runner.run("nvidia-smi", &["-L".to_owned()]).unwrap();
    assert_eq!(out.exit, Exit::Code(18));
    assert_eq!(out.stderr, b"Failed to initialize NVML: Driver/library version mismatch\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_real_tool_that_hangs_is_stopped_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "nvidia-smi", "exec sleep 600");
    let runner = SystemRunner::new(Duration::from_millis(300)).with_path(path_with(dir.path()));
    let err = run(&options(SlotType::Cuda), &Env::new(&[]), &runner).unwrap_err();
    assert!(
        matches!(&err, DetectError::Tool { error: ToolError::Run { error: RunError::TimedOut(_), .. }, .. }),
        "{err}"
    );
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &runner).unwrap();
    assert_eq!(found.devices, cpu_device());
}

#[test]
fn a_real_missing_tool_is_not_installed() {
    let empty = tempfile::tempdir().unwrap();
    let runner = SystemRunner::new(DEFAULT_TOOL_TIMEOUT).with_path(empty.path());
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &runner).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(found.notices.len(), 2);
    assert!(found.notices.iter().all(|n| matches!(n, Notice::NotInstalled { .. })));
    let err = run(&options(SlotType::Rocm), &Env::new(&[]), &runner).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("slot_type rocm: `rocm-smi --showdriverversion --csv`: rocm-smi is not installed"));
}

#[test]
fn a_real_tool_that_cannot_start_is_a_failure_not_an_absence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nvidia-smi"), "not executable").unwrap();
    let runner = SystemRunner::new(DEFAULT_TOOL_TIMEOUT).with_path(dir.path());
    let found = run(&options(SlotType::Auto), &Env::new(&[]), &runner).unwrap();
    assert_eq!(found.devices, cpu_device());
    assert_eq!(found.notices[0].level(), Level::Warning);
    assert!(
        found.notices[0].to_string().starts_with(&format!("`{NV_VERSION}` could not be run: cannot be started: ")),
        "{}",
        found.notices[0]
    );
}

#[test]
fn a_real_flood_of_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "nvidia-smi", &format!("head -c {} /dev/zero", OUTPUT_LIMIT + 1));
    let runner = SystemRunner::new(DEFAULT_TOOL_TIMEOUT).with_path(path_with(dir.path()));
    assert!(matches!(runner.run("nvidia-smi", &[]), Err(RunError::TooMuchOutput)));
}
