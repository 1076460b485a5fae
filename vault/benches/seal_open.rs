//! Seal and open throughput for a 64-byte and a 64 KiB secret, in operations per
//! second (criterion's `elem/s`), next to a bare `crypto_box` sealed box of the same
//! size measured in the same run: the ratio between the two is what the envelope, the
//! low-order key check, base64 and zeroizing cost.
//!
//! Run with `cargo bench -p sealrun-vault --bench seal_open`.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crypto_box::aead::OsRng;
use sealrun_vault::{TargetKeypair, open, seal};
use std::hint::black_box;
use std::time::Duration;

const SIZES: [(usize, &str); 2] = [(64, "64B"), (64 * 1024, "64KiB")];

fn seal_open(c: &mut Criterion) {
    let keypair = TargetKeypair::generate();
    let public_key = keypair.public_key();
    let bare_secret = crypto_box::SecretKey::generate(&mut OsRng);
    let bare_public = bare_secret.public_key();

    let mut group = c.benchmark_group("seal_open");
    group
        .sample_size(15)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for (size, label) in SIZES {
        let value = vec![0x5au8; size];
        group.bench_with_input(BenchmarkId::new("vault_seal", label), &value, |b, value| {
            b.iter(|| seal(&public_key, "PGPASSWORD", "prod-db", black_box(value)).unwrap())
        });
        let sealed = seal(&public_key, "PGPASSWORD", "prod-db", &value).unwrap();
        group.bench_with_input(
            BenchmarkId::new("vault_open", label),
            &sealed,
            |b, sealed| {
                b.iter(|| open(&keypair, "PGPASSWORD", "prod-db", black_box(sealed)).unwrap())
            },
        );
        group.bench_with_input(
            BenchmarkId::new("bare_crypto_box_seal", label),
            &value,
            |b, value| b.iter(|| bare_public.seal(&mut OsRng, black_box(value)).unwrap()),
        );
        let bare_sealed = bare_public.seal(&mut OsRng, &value).unwrap();
        group.bench_with_input(
            BenchmarkId::new("bare_crypto_box_unseal", label),
            &bare_sealed,
            |b, sealed| b.iter(|| bare_secret.unseal(black_box(sealed)).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
