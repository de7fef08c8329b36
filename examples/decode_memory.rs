//! Peak heap while decoding hostile frames from the master, against what parsing the same
//! frame into a `serde_json::Value` costs (how frames were read before `RawJson` and the
//! envelope reader). Each frame is about 16 MiB; the default `max_message_size` allows
//! 128 MiB.
//!
//! `cargo run --release --example decode_memory`
//!
//! Counted by a global allocator that tracks live bytes; the frame's own text is
//! allocated before counting starts, so the figures are what decoding adds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use det_agent::link::FromMaster;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Peak live bytes `f` adds.
fn peak_of<T>(f: impl FnOnce() -> T) -> usize {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    drop(out);
    peak
}

fn repeat(item: &str, size: usize) -> String {
    let mut s = String::with_capacity(size + item.len());
    while s.len() < size {
        s.push_str(item);
        s.push(',');
    }
    s.pop();
    s
}

fn main() {
    const SIZE: usize = 16 << 20;
    let mut keys = String::with_capacity(SIZE + 32);
    let mut i = 0u32;
    while keys.len() < SIZE {
        keys.push_str(&format!("\"k{i}\":0,"));
        i += 1;
    }
    keys.pop();
    let frames = [
        (
            "LoggingOptions: [0,0,…]",
            format!(r#"{{"MasterSetAgentOptions":{{"LoggingOptions":[{}]}}}}"#, repeat("0", SIZE)),
        ),
        (
            "StartContainer Spec: [[],[],…]",
            format!(r#"{{"StartContainer":{{"Container":{{}},"Spec":[{}]}}}}"#, repeat("[]", SIZE)),
        ),
        ("an unknown name: [{},{},…]", format!(r#"{{"FromTheFuture":[{}]}}"#, repeat("{}", SIZE))),
        ("unknown names: {\"k0\":0,…}", format!("{{{keys}}}")),
    ];
    println!("{:<32} {:>10} {:>16} {:>16}", "frame", "size", "decode adds", "a Value adds");
    for (label, frame) in &frames {
        let decode = peak_of(|| FromMaster::decode(frame).map(|m| m.kind()));
        let value = peak_of(|| serde_json::from_str::<serde_json::Value>(frame).map(drop));
        let mib = |n: usize| format!("{:.1} MiB", n as f64 / f64::from(1 << 20));
        println!("{label:<32} {:>10} {:>16} {:>16}", mib(frame.len()), mib(decode), mib(value));
    }
}
