//! Which control planes the `sealrun` CLI trusts (`sealrun_agent::https`,
//! the one rule the agent shares): without `--ca-cert`, the system's CA
//! store (`SSL_CERT_FILE` here, as an operator or a distribution sets it);
//! with one, that CA only: the pin replaces the system store rather than
//! adding to it.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{ControlPlane as _, InProcessServer, code, text};
use std::path::Path;
use std::process::Output;

/// `sealrun whoami` against `server` with `SSL_CERT_FILE` set to
/// `system_store` and `--ca-cert` given only if `pinned` is.
fn whoami(server: &InProcessServer, system_store: &Path, pinned: Option<&Path>) -> Output {
    let cli = server.cli(&server.admin_token);
    let mut args = vec!["whoami"];
    let pinned = pinned.map(|p| p.display().to_string());
    if let Some(p) = &pinned {
        args.extend(["--ca-cert", p]);
    }
    cli.command(&args)
        .env_remove("SEALRUN_CA_CERT")
        .env_remove("SSL_CERT_DIR")
        .env("SSL_CERT_FILE", system_store)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_reaches_a_server_whose_ca_is_only_in_the_system_store() {
    let server = InProcessServer::start().await;
    let other = InProcessServer::start().await;
    let out = whoami(&server, &server.ca_cert, None);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("acme"), "{}", text(&out.stdout));
    // Positive control: with another CA as the system store, the same
    // server is refused, so the store is what made it work.
    let refused = whoami(&server, &other.ca_cert, None);
    assert_ne!(code(&refused), 0, "{}", text(&refused.stdout));
    assert!(
        text(&refused.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_ca_replaces_the_system_store_instead_of_adding_to_it() {
    let server = InProcessServer::start().await;
    let other = InProcessServer::start().await;
    // The system store trusts the server, but the pin names another CA.
    let out = whoami(&server, &server.ca_cert, Some(&other.ca_cert));
    assert_ne!(code(&out), 0, "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&out.stderr)
    );
    // Positive control: pinned to the server's own CA, with a system store
    // that does not know it.
    let pinned = whoami(&server, &other.ca_cert, Some(&server.ca_cert));
    assert_eq!(code(&pinned), 0, "{}", text(&pinned.stderr));
}
