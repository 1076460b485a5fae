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

/// Inputs the long runs once failed on, kept as regressions (hex).
const FOUND: &[(&str, &str)] = &[
    (
        "wrapped hex whose last line is followed by `:` and a digit the form has next: the \
         digits are the secret's bytes, not a dump's offset column",
        "f01da229fcd84eda15a170f2adcee3b4a229cafe9ac2b4bd7b0cd4fdd3c1e393b717f1ededc49e1925c115e948ed7754fa92bf7013b240682027e0def58677b75160e558fb22137f42f9e5a4b3626eb824757355ec238d798646cd11931d7c3e47230c72cf983a65e9dda5f72ba2954e622343bd398a52cb69741be0c197660a1f084afe6d644b2adfd4e7ab4fb48b279aa34f64e3cb089ad25af1741a3f311a70a2b6c8cac767d6c929151dc13f3d76447ab7ca3870483ee07eabe968e0ffa7d8458d45da023a4ce49d2cdb71b51dce103d95523864250cb5de5096dc01ac20fc2c606a2240f98afc9b2fe9b5bdf132e9f681e5b66772955486d53b3161601ed65df6dd28e5d2d2b4d2f640870a2a9ad8d48a17a707b7ae378f03e57f1f9f7ca7dbc16c71db63594b42a44c4dddf06086a7aca822a9d50d8ca6714382309852aceb55155cf52edb97ab86fdc90cb79c10393bc01c31dd1e523cf40f369c89cd83b5ab403927e868a2e4c2dee4659278f6799a517bd8f3fff67ce8c30c63ed13902937e3740d7b31de6b4b838eae68736a5fcb0797299067e98a3f30a3bc0656821e1876090cffd7a0c6344749662b99092aa2043516735cf5840c19a956134d54cb26bf52df16bba4f61e18482bdcae5e4131b94f3227e8aba547f876b233c200b971662e9d7274d457635a9595efcde273370ec95f38187170b73141a524333318c9310f28b3d690b1b130e5030f90ebbbc27c210bd2e22800c4552812d2a1f4331591f07b74407866099b1cd24f54739481af1f6729c1aeafa5eb17c89f950670421a0eff82b3eda0861f3684db22cff29577d21b68a40bced9a2c5e2f6cb34c8341d503bfed4846c165d325ba45fafbd3b664b138a0a53a5a408785823c3bb9ef949719665784a9ab0a958ea7a93e43769c3c63f182d087e2cd2e8d312a9c19dae2adab3e29f4711996c3c2bb8de01da4bad33bfa44796c1d31d1668f4ecaa15cfa7701ecd8ff0017b82bf92b9bc392cab61377ecffd4760f8b96511325d0e8cff7097ee4e261571a4ddbc48037afaa08a86c9844eeb345716802570d7eb368aa82b0ae8ef923214d1469587f75dfddce7ded6d88e22f00c6468dc68df311a7448ea81fe5cdf466c4bac6212d6016d0e0db5923c835178d468357443863ee9453782f6580aece1543f6b8bf2178be30fced7e9c884c2bd03a24ff8c29d1ae8cfbc5f3bd2621def2da5b61357efdbb2d4f67ee9990ef7699f9625b2ab69edce330cba3659f37916e60b5168c2550840b80ea9b77e5bf3c099d1bbb01bf7c119fc99b0b990da352664fb9fab27ebdf0ecb24a3a1a414c2784b0ffae82024a8630a1dac00c5214d9a44395d8e124c3023a24a941be95b49f401deb41f0877ce2199d117412fbdab9f38e60ab3455a400e7242ce2a8bdaa958f67ade9bf76ee5c8f83617b6596c7ecc7c87e027d8bc7447df3bed5ebcbb934fdd86ab910de3aa82a0787439e96fb02f5edb635a1b3fb96c5702fdf7f5584cbf33672d148cdb13e90d2e54d5a5b6c352c44f1c6e84ff2fce3e96e8aef8652984d5506bec1db8e9807097bc261eb6bf16e1107fe8286eba4e5be9ffb35348824e90d96c9e5b86395e80e6510b4a37d996bc1476b892780a38056ea17361b0a151049d8bb728fe802173cfbfe05b873ae609646c58148a88ca61facbe8074828c36bc76b211a6de0db405b01251435b8bb3ecddecd0d6008644fedd70b60e3443a673f4367f1a46ade279b8efe43b24c0842874b61dba34570543cd8b86cdd8d80ea06fb4abd174d238b1931532cf78d3c68ef8efc5732c62b5d3cd7a1e5eb9da1ea4c3452d986fb39a93fecfad4572a0f00ab5c6aac4604306a64125bbceb1e385e02c3213800578ff16e3c388a57d52b287ba3baf88e9ef9c20f7b883cd9b123c0ab76c4c8ae558d6aecf18cbccc5809b1ff3300b34498b0d0c1393e9da315ddf1af4a0c6b1832f7273dff1813fa95ffb68652260a94f10eabe6448d04ffe12156c6f0c682038c1ea43591036710878d7bb9c0985a909cc42bebe0f077d6b101f33a62031d73aa916fe47fa979d0e4c6185012eb302d7319438217c6ad2d0c8613a6c4ef270df85cf8c25546f2ac6ae26d5903ab060374b9903e29f63ba318f2d90c0d79baf156fcf75623e17d6a556335d1b7b3be4c50b03b7d536b7adcbf78db335bdc1704100a648b2935aa1cd4c1306e448a0a22505bf4161ad0b8f259b68af8e44acc20d925bf40848ed4f3e333a0651ef248d115c1281ded4085fde9e6037ba0825cda5ec5025dd5559c72d87923e56ee86211475bd8b48ac1b840e26cf2c144651b5f8fe15fc2b7f5106dee9e202dc08d4bf46287e3c543d255e8098f93aa6aa85f2a55e1d75dee6b4d15991c4fdce9f9f67ddc1061e155ad0303b19b8d765fdbee984a786e14c6e8589805ca6dcda61b8875365231afcf50f25ea52b8c87a7641ee0b4af63d95ba2762f6b0a52191fd3aa075b6d",
    ),
    (
        "hex in mixed case (a filler's `E` before lower-case hex): the short grams know every mix",
        "f119f4a31a8c539b8a2afc65b7d76ad9e7f3bd7e2a35328f4601504b521227a65baa8c957b2025d8ca4275e48f505deb465b8dc92aa489bb3109cb07eadc21b094d3aa43343a3c48911bfecb31f5a272163d12ea1c502bb4bff10541452f5ceefe6398b2403521267e409dd3424a224f5469e2b45b2f6847ebcdcd1fc227787d361aa90f64555058ecd95d05efbc0853275179dd4dcf6659451c47aaa03832b5864a751a8dc05b7fe752082f2999f1cc9d2e165a9d3acf9c90e524b226b84bc1b8d247bca0a88cbe0b79ac4317c09fd8bffc2d365907ada784f4f41f742a6d22806969e7b7e31bae7851db926ff03adf96e5168dd348a4d1599b30cda57043dfc172e359435645e6cab0da20ac166633",
    ),
    (
        "base64 in both alphabets at once: holding back must know every mix extension accepts",
        "120619f7a7026b49ed7dcffc3938842ba5c9c502204ac6d3a12809e33ec5d459a2da2a6063571de806b3fd3be9181a73f4b4911bd7b64d0dbe7ab3f770d6db8ea4f51700368897ab1c438770dbfefd00a704ffc81be3a5696b90cf237790462bd7d35c18d756cdd9ff2ad8b441978e5da378cb3d51a8729d9273c8105fb0eccebd1621b725485c0dc0b448d4fde14edadf3128048f00ef7ca542ffe098baa004559838b1aa81c9d4d1490847b1934bb57fe92b6571bc9e12bbbfffc117b8b9bf33240f705dd8350e98da8c8e9e75df17997af13ba723a0eac56c4ea483c58ac7bd6ee72030785dd4529c1304aed3b4e57a9914",
    ),
];

#[test]
fn the_fuzz_targets_checks_hold_for_inputs_found_before() {
    for (what, hex) in FOUND {
        let data: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert!(
            std::panic::catch_unwind(|| logic::run(&data)).is_ok(),
            "{what}"
        );
    }
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
