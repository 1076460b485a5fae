//! `sealrun login`, `logout` and named profiles (issue 12), end to end through
//! the real binary against an in-process control plane (no Docker). Every
//! command runs with `SEALRUN_URL`, `SEALRUN_TOKEN` and `SEALRUN_CA_CERT`
//! removed unless a test sets them, so the saved profile is what it uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::pty::{OnTerminal, Streams};
use sealrun_testkit::{Cli, ControlPlane as _, World, text};
use sealrun_wire::admin::Role;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `sealrun ARGS` of `cli` with no connection settings in the environment.
fn bare(cli: &Cli, args: &[&str]) -> Command {
    let mut c = cli.command(args);
    c.env_remove("SEALRUN_URL")
        .env_remove("SEALRUN_TOKEN")
        .env_remove("SEALRUN_CA_CERT");
    c
}

fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(command: Command, stdin: &[u8]) -> Output {
    let what = format!("{command:?}");
    let out = run(command, stdin);
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `sealrun login [--profile NAME]` with `token` on stdin.
fn login(cli: &Cli, profile: Option<&str>, token: &str) -> Output {
    let ca = cli.ca_cert.to_str().unwrap();
    let mut args = vec!["login", "--url", &cli.url, "--ca-cert", ca];
    if let Some(name) = profile {
        args.extend(["--profile", name]);
    }
    ok(bare(cli, &args), format!("{token}\n").as_bytes())
}

/// `sealrun whoami ARGS` with the saved profiles; its stdout.
fn whoami(cli: &Cli, args: &[&str]) -> String {
    let mut all = vec!["whoami"];
    all.extend(args);
    text(&ok(bare(cli, &all), b"").stdout)
}

fn profile_file(cli: &Cli) -> PathBuf {
    cli.home.join(".config/sealrun/profile.toml")
}

fn mode(cli: &Cli) -> u32 {
    std::fs::metadata(profile_file(cli))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn login_reads_the_token_from_stdin_and_whoami_uses_the_saved_profile() {
    let world = World::in_process().await;
    let cli = world.server.cli(world.server.admin_token());
    let out = login(&cli, None, &cli.token);
    assert!(
        text(&out.stderr).contains("saved as profile default"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(mode(&cli), 0o600);
    let me = whoami(&cli, &[]);
    assert!(me.contains("role: admin"), "{me}");
    assert!(me.contains("profile: default"), "{me}");
    // With the environment set, the environment wins and whoami says so.
    let from_env = cli.ok(&["whoami"]);
    assert!(from_env.contains("profile: none"), "{from_env}");
    // A wrong token is checked before anything is saved.
    let ca = cli.ca_cert.to_str().unwrap();
    let args = [
        "login",
        "--url",
        &cli.url,
        "--ca-cert",
        ca,
        "--profile",
        "bad",
    ];
    let wrong = run(bare(&cli, &args), b"not-a-token\n");
    assert!(!wrong.status.success());
    let saved = std::fs::read_to_string(profile_file(&cli)).unwrap();
    assert!(!saved.contains("[profiles.bad]"), "{saved}");
    // Nothing on stdin and no terminal: a clear error, not an empty token.
    let none = run(bare(&cli, &["login", "--url", &cli.url]), b"");
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("no token"),
        "{}",
        text(&none.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_with_the_token_flag_works_but_warns() {
    let world = World::in_process().await;
    let cli = world.server.cli(world.server.admin_token());
    let ca = cli.ca_cert.to_str().unwrap().to_owned();
    let out = ok(
        bare(
            &cli,
            &[
                "login",
                "--url",
                &cli.url,
                "--ca-cert",
                &ca,
                "--token",
                &cli.token,
            ],
        ),
        b"",
    );
    assert!(
        text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(whoami(&cli, &[]).contains("role: admin"));
}

/// Runs `command` as the session leader of a new pseudo-terminal (its
/// controlling terminal, where a password prompt reads), types `typed` once
/// the terminal stops echoing, and returns everything shown on the terminal.
fn login_on_a_terminal(command: Command, typed: &str) -> (bool, String) {
    let mut on = OnTerminal::spawn(command, Streams::All, true);
    on.type_when_echo_is_off(typed);
    let (ok, written) = on.read_to_end();
    (ok, text(&written).replace("\r\n", "\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn login_on_a_terminal_prompts_for_the_token_without_echoing_it_and_saves_it() {
    let world = World::in_process().await;
    let cli = world.server.cli(world.server.admin_token());
    let ca = cli.ca_cert.to_str().unwrap().to_owned();
    let command = bare(&cli, &["login", "--url", &cli.url, "--ca-cert", &ca]);
    let token = cli.token.clone();
    let (success, shown) =
        tokio::task::spawn_blocking(move || login_on_a_terminal(command, &token))
            .await
            .unwrap();
    assert!(success, "login failed:\n{shown}");
    assert!(shown.contains("(hidden)"), "no prompt:\n{shown}");
    assert!(
        !shown.contains(&cli.token),
        "the token was echoed:\n{shown}"
    );
    assert!(shown.contains("saved as profile default"), "{shown}");
    assert_eq!(mode(&cli), 0o600);
    assert!(whoami(&cli, &[]).contains("role: admin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn named_profiles_select_their_own_token_and_logout_removes_only_one() {
    let world = World::in_process().await;
    let cli = world.server.cli(world.server.admin_token());
    let auditor = world.server.admin().token("soc", Role::Auditor).await.token;
    login(&cli, Some("ops"), &cli.token);
    login(&cli, Some("audit"), &auditor);
    assert_eq!(mode(&cli), 0o600);

    let ops = whoami(&cli, &["--profile", "ops"]);
    assert!(
        ops.contains("role: admin") && ops.contains("profile: ops"),
        "{ops}"
    );
    let audit = whoami(&cli, &["--profile", "audit"]);
    assert!(
        audit.contains("role: auditor") && audit.contains("profile: audit"),
        "{audit}"
    );
    // SEALRUN_PROFILE picks one; the flag beats it.
    let mut by_env = bare(&cli, &["whoami"]);
    by_env.env("SEALRUN_PROFILE", "audit");
    assert!(text(&ok(by_env, b"").stdout).contains("role: auditor"));
    let mut both = bare(&cli, &["whoami", "--profile", "ops"]);
    both.env("SEALRUN_PROFILE", "audit");
    assert!(text(&ok(both, b"").stdout).contains("role: admin"));
    // SEALRUN_TOKEN beats the profile's token; the URL and CA still come from it.
    let mut env_token = bare(&cli, &["whoami", "--profile", "audit"]);
    env_token.env("SEALRUN_TOKEN", &cli.token);
    let shown = text(&ok(env_token, b"").stdout);
    assert!(
        shown.contains("role: admin") && shown.contains("profile: audit"),
        "{shown}"
    );
    // No `default` profile: a plain command has nothing to go on.
    let plain = run(bare(&cli, &["whoami"]), b"");
    assert!(!plain.status.success());
    // An unknown name is an error naming the saved ones.
    let unknown = run(bare(&cli, &["whoami", "--profile", "nope"]), b"");
    assert!(!unknown.status.success());
    let err = text(&unknown.stderr);
    assert!(
        err.contains("no profile `nope`") && err.contains("audit, ops"),
        "{err}"
    );

    let out = ok(bare(&cli, &["logout", "--profile", "audit"]), b"");
    let said = text(&out.stderr);
    assert!(said.contains("removed profile audit"), "{said}");
    let gone = run(bare(&cli, &["whoami", "--profile", "audit"]), b"");
    assert!(!gone.status.success());
    assert!(whoami(&cli, &["--profile", "ops"]).contains("role: admin"));
    assert_eq!(mode(&cli), 0o600);
    // Logging out again succeeds and says there was nothing.
    let again = ok(bare(&cli, &["logout", "--profile", "audit"]), b"");
    assert!(
        text(&again.stderr).contains("nothing to remove"),
        "{}",
        text(&again.stderr)
    );
    // The last profile out removes the file.
    ok(bare(&cli, &["logout", "--profile", "ops"]), b"");
    assert!(!profile_file(&cli).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_file_of_the_old_single_profile_format_is_the_default_profile() {
    let world = World::in_process().await;
    let cli = world.server.cli(world.server.admin_token());
    let file = profile_file(&cli);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        format!(
            "url = \"{}\"\ntoken = \"{}\"\nca_cert = \"{}\"\n",
            cli.url,
            cli.token,
            cli.ca_cert.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let me = whoami(&cli, &[]);
    assert!(
        me.contains("role: admin") && me.contains("profile: default"),
        "{me}"
    );

    // Saving another profile keeps the old one as `default`.
    let auditor = world.server.admin().token("soc", Role::Auditor).await.token;
    login(&cli, Some("audit"), &auditor);
    assert!(whoami(&cli, &[]).contains("role: admin"));
    assert!(whoami(&cli, &["--profile", "audit"]).contains("role: auditor"));
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains("[profiles.default]"), "{saved}");

    // A file others may read is refused, not used.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = run(bare(&cli, &["whoami"]), b"");
    assert!(!loose.status.success());
    assert!(
        text(&loose.stderr).contains("chmod 600"),
        "{}",
        text(&loose.stderr)
    );
}
