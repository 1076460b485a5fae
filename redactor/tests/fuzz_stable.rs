//! The fuzz target's logic (`fuzz/fuzz_targets/logic.rs`) on stable Rust: random inputs fed
//! to the same checks as `cargo fuzz run stream` (streamed output equals whole-buffer output;
//! no run of 12 bytes of a secret survives raw, base64, hex, percent or JSON decoding).
//!
//! By default a few hundred inputs, as part of the test suite. For a long run, set
//! `SEALRUN_FUZZ_SECS` (e.g. 600 for ten minutes; `SEALRUN_FUZZ_SEED` to vary the inputs):
//!
//! ```sh
//! SEALRUN_FUZZ_SECS=600 cargo test --release -p sealrun-redactor --test fuzz_stable -- --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

#[path = "../fuzz/fuzz_targets/logic.rs"]
mod logic;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_fuzz_targets_checks_hold_for_random_inputs() {
    let budget = env_u64("SEALRUN_FUZZ_SECS").map(Duration::from_secs);
    let mut x = env_u64("SEALRUN_FUZZ_SEED").unwrap_or(0x5EA1_F022) | 1;
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let done = match budget {
            Some(budget) => started.elapsed() >= budget,
            None => cases >= 300,
        };
        if done {
            break;
        }
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let len = 64 + (next() % 2048) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if std::panic::catch_unwind(|| logic::run(&data)).is_err() {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            panic!("case {cases} failed; its input (hex): {hex}");
        }
        cases += 1;
    }
    eprintln!("fuzz logic: {cases} inputs in {:.1?}", started.elapsed());
}
