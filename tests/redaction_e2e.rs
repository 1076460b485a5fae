//! Issue 14 end to end, through the real binaries (`sealrun dev`: control plane and agent)
//! and a real container: a command prints secrets the ways real commands do (base64 of a
//! token behind a prefix, wrapped at 76 columns; an `xxd` dump; a field extracted from a JSON
//! secret with `sed`, as `jq -r` would print it), and none of it survives in what `sealrun
//! run` prints or the control plane stores; the run records how many masks the redactor
//! wrote, and the `run.finished` audit entry carries them.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{DevProcess, code, require_docker, text};
use std::process::Command;

/// 90 bytes: its base64 behind `user:` wraps (coreutils and busybox wrap at 76).
const TOKEN: &str =
    "tok_3f9Kq7ZpLx2mVb8NcR4wYt6HsJd1GfUe5aQo0iXyEkWlTnB7rM2vC9uPzDg4hS8jF6eA1bK3xO5qI0wLyRt";

/// A service-account-like JSON secret; `private_key_id` is what the command extracts.
const SA_JSON: &str = r#"{"type":"service_account","project_id":"sealrun-demo-1","private_key_id":"4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6","client_email":"ci@sealrun-demo-1.iam.example"}"#;
const KEY_ID: &str = "4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6";

/// What the command runs: the three prints, each followed by a marker line.
const SCRIPT: &str = r#"
printf 'user:%s' "$TOKEN" | base64
echo 'after base64'
printf '%s' "$TOKEN" | xxd
echo 'after xxd'
printf '%s' "$SA_JSON" | sed -n 's/.*"private_key_id":"\([^"]*\)".*/\1/p'
echo 'after the field'
"#;

/// Pieces of what the script prints unmasked that reveal 12 or more bytes of a secret: every
/// line of the base64 but the first (which starts with `user:`), every dump line's hex
/// groups, the extracted field.
fn leaks(printed: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    let mut lines = printed.lines();
    let _ = lines.next();
    for line in lines.by_ref() {
        if line == "after base64" {
            break;
        }
        if line.len() >= 16 {
            leaks.push(line[..16].to_owned());
        }
    }
    for line in lines.by_ref() {
        if line == "after xxd" {
            break;
        }
        // `00000000: 746f 6b5f 3366 ...`: the first four groups are 8 bytes of the token.
        if let Some(hex) = line.get(10..29) {
            leaks.push(hex.to_owned());
        }
    }
    leaks.push(KEY_ID.to_owned());
    leaks
}

#[test]
fn wrapped_base64_an_xxd_dump_and_an_extracted_json_field_are_masked_and_counted() {
    if !require_docker() {
        return;
    }
    // The positive control: the same script run here, unmasked, prints every leak.
    let local = Command::new("/bin/busybox")
        .args(["sh", "-c", SCRIPT])
        .env("TOKEN", TOKEN)
        .env("SA_JSON", SA_JSON)
        .output()
        .unwrap();
    let printed = text(&local.stdout);
    let leaks = leaks(&printed);
    assert!(leaks.len() >= 4, "{printed}");
    for leak in &leaks {
        assert!(printed.contains(leak.as_str()), "{leak:?} not in {printed}");
    }

    let dev = DevProcess::start();
    dev.cli.set_secret("demo", "TOKEN", TOKEN);
    dev.cli.set_secret("demo", "SA_JSON", SA_JSON);
    let out = dev.cli.output(&[
        "run", "--target", "demo", "--secret", "TOKEN", "--secret", "SA_JSON", "--", "sh", "-c",
        SCRIPT,
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for marker in ["after base64", "after xxd", "after the field"] {
        assert!(shown.contains(marker), "{shown}");
    }
    for leak in &leaks {
        assert!(
            !shown.contains(leak.as_str()),
            "{leak:?} survives in {shown}"
        );
    }
    assert!(
        !shown.contains(TOKEN) && !shown.contains("tok_3f9Kq7Zp"),
        "{shown}"
    );

    // What the control plane stored is the same masked output.
    let run = &dev.cli.json(&["runs", "list"])["runs"][0];
    let id = run["id"].as_str().unwrap().to_owned();
    let logs = dev.cli.ok(&["runs", "logs", &id]);
    assert_eq!(logs, shown);

    // The redaction count: every mask the agent wrote, in stdout.
    let masks = shown.matches("***").count() as u64;
    let run = dev.cli.json(&["runs", "show", &id]);
    assert_eq!(run["redactions"]["stdout"], masks, "{run}");
    assert_eq!(run["redactions"]["stderr"], 0, "{run}");
    assert!(masks >= 4, "{shown}");
    let human = dev.cli.ok(&["runs", "show", &id]);
    assert!(
        human.contains(&format!("masked:    {masks} in stdout, 0 in stderr")),
        "{human}"
    );

    // The audit entry of the run's end records them too.
    let trail = dev.cli.json(&["audit", "list"]);
    let finished = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.finished" && e["subject"] == id.as_str())
        .unwrap_or_else(|| panic!("no run.finished entry in {trail}"));
    assert_eq!(
        finished["detail"]["redactions"]["stdout"], masks,
        "{finished}"
    );
}
