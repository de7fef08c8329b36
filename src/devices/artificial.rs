//! Artificial slots (`artificial_slots: N`): N fake CPU devices for testing a cluster
//! without the hardware, as in Determined's `Detect` (`agent/internal/detect/detect.go`):
//! ids 0..N, brand `Artificial`, type `cpu`, and a random-looking UUID that stays the same
//! across restarts of an agent with the same ID.
//!
//! Go draws the UUIDs with `uuid.NewRandomFromReader` from a `math/rand` generator seeded
//! with `binary.Varint` of the first 8 bytes of SHA-256(agent ID). Reproducing those strings
//! would mean re-implementing Go's lagged-Fibonacci generator together with its table of
//! 607 precomputed seed values, which cannot be derived in reasonable time and would have
//! to be copied from Go's source. What the master relies on is that each UUID is unique
//! and stable for an agent ID, so here UUID number i is version-4-formatted from
//! SHA-256("det-agent artificial slot" 0x00 agent ID 0x00 i). The strings therefore differ
//! from the Go agent's. Two more differences: Go fails for the 1 in 256 agent IDs whose
//! hash prefix is not a terminated varint ("failed to init random source for artificial
//! slots ids"); and Go also runs the vendor tools' version queries first, which are not
//! run here since artificial slots use none of their answers.

use ring::digest::{digest, SHA256};

use super::device::{Device, DeviceType};

/// The brand of every artificial slot.
pub const BRAND: &str = "Artificial";

/// `count` artificial slots for `agent_id`.
pub(crate) fn devices(agent_id: &str, count: u32) -> Vec<Device> {
    (0..count)
        .map(|i| Device { id: i64::from(i), brand: BRAND.to_owned(), uuid: uuid(agent_id, i), kind: DeviceType::Cpu })
        .collect()
}

/// Slot `index`'s UUID: RFC 4122 version 4 layout over hashed bytes.
fn uuid(agent_id: &str, index: u32) -> String {
    let mut input = b"det-agent artificial slot\0".to_vec();
    input.extend_from_slice(agent_id.as_bytes());
    input.push(0);
    input.extend_from_slice(index.to_string().as_bytes());
    let hash = digest(&SHA256, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = data_encoding::HEXLOWER.encode(&bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_agent_distinct_per_slot_and_version_4() {
        let slots = devices("node-1", 3);
        assert_eq!(slots, devices("node-1", 3));
        assert_eq!(slots.iter().map(|d| d.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(slots.iter().all(|d| d.brand == "Artificial" && d.kind == DeviceType::Cpu));
        let other = devices("node-2", 3);
        for (a, b) in slots.iter().zip(&other) {
            assert_ne!(a.uuid, b.uuid);
        }
        assert_ne!(slots[0].uuid, slots[1].uuid);
        for slot in &slots {
            let u = &slot.uuid;
            assert_eq!(u.len(), 36);
            assert_eq!(u.matches('-').count(), 4);
            assert_eq!(&u[14..15], "4", "{u}");
            assert!("89ab".contains(&u[19..20]), "{u}");
        }
        // Pinned (computed independently with Python's hashlib): a change here changes every
        // artificial agent's slots on the master.
        assert_eq!(slots[0].uuid, "d9cefc0f-dae2-4c1b-bb95-11794b381ca8");
    }
}
