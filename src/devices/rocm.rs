//! AMD GPUs through `rocm-smi`, as Determined's agent finds them
//! (`agent/internal/detect/rocm.go`):
//!
//! 1. `rocm-smi --showdriverversion --csv`: a header record and a data record whose second
//!    field is the driver version, logged only.
//! 2. `rocm-smi --showuniqueid --showproductname --showbus --json`, followed by `-d` and
//!    each comma-separated entry of `visible_gpus` when it is set. If that fails, the same
//!    without `--showproductname` (a rocm-smi bug makes it fail for cards without a
//!    product name).
//! 3. The JSON is an object of cards: the card number is the key after its first four
//!    characters (`card3` → 3), brand = `"Card vendor"`, uuid = `"Unique ID"`; field names
//!    match case-insensitively and fields other than Determined's five are ignored, as Go's
//!    `encoding/json` does. When `ROCR_VISIBLE_DEVICES` is set, a card is kept only if one
//!    of its comma-separated entries is the card number written in decimal. Sorted by
//!    card number.

use serde_json::{Map, Value};

use super::command::{command_line, run_tool, Runner, ToolError};
use super::csv;
use super::device::{Device, DeviceType};
use super::report::{BadOutput, NoGpus, Notice, Outcome};

/// The tool.
pub(crate) const TOOL: &str = "rocm-smi";

/// The fields of Determined's `RocmDevice`, which must be strings when present.
const FIELDS: [&str; 5] = ["Unique ID", "Card SKU", "Card vendor", "Card model", "PCI Bus"];

/// The driver version: the second field of the second record.
pub(crate) fn parse_driver_version(text: &str) -> Result<String, BadOutput> {
    let records = csv::records(text)?;
    for record in records.iter().take(2) {
        if record.fields.len() != 2 {
            return Err(BadOutput {
                line_number: Some(record.line_number),
                line: record.line.to_owned(),
                reason: format!("expected 2 fields (device, driver version), found {}", record.fields.len()),
            });
        }
    }
    match records.get(1) {
        Some(data) => Ok(data.fields[1].clone()),
        None => Err(BadOutput { reason: "it has no data record after the header".to_owned(), ..BadOutput::empty() }),
    }
}

/// The GPU query's arguments.
pub(crate) fn gpu_query_args(visible_gpus: &str, product_name: bool) -> Vec<String> {
    let mut list = vec!["--showuniqueid".to_owned()];
    if product_name {
        list.push("--showproductname".to_owned());
    }
    list.extend(["--showbus".to_owned(), "--json".to_owned()]);
    if !visible_gpus.is_empty() {
        list.push("-d".to_owned());
        list.extend(visible_gpus.split(',').map(str::to_owned));
    }
    list
}

/// The cards of the GPU query, how many it listed, and which were kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CardList {
    pub devices: Vec<Device>,
    pub listed: usize,
}

/// The cards in rocm-smi's JSON, filtered by `ROCR_VISIBLE_DEVICES` (`None`: unset).
pub(crate) fn parse_cards(text: &str, rocr_visible_devices: Option<&str>) -> Result<CardList, BadOutput> {
    let json: Value = serde_json::from_str(text).map_err(|e| {
        let line = text.lines().nth(e.line().saturating_sub(1)).unwrap_or_default();
        BadOutput { line_number: Some(e.line()), line: line.to_owned(), reason: format!("not JSON: {e}") }
    })?;
    let cards = match json {
        Value::Object(cards) => cards,
        Value::Null => Map::new(),
        _ => return Err(whole("the JSON is not an object of cards (\"card0\": {…})".to_owned())),
    };
    let mut found = Vec::new();
    for (key, card) in &cards {
        let card = match card {
            Value::Object(card) => Some(card),
            Value::Null => None,
            _ => return Err(whole(format!("the value of \"{key}\" is not an object"))),
        };
        let field = |name: &str| -> Result<String, BadOutput> {
            let Some(card) = card else { return Ok(String::new()) };
            let value = card.get(name).or_else(|| card.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|e| e.1));
            match value {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(text)) => Ok(text.clone()),
                Some(_) => Err(whole(format!("\"{name}\" of \"{key}\" is not a string"))),
            }
        };
        for name in FIELDS {
            field(name)?;
        }
        let index = key
            .get(4..)
            .and_then(|number| number.parse::<i64>().ok())
            .ok_or_else(|| whole(format!("the key \"{key}\" is not a card number (card0, card1, …)")))?;
        found.push(Device {
            id: index,
            brand: field("Card vendor")?,
            uuid: field("Unique ID")?,
            kind: DeviceType::Rocm,
        });
    }
    let listed = found.len();
    if let Some(allowed) = rocr_visible_devices {
        found.retain(|card| allowed.split(',').any(|entry| entry == card.id.to_string()));
    }
    found.sort_by_key(|card| card.id);
    Ok(CardList { devices: found, listed })
}

fn whole(reason: String) -> BadOutput {
    BadOutput { reason, ..BadOutput::empty() }
}

/// Looks for AMD GPUs as described in the module documentation.
pub(crate) fn detect(
    runner: &dyn Runner,
    visible_gpus: &str,
    rocr_visible_devices: Option<&str>,
    notices: &mut Vec<Notice>,
) -> Outcome {
    let version_args = vec!["--showdriverversion".to_owned(), "--csv".to_owned()];
    let not_logged = "the driver version is not logged";
    match run_tool(runner, TOOL, &version_args) {
        Ok(text) => match parse_driver_version(&text) {
            Ok(version) => notices.push(Notice::DriverVersion { vendor: "ROCm", version }),
            Err(bad) => notices.push(Notice::ToolFailed {
                error: bad.into_error(command_line(TOOL, &version_args)),
                then: not_logged,
            }),
        },
        Err(error @ ToolError::NotFound { .. }) => return Outcome::NotInstalled(error),
        Err(error @ ToolError::Run { .. }) => return Outcome::Failed(error),
        Err(error) => notices.push(Notice::ToolFailed { error, then: not_logged }),
    }

    let mut query = gpu_query_args(visible_gpus, true);
    let text = match run_tool(runner, TOOL, &query) {
        Ok(text) => text,
        Err(error @ ToolError::NotFound { .. }) => return Outcome::NotInstalled(error),
        Err(error @ ToolError::Run { .. }) => return Outcome::Failed(error),
        Err(first) => {
            query = gpu_query_args(visible_gpus, false);
            match run_tool(runner, TOOL, &query) {
                Ok(text) => {
                    notices.push(Notice::RocmWithoutProductName { error: first });
                    text
                }
                Err(error @ ToolError::NotFound { .. }) => return Outcome::NotInstalled(error),
                Err(error) => return Outcome::Failed(error),
            }
        }
    };
    match parse_cards(&text, rocr_visible_devices) {
        Err(bad) => Outcome::Failed(bad.into_error(command_line(TOOL, &query))),
        Ok(list) if !list.devices.is_empty() => Outcome::Devices(list.devices),
        Ok(CardList { listed: 0, .. }) => Outcome::NoGpus(NoGpus::NoneListed { tool: TOOL }),
        Ok(CardList { listed, .. }) => Outcome::NoGpus(NoGpus::FilteredOut {
            tool: TOOL,
            variable: "ROCR_VISIBLE_DEVICES",
            value: rocr_visible_devices.unwrap_or_default().to_owned(),
            listed,
            matched_by: "card number",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Determined's `testRocmSmiData` (agent/internal/detect/rocm_test.go), verbatim.
    const DETERMINED: &str = include_str!("../../tests/data/devices/rocm-smi/determined-rocm-test.json");
    const MI210: &str = include_str!("../../tests/data/devices/rocm-smi/mi210-2-cards.json");

    fn ids(list: &CardList) -> Vec<i64> {
        list.devices.iter().map(|d| d.id).collect()
    }

    #[test]
    fn reads_determineds_test_data_sorted_by_card_number() {
        let list = parse_cards(DETERMINED, None).unwrap();
        assert_eq!(ids(&list), [0, 1, 2, 3]);
        // Determined's own assertion.
        assert_eq!(list.devices[1].uuid, "0x6be2ee3b2b314cfc");
        assert_eq!(
            list.devices[3],
            Device { id: 3, brand: "0x1002".into(), uuid: "0x2f94151ef4b53e39".into(), kind: DeviceType::Rocm }
        );
    }

    #[test]
    fn brand_is_the_card_vendor() {
        let list = parse_cards(MI210, None).unwrap();
        assert_eq!(list.devices.len(), 2);
        assert_eq!(list.devices[0].brand, "Advanced Micro Devices, Inc. [AMD/ATI]");
        assert_eq!(list.devices[1].uuid, "0x8135a09fb1c2d3e4");
    }

    #[test]
    fn rocr_visible_devices_selects_by_decimal_card_number() {
        assert_eq!(ids(&parse_cards(DETERMINED, Some("3,1")).unwrap()), [1, 3]);
        assert_eq!(ids(&parse_cards(DETERMINED, Some("01")).unwrap()), Vec::<i64>::new());
        let empty = parse_cards(DETERMINED, Some("")).unwrap();
        assert_eq!((empty.devices.len(), empty.listed), (0, 4));
    }

    #[test]
    fn fields_match_case_insensitively_and_others_are_ignored() {
        let text = r#"{"card7": {"unique id": "0xabc", "CARD VENDOR": "AMD", "Temperature": 40}}"#;
        let list = parse_cards(text, None).unwrap();
        assert_eq!(list.devices, [Device { id: 7, brand: "AMD".into(), uuid: "0xabc".into(), kind: DeviceType::Rocm }]);
        assert_eq!(parse_cards("null", None).unwrap().listed, 0);
        assert_eq!(parse_cards(r#"{"card0": null}"#, None).unwrap().devices[0].uuid, "");
    }

    #[test]
    fn what_go_cannot_decode_is_an_error_naming_the_place() {
        let reason = |text: &str| parse_cards(text, None).unwrap_err().reason;
        assert_eq!(
            reason(r#"{"card0": {}, "system": {"Driver version": "6.2"}}"#),
            "the key \"system\" is not a card number (card0, card1, …)"
        );
        assert_eq!(reason(r#"{"gpu": {}}"#), "the key \"gpu\" is not a card number (card0, card1, …)");
        assert_eq!(reason(r#"{"card0": {"Card SKU": 5}}"#), "\"Card SKU\" of \"card0\" is not a string");
        assert_eq!(reason(r#"{"card0": 5}"#), "the value of \"card0\" is not an object");
        assert_eq!(reason("[]"), "the JSON is not an object of cards (\"card0\": {…})");
        let bad = parse_cards("{\n\"card0\": {\n oops\n}}", None).unwrap_err();
        assert_eq!((bad.line_number, bad.line.as_str()), (Some(3), " oops"));
        assert!(bad.reason.starts_with("not JSON: "), "{}", bad.reason);
    }

    #[test]
    fn visible_gpus_become_separate_device_arguments() {
        assert_eq!(gpu_query_args("", true), ["--showuniqueid", "--showproductname", "--showbus", "--json"]);
        assert_eq!(gpu_query_args("0,2", false), ["--showuniqueid", "--showbus", "--json", "-d", "0", "2"]);
    }

    #[test]
    fn driver_version_is_the_second_field_of_the_data_record() {
        let text = include_str!("../../tests/data/devices/rocm-smi/driver-version.csv");
        assert_eq!(parse_driver_version(text), Ok("5.11.32.21.40".to_owned()));
        assert_eq!(
            parse_driver_version("device,Driver version\n").unwrap_err().reason,
            "it has no data record after the header"
        );
        assert_eq!(parse_driver_version("a,b,c\n").unwrap_err().line_number, Some(1));
    }
}
