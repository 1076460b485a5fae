//! Runbooks and Slack commands, against an adversary who controls the
//! control plane: the real agent, with a trust file naming the admin's
//! key, runs a runbook only exactly as an admin certified its definition
//! (template, parameter rules), and a run no person signed (a Slack
//! command) only of a runbook an admin certified with `allow_slack`.
//! Attacks are made as that adversary would make them: SQLite edits of the
//! running server's database, and requests the control plane accepts.
//! Each refused run ends `error` with the agent's reason, with nothing run
//! and no container created; each test has its positive control.
//!
//! It drives `target/<profile>/sealrun`: run it with the workspace
//! (`scripts/test.sh`) so that binary is current.
#![allow(clippy::unwrap_used)]

use crate::signing;

use sealrun_testkit::slack::{StandIn, link_workspace, slash_command};
use sealrun_testkit::{ADMIN_KEY_FILE, ControlPlane as _, SpawnedWorld, require_docker};
use sealrun_wire::run::RunStatus;
use signing::{approve_unsigned, assert_refused, db, require_one_approval, signed_world};

const TEAM: &str = "T0SIGNED";
const SLACK_USER: &str = "U0OLIVIA";
const SIGNING_SECRET: &str = "signed0runbooks0secret0123456789";

/// Declares runbooks on the world's target (`runbook apply`, by the admin
/// on a machine without their key, so nothing is certified on the way):
/// `greet` (`echo hello {who}`, `who` lower-case letters, allowed from
/// Slack) and `strict` (the same, not allowed from Slack); then certifies
/// those named in `certify` with the admin key (`runbook trust`).
fn declare(w: &SpawnedWorld, certify: &[&str]) {
    let cli = w.server.cli(&w.server.admin_token);
    let file = w.dir.path().join("runbooks.toml");
    let mut text = String::new();
    for (name, slack) in [("greet", true), ("strict", false)] {
        text.push_str(&format!(
            "[[runbook]]\nname = \"{name}\"\ntargets = [\"{}\"]\nargv = [\"echo\", \"hello {{who}}\"]\nallow_slack = {slack}\n\
             [runbook.params.who]\ntype = \"string\"\npattern = \"[a-z]+\"\n\n",
            w.target
        ));
    }
    std::fs::write(&file, text).unwrap();
    cli.ok(&["runbook", "apply", "-f", file.to_str().unwrap()]);
    let key = w.server.data_dir.join(ADMIN_KEY_FILE);
    for name in certify {
        cli.ok(&[
            "runbook",
            "trust",
            name,
            "-f",
            file.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ]);
    }
}

/// Loosens runbook `name`'s rule for `who` in the database, as whoever can
/// edit it would: the control plane then renders and accepts any value.
fn loosen(w: &SpawnedWorld, name: &str) {
    let n = db(w)
        .execute(
            "UPDATE runbooks SET spec = json_set(spec, '$.params.who.pattern', '.*') WHERE name = ?1",
            [name],
        )
        .unwrap();
    assert!(n >= 1);
}

/// Waits for `run` to succeed printing `out`.
async fn assert_ran(w: &SpawnedWorld, run: &str, out: &str) {
    let view = w.admin.wait_terminal(run).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{view:?}");
    let text = w.admin.stdout(run).await;
    assert!(text.contains(out), "{run}: {text}");
}

/// Links a Slack workspace and user `olivia` (operator), and sends
/// `/sealrun <text>` as her: the run id it queued.
struct Slack {
    _stand_in: StandIn,
    response_url: String,
}

impl Slack {
    async fn link(w: &SpawnedWorld) -> Slack {
        let admin = w.server.cli(&w.server.admin_token);
        link_workspace(&admin, TEAM, SIGNING_SECRET);
        admin.ok(&[
            "slack",
            "link-user",
            "--team-id",
            TEAM,
            "--user",
            SLACK_USER,
            "--name",
            "olivia",
            "--role",
            "operator",
        ]);
        let stand_in = StandIn::start().await;
        let response_url = stand_in.url(&format!("/commands/{TEAM}/1/abc"));
        Slack {
            _stand_in: stand_in,
            response_url,
        }
    }

    async fn run(&self, w: &SpawnedWorld, text: &str) -> String {
        let (status, ack) = slash_command(
            &w.server,
            SIGNING_SECRET,
            (TEAM, SLACK_USER),
            text,
            &self.response_url,
        )
        .await;
        assert_eq!(status, 200, "{ack}");
        // "Queued run `run_...`" or "Run `run_...` waits for approval".
        let said = ack["text"].as_str().unwrap();
        let id = said.split('`').nth(1).unwrap_or_default();
        assert!(id.starts_with("run_"), "{text}: {said}");
        id.to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_runbook_run_runs_only_as_an_admin_certified_the_runbook() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    declare(&w, &["greet"]);
    let cli = w.signing_cli();
    // Positive control: signed by its submitter, certified by the admin.
    let out = cli.ok(&["run", "--runbook", "greet", "--param", "who=world"]);
    assert!(out.contains("hello world"), "{out}");
    // A runbook no admin certified.
    let uncertified = cli
        .ok(&["run", "--detach", "--runbook", "strict", "--param", "who=x"])
        .trim()
        .to_owned();
    assert_refused(&w, &uncertified, "runbook strict is not certified").await;
    // The database's copy of the runbook loosened: the control plane
    // renders a value the certified rule refuses, and the CLI signs it.
    loosen(&w, "greet");
    let loosened = cli
        .ok(&[
            "run",
            "--detach",
            "--runbook",
            "greet",
            "--param",
            "who=x; reboot",
        ])
        .trim()
        .to_owned();
    assert_refused(&w, &loosened, "does not match [a-z]+").await;
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_command_runs_only_a_runbook_certified_to_allow_it_within_its_signed_rules() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    declare(&w, &["greet", "strict"]);
    let slack = Slack::link(&w).await;
    // Positive control: no person signs it, and the certified runbook
    // allows that.
    let allowed = slack.run(&w, "run greet who=slack").await;
    assert_ran(&w, &allowed, "hello slack").await;
    // A certified runbook that does not allow Slack.
    let strict = slack.run(&w, "run strict who=slack").await;
    assert_refused(&w, &strict, "no person signed this run").await;
    // An ad-hoc command from Slack.
    let ad_hoc = slack
        .run(&w, &format!("run {} -- echo injected", w.target))
        .await;
    assert_refused(&w, &ad_hoc, "no person signed this run").await;
    // A parameter outside the signed rule, which the control plane's
    // loosened copy accepts.
    loosen(&w, "greet");
    let outside = slack.run(&w, "run greet who=Mallory").await;
    assert_refused(&w, &outside, "does not match [a-z]+").await;
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slack_command_runs_with_the_signed_approval_the_certified_rule_demands() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    require_one_approval(&w).await;
    let slack = Slack::link(&w).await;
    let run = slack
        .run(&w, &format!("run {} -- echo approved-from-slack", w.target))
        .await;
    assert_eq!(w.admin.run(&run).await.status, RunStatus::PendingApproval);
    // The admin reads the intent the control plane states for the command
    // and signs their approval of exactly that.
    let shown = w.signing_cli().ok(&["approvals", "show", &run]);
    assert!(shown.contains("echo approved-from-slack"), "{shown}");
    w.signing_cli().ok(&["approvals", "approve", &run]);
    assert_ran(&w, &run, "approved-from-slack").await;
    // The same command released by an unsigned approval (as a Slack click
    // gives) is refused: the control plane counted it, the agent does not.
    let unsigned = slack
        .run(&w, &format!("run {} -- echo clicked", w.target))
        .await;
    approve_unsigned(&w.admin, &unsigned).await;
    assert_refused(&w, &unsigned, "needs 1 approval(s)").await;
    w.assert_no_containers();
}
