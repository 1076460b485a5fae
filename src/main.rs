//! `sealrun`: the command-line interface (work in progress: see issue 6).

fn main() {
    println!("sealrun {}", env!("CARGO_PKG_VERSION"));
}
