//! What the shim adds to a run: container start-to-exit of `true` through
//! `docker run`, with and without the shim, in the same process, alternating
//! so that drift in the engine's speed hits every variant alike. Also the
//! bundle codec's cost for a typical run. Prints figures; run with
//! `cargo bench -p sealrun-init --bench startup` (`SEALRUN_BENCH_ROUNDS`
//! changes the number of rounds, default 20).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sealrun_init::{Bundle, CONTAINER_PATH, read_bundle};
use sealrun_testkit::container::{bundle, shim_docker};
use sealrun_testkit::{IMAGE, init_binary};

/// One way of running `true` in a container.
struct Variant {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

impl Variant {
    fn run_once(&self) -> Duration {
        let started = Instant::now();
        let mut child = Command::new("docker")
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        if let Some(stdin) = &self.stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(stdin).unwrap();
        }
        let status = child.wait().unwrap();
        let elapsed = started.elapsed();
        assert!(
            status.success(),
            "{}: docker run failed: {status}",
            self.name
        );
        elapsed
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let Some(_docker) = shim_docker() else { return };
    let rounds: usize = std::env::var("SEALRUN_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(20);
    let secrets: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("SECRET_{i}"), vec![b'x'; 64]))
        .collect();
    let pairs: Vec<(&str, &[u8])> = secrets.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
    let wire = bundle(&pairs);

    let common = ["run", "--rm", "--network", "none"]
        .map(String::from)
        .to_vec();
    let mount = format!("{}:{CONTAINER_PATH}:ro", init_binary().display());
    let variants = [
        Variant {
            name: "docker run --rm IMAGE true (baseline)",
            args: [&common[..], &[IMAGE.into(), "true".into()]].concat(),
            stdin: None,
        },
        Variant {
            name: "docker run -i (stdin attached) IMAGE true",
            args: [&common[..], &["-i".into(), IMAGE.into(), "true".into()]].concat(),
            stdin: Some(Vec::new()),
        },
        Variant {
            name: "docker run -i + shim + 20-secret bundle",
            args: [
                &common[..],
                &[
                    "-i".into(),
                    "--volume".into(),
                    mount,
                    "--entrypoint".into(),
                    CONTAINER_PATH.into(),
                    IMAGE.into(),
                    "--".into(),
                    "true".into(),
                ],
            ]
            .concat(),
            stdin: Some(wire.clone()),
        },
    ];

    // Warm-up: page cache, image layers, the shim binary.
    for variant in &variants {
        variant.run_once();
    }
    let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for offset in 0..variants.len() {
            // Rotate the order each round.
            let index = (round + offset) % variants.len();
            samples[index].push(variants[index].run_once());
        }
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    println!("container start-to-exit of `true`, median of {rounds} rounds:");
    for (variant, median) in variants.iter().zip(&medians) {
        println!(
            "  {:<45} {:>8.1} ms  {:.3}x baseline",
            variant.name,
            median.as_secs_f64() * 1e3,
            median.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    println!(
        "  shim vs attached stdin alone: {:.3}x",
        medians[2].as_secs_f64() / medians[1].as_secs_f64()
    );

    // The codec, for the same 20-secret bundle.
    let iterations = 100_000;
    let started = Instant::now();
    for _ in 0..iterations {
        let mut bundle = Bundle::new();
        for (name, value) in &pairs {
            bundle.push_env(name, value).unwrap();
        }
        std::hint::black_box(bundle.encode());
    }
    let encode = started.elapsed() / iterations;
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(read_bundle(std::hint::black_box(&wire[..])).unwrap());
    }
    let decode = started.elapsed() / iterations;
    println!(
        "bundle of 20 x 64-byte secrets ({} bytes): build+encode {:.2} us, read {:.2} us",
        wire.len(),
        encode.as_secs_f64() * 1e6,
        decode.as_secs_f64() * 1e6
    );
}
