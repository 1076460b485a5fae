//! Issue 15 (runbooks and target policy) end to end, through the real
//! `sealrun` CLI, `sealrun dev` (control plane and agent) and real
//! containers: a target's policy refuses ad-hoc commands that use a
//! runbook-only secret, or any ad-hoc command, saying why, while runbooks
//! still run; a runbook's argv is exactly its template with the values, each
//! value one argument that no shell ever sees; a value its rule refuses is
//! refused naming the parameter and the rule.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::{Cli, DevProcess, IMAGE, code, require_docker, text};
use std::path::Path;

/// Declares target `demo` again (as `sealrun dev` does) with `policy` (TOML
/// lines of `[target.policy]`), through `sealrun target apply -f`.
fn demo_with_policy(cli: &Cli, dir: &Path, policy: &str) {
    let file = dir.join("targets.toml");
    std::fs::write(
        &file,
        format!(
            "[[target]]\nname = \"demo\"\nimage = \"{IMAGE}\"\nprivate_network = \"local\"\ntimeout_secs = 600\n[target.policy]\n{policy}\n"
        ),
    )
    .unwrap();
    cli.ok(&["target", "apply", "-f", file.to_str().unwrap()]);
}

/// `sealrun runbook apply -f` of `toml`; what it printed on stderr.
fn apply_runbooks(cli: &Cli, dir: &Path, toml: &str) -> String {
    let file = dir.join("runbooks.toml");
    std::fs::write(&file, toml).unwrap();
    let out = cli.output(&["runbook", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    text(&out.stderr)
}

/// Prints each argument it is given between brackets, one a line: what
/// the command's argv was, exactly.
const ECHO_ARGS: &str = r#"
[[runbook]]
name = "echo-args"
targets = ["demo"]
argv = ["printf", "[%s]\n", "{text}", "--count={count}", "{fast}", "{mode}", "{{literal}}"]
[runbook.params.text]
type = "string"
pattern = "(?s).*"
max_len = 100
[runbook.params.count]
type = "integer"
min = 1
max = 10
default = 3
[runbook.params.fast]
type = "boolean"
default = false
[runbook.params.mode]
type = "enum"
values = ["a", "b"]
default = "a"

[[runbook]]
name = "restart-api"
targets = ["demo"]
argv = ["printf", "restarting deployment/%s\n", "{service}"]
[runbook.params.service]
type = "string"
pattern = "^[a-z][a-z0-9-]{0,30}$"
"#;

/// Reports whether the runbook-only secret reached the command (never its
/// value).
const USES_ADMIN_PASSWORD: &str = r#"
[[runbook]]
name = "check-admin"
targets = ["demo"]
argv = ["sh", "-c", "test \"$DB_ADMIN_PASSWORD\" = s3cret-admin-pw && echo admin password present"]
secrets = ["DB_ADMIN_PASSWORD"]
"#;

#[test]
fn an_ad_hoc_command_naming_a_runbook_only_secret_is_refused_saying_why_and_a_runbook_injects_it() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let dir = tempfile::tempdir().unwrap();
    demo_with_policy(
        &dev.cli,
        dir.path(),
        "runbook_only_secrets = [\"DB_ADMIN_PASSWORD\"]",
    );
    dev.cli
        .set_secret("demo", "DB_ADMIN_PASSWORD", "s3cret-admin-pw");
    dev.cli.set_secret("demo", "PLAIN_PW", "plain-pw");

    let out = dev.cli.output(&[
        "run",
        "--target",
        "demo",
        "--secret",
        "DB_ADMIN_PASSWORD",
        "--",
        "sh",
        "-c",
        "printf %s \"$DB_ADMIN_PASSWORD\" | rev",
    ]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "secret DB_ADMIN_PASSWORD of target demo may only be used by runbooks (policy.runbook_only_secrets)"
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("wp-nimda"), "it never ran");
    // Controls: another secret of the target, ad hoc, runs ...
    let out = dev.cli.output(&[
        "run",
        "--target",
        "demo",
        "--secret",
        "PLAIN_PW",
        "--",
        "sh",
        "-c",
        "test -n \"$PLAIN_PW\" && echo plain present",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "plain present\n");
    // ... and a runbook that lists the runbook-only secret gets it.
    apply_runbooks(&dev.cli, dir.path(), USES_ADMIN_PASSWORD);
    let out = dev.cli.output(&["run", "--runbook", "check-admin"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "admin password present\n");
    // Only one run is recorded with the secret: the runbook's, named so.
    let runs = dev.cli.json(&["runs", "list"]);
    let with_admin: Vec<_> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["secrets"] == serde_json::json!(["DB_ADMIN_PASSWORD"]))
        .collect();
    assert_eq!(with_admin.len(), 1, "{runs}");
    assert_eq!(with_admin[0]["runbook"], "check-admin");
    assert_eq!(with_admin[0]["runbook_version"], 1);
}

#[test]
fn ad_hoc_commands_are_refused_on_a_target_with_ad_hoc_false_and_runbooks_still_run() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let dir = tempfile::tempdir().unwrap();
    demo_with_policy(&dev.cli, dir.path(), "ad_hoc = false");
    let out = dev
        .cli
        .output(&["run", "--target", "demo", "--", "echo", "hi"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "target demo allows only runbooks (policy.ad_hoc = false); `sealrun runbook list` shows them"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        dev.cli.json(&["runs", "list"])["runs"],
        serde_json::json!([])
    );
    // The control: a runbook runs there.
    apply_runbooks(&dev.cli, dir.path(), ECHO_ARGS);
    let out = dev
        .cli
        .output(&["run", "--runbook", "restart-api", "--param", "service=web"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "restarting deployment/web\n");
}

#[test]
fn a_runbooks_argv_is_exactly_its_template_with_the_values_each_one_argument() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let applied = apply_runbooks(&dev.cli, dir.path(), ECHO_ARGS);
    assert!(
        applied.contains("created runbook echo-args (version 1)"),
        "{applied}"
    );
    for (value, expected) in [
        // Shell syntax is text: no shell ever sees it.
        (
            "x; rm -rf /",
            "[x; rm -rf /]\n[--count=7]\n[true]\n[b]\n[{literal}]\n",
        ),
        // A newline stays inside its one argument.
        (
            "two\nlines",
            "[two\nlines]\n[--count=7]\n[true]\n[b]\n[{literal}]\n",
        ),
        (
            "$(id) `id` $HOME 'q' \"d\" {text}",
            "[$(id) `id` $HOME 'q' \"d\" {text}]\n[--count=7]\n[true]\n[b]\n[{literal}]\n",
        ),
    ] {
        let text_param = format!("text={value}");
        let out = dev.cli.output(&[
            "run",
            "--runbook",
            "echo-args",
            "--param",
            &text_param,
            "--param",
            "count=7",
            "--param",
            "fast=true",
            "--param",
            "mode=b",
        ]);
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), expected, "for {value:?}");
    }
    // Defaults fill what the call leaves out.
    let out = dev
        .cli
        .output(&["run", "--runbook", "echo-args", "--param", "text=plain"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[plain]\n[--count=3]\n[false]\n[a]\n[{literal}]\n"
    );
    // The run shows the argv as rendered, and the runbook and version.
    let run = &dev.cli.json(&["runs", "list"])["runs"][0];
    assert_eq!(
        run["argv"],
        serde_json::json!([
            "printf",
            "[%s]\n",
            "plain",
            "--count=3",
            "false",
            "a",
            "{literal}"
        ])
    );
    let id = run["id"].as_str().unwrap();
    let shown = dev.cli.ok(&["runs", "show", id]);
    assert!(
        shown.contains("runbook:   echo-args (version 1)"),
        "{shown}"
    );
}

#[test]
fn a_value_its_rule_refuses_is_refused_naming_the_parameter_and_the_rule() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let dir = tempfile::tempdir().unwrap();
    apply_runbooks(&dev.cli, dir.path(), ECHO_ARGS);
    for (value, shown) in [("web; rm -rf /", "web; rm -rf /"), ("web\nrm", "web\\nrm")] {
        let param = format!("service={value}");
        let out = dev
            .cli
            .output(&["run", "--runbook", "restart-api", "--param", &param]);
        assert_eq!(code(&out), 125, "{}", text(&out.stderr));
        let expected = format!("param service: '{shown}' does not match ^[a-z][a-z0-9-]{{0,30}}$");
        assert!(
            text(&out.stderr).contains(&expected),
            "{expected:?} not in {}",
            text(&out.stderr)
        );
    }
    assert_eq!(
        dev.cli.json(&["runs", "list"])["runs"],
        serde_json::json!([])
    );
    // The control: a value the rule allows runs.
    let out = dev.cli.output(&[
        "run",
        "--runbook",
        "restart-api",
        "--param",
        "service=billing-worker",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "restarting deployment/billing-worker\n");
}

#[test]
fn runbook_list_and_show_tell_versions_apart_and_apply_says_what_changed() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let dir = tempfile::tempdir().unwrap();
    apply_runbooks(&dev.cli, dir.path(), ECHO_ARGS);
    let again = apply_runbooks(&dev.cli, dir.path(), ECHO_ARGS);
    assert!(
        again.contains("unchanged runbook restart-api (version 1)"),
        "{again}"
    );
    let changed = ECHO_ARGS.replace("restarting deployment/%s", "rolling deployment/%s");
    let applied = apply_runbooks(&dev.cli, dir.path(), &changed);
    assert!(
        applied.contains("updated runbook restart-api (version 2)")
            && applied.contains("unchanged runbook echo-args (version 1)"),
        "{applied}"
    );
    let list = dev.cli.ok(&["runbook", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("restart-api") && l.contains(" 2 ")),
        "{list}"
    );
    let latest = dev.cli.ok(&["runbook", "show", "restart-api"]);
    assert!(latest.contains("rolling deployment"), "{latest}");
    let old = dev
        .cli
        .ok(&["runbook", "show", "restart-api", "--version", "1"]);
    assert!(old.contains("restarting deployment"), "{old}");
    assert!(
        old.contains(
            "service: string matching ^[a-z][a-z0-9-]{0,30}$ (at most 256 bytes); required"
        ),
        "{old}"
    );
}

#[test]
fn target_create_declares_a_policy_and_target_show_shows_it() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    let shown = dev.cli.ok(&["target", "show", "demo"]);
    assert!(shown.contains("ad hoc:          allowed"), "{shown}");
    assert!(!shown.contains("runbook-only:"), "{shown}");
    dev.cli.ok(&[
        "target",
        "create",
        "vault-ops",
        "--image",
        IMAGE,
        "--no-ad-hoc",
        "--runbook-only-secret",
        "VAULT_ROOT_TOKEN",
        "--runbook-only-secret",
        "PGPASSWORD",
    ]);
    let shown = dev.cli.ok(&["target", "show", "vault-ops"]);
    assert!(
        shown.contains("ad hoc:          refused: only runbooks run here"),
        "{shown}"
    );
    assert!(
        shown.contains("runbook-only:    VAULT_ROOT_TOKEN, PGPASSWORD"),
        "{shown}"
    );
    let out = dev
        .cli
        .output(&["run", "--target", "vault-ops", "--detach", "--", "true"]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("allows only runbooks"));
}
