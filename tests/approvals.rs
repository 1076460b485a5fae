//! Four-eyes approvals end to end, through the real `sealrun` CLI against
//! a real `sealrun server`, with a real `sealrun agent` running commands in
//! Docker: a target requiring two approvals from `dba` runs a command only
//! after two distinct `dba` members approved it (`sealrun run` waits, says
//! so, then streams); the submitter's own approval is refused, also through
//! a second token; a rejected and an expired request never run; an approval
//! of one spec does not approve a changed one; someone outside `dba` is
//! refused; break-glass is for the roles the policy names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{
    Cli, Client, ControlPlane as _, IMAGE, SpawnedWorld, World, code, require_docker, text,
};
use sealrun_wire::admin::{Role, TargetSpec};
use sealrun_wire::run::RunStatus;
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// The people of the world's org, as CLIs: alice and bob (operators in
/// group `dba`), carol (an operator outside it), and the admin.
struct People {
    admin: Cli,
    alice: Cli,
    bob: Cli,
    carol: Cli,
}

/// A spawned world whose target `e2e` declares `rule` as its approval
/// policy, and its people.
async fn world(rule: Value) -> (SpawnedWorld, People) {
    let w = World::spawned().await;
    set_rule(&w, rule).await;
    let cli = |c: &Client| w.server.cli(&c.token);
    let people = People {
        admin: cli(&w.admin),
        alice: cli(&w.admin.token("alice", Role::Operator).await),
        bob: cli(&w.admin.token("bob", Role::Operator).await),
        carol: cli(&w.admin.token("carol", Role::Operator).await),
    };
    people.admin.ok(&[
        "group", "create", "dba", "--member", "alice", "--member", "bob",
    ]);
    (w, people)
}

/// Puts the test target with `rule` as its approval rule; runs submitted
/// afterwards are held by it.
async fn set_rule(w: &SpawnedWorld, rule: Value) {
    let spec: TargetSpec = serde_json::from_value(json!({
        "name": w.target, "image": IMAGE, "private_network": "test", "timeout_secs": 300,
        "policy": {"approval": rule},
    }))
    .unwrap();
    w.admin.put_target(&spec).await;
}

fn two_from_dba() -> Value {
    json!({"require": "ad_hoc", "approvals": 2, "from_groups": ["dba"]})
}

/// `sealrun run` following its run, with its stderr read line by line as
/// it comes.
struct Following {
    child: Child,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Following {
    fn start(cli: &Cli, args: &[&str]) -> Following {
        let mut child = cli.spawn(args);
        let pipe = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Following {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// The first stderr line containing `needle` (waiting up to a minute).
    fn line_with(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no line with {needle:?} in {:?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits for the process to exit (up to a minute); its exit code,
    /// stdout and the rest of its stderr.
    fn finish(mut self) -> (i32, String, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sealrun run did not exit: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = self.child.wait_with_output().unwrap();
        self.seen.extend(self.stderr.try_iter());
        (code(&out), text(&out.stdout), self.seen.join("\n"))
    }
}

/// The run id in `sealrun run`'s "run X is waiting for approval" line.
fn waiting_run(line: &str) -> String {
    line.split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .unwrap()
        .to_owned()
}

/// Whether anything was ever started for run `id`: its start time, and the
/// `run.started` entry an agent's claim writes.
async fn ever_started(w: &SpawnedWorld, id: &str) -> bool {
    let run = w.admin.run(id).await;
    let trail = w.admin.get("/v1/audit?limit=1000").await.ok().json();
    let claimed = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "run.started" && e["subject"] == id);
    run.started_at_ms.is_some() || claimed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_requiring_two_approvals_from_dba_runs_only_after_two_distinct_members_approve() {
    if !require_docker() {
        return;
    }
    let (w, p) = world(two_from_dba()).await;
    let mut run = Following::start(
        &p.carol,
        &[
            "run",
            "--target",
            "e2e",
            "--",
            "sh",
            "-c",
            "echo ran-after-approval",
        ],
    );
    let line = run.line_with("is waiting for approval");
    assert!(
        line.contains("(0 of 2 from group dba)") && line.contains("sealrun approvals show run_"),
        "{line}"
    );
    let id = waiting_run(&line);

    let approved = p
        .alice
        .ok(&["approvals", "approve", &id, "--comment", "checked"]);
    assert_eq!(
        approved.trim(),
        format!("approved run {id} (1 of 2); it waits for 1 more from group dba")
    );
    // One approval is not two: still waiting, never handed to the agent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.admin.run(&id).await.status, RunStatus::PendingApproval);
    assert!(
        !ever_started(&w, &id).await,
        "run {id} started after one approval"
    );
    assert!(w.agent.containers().is_empty());
    // The same person again does not make two.
    let again = p.alice.output(&["approvals", "approve", &id]);
    assert_eq!(code(&again), 1);
    assert!(
        text(&again.stderr).contains("each person counts once"),
        "{}",
        text(&again.stderr)
    );

    p.bob.ok(&["approvals", "approve", &id]);
    let (status, stdout, stderr) = run.finish();
    assert_eq!(
        (status, stdout.as_str()),
        (0, "ran-after-approval\n"),
        "{stderr}"
    );
    let shown = p.carol.json(&["approvals", "show", &id]);
    let approvers: Vec<&str> = shown["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["alice", "bob"]);
    assert_eq!(shown["status"], "succeeded");
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_submitters_own_approval_is_refused_also_through_a_second_token() {
    if !require_docker() {
        return;
    }
    let (w, p) = world(two_from_dba()).await;
    let id = p
        .alice
        .ok(&["run", "--target", "e2e", "--detach", "--", "true"])
        .trim()
        .to_owned();
    let own = p.alice.output(&["approvals", "approve", &id]);
    assert_eq!(code(&own), 1);
    assert!(
        text(&own.stderr).contains(&format!(
            "you submitted run {id}; another person must approve it"
        )),
        "{}",
        text(&own.stderr)
    );
    let second = p.admin.ok(&[
        "token",
        "create",
        "--user",
        "alice",
        "--name",
        "alice-laptop",
    ]);
    let alice_again = p.alice.with_token(second.trim());
    let whoami = alice_again.json(&["whoami"]);
    assert_eq!(whoami["user"], "alice", "{whoami}");
    let own = alice_again.output(&["approvals", "approve", &id]);
    assert_eq!(code(&own), 1);
    assert!(
        text(&own.stderr).contains(&format!(
            "you submitted run {id}; another person must approve it"
        )),
        "{}",
        text(&own.stderr)
    );
    let shown = p.bob.json(&["approvals", "show", &id]);
    assert_eq!(shown["approvals"], json!([]));
    // Positive control: bob's approval counts.
    p.bob.ok(&["approvals", "approve", &id]);
    assert_eq!(
        p.bob.json(&["approvals", "show", &id])["approvals"][0]["user"],
        "bob"
    );
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_and_an_expired_request_never_run() {
    if !require_docker() {
        return;
    }
    let rule = json!({"require": "ad_hoc", "from_groups": ["dba"], "expires_in_secs": 2});
    let (w, p) = world(rule).await;

    let mut rejected = Following::start(
        &p.carol,
        &[
            "run",
            "--target",
            "e2e",
            "--",
            "sh",
            "-c",
            "echo must-not-run",
        ],
    );
    let id = waiting_run(&rejected.line_with("is waiting for approval"));
    let said = p.alice.ok(&[
        "approvals",
        "reject",
        &id,
        "--reason",
        "use the cleanup runbook",
    ]);
    assert_eq!(said.trim(), format!("rejected run {id}: it will not run"));
    let (status, stdout, stderr) = rejected.finish();
    assert_eq!(status, 125, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(&format!(
            "run {id} was rejected by alice: use the cleanup runbook; it never ran"
        )),
        "{stderr}"
    );
    assert!(!ever_started(&w, &id).await);

    let expired = Following::start(
        &p.carol,
        &[
            "run",
            "--target",
            "e2e",
            "--",
            "sh",
            "-c",
            "echo must-not-run",
        ],
    );
    let (status, stdout, stderr) = expired.finish();
    assert_eq!(status, 125, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(
            "expired waiting for approval: it was not approved in time, and it never ran"
        ),
        "{stderr}"
    );
    let expired_id = waiting_run(
        stderr
            .lines()
            .find(|l| l.contains("is waiting for approval"))
            .unwrap(),
    );
    assert_eq!(w.admin.run(&expired_id).await.status, RunStatus::Expired);
    assert!(!ever_started(&w, &expired_id).await);
    assert!(w.agent.containers().is_empty());
    // Positive control: the same command approved in time runs. The
    // request gets a longer expiry first: two CLI processes on a loaded
    // machine may take more than the two seconds the expiry above needs to
    // be short (a CI run saw exactly that), and this half tests the
    // approval, not the clock.
    set_rule(
        &w,
        json!({"require": "ad_hoc", "from_groups": ["dba"], "expires_in_secs": 300}),
    )
    .await;
    let mut approved = Following::start(
        &p.carol,
        &["run", "--target", "e2e", "--", "sh", "-c", "echo ran"],
    );
    let id = waiting_run(&approved.line_with("is waiting for approval"));
    p.bob.ok(&["approvals", "approve", &id]);
    let (status, stdout, _) = approved.finish();
    assert_eq!((status, stdout.as_str()), (0, "ran\n"));
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_of_one_spec_does_not_approve_a_changed_spec() {
    if !require_docker() {
        return;
    }
    let rule = json!({"require": "ad_hoc", "from_groups": ["dba"]});
    let (w, p) = world(rule).await;
    let submit = |env: &str| {
        p.carol
            .ok(&[
                "run",
                "--target",
                "e2e",
                "--detach",
                "--env",
                env,
                "--",
                "sh",
                "-c",
                "echo $MODE",
            ])
            .trim()
            .to_owned()
    };
    let a = submit("MODE=read-only");
    let b = submit("MODE=read-write");
    let (shown_a, shown_b) = (
        p.alice.json(&["approvals", "show", &a]),
        p.alice.json(&["approvals", "show", &b]),
    );
    assert_eq!(shown_a["spec"]["env"]["MODE"], "read-only");
    assert_ne!(shown_a["digest"], shown_b["digest"]);

    // The approver approves what they reviewed: A, by its digest.
    let reviewed_a = shown_a["digest"].as_str().unwrap();
    p.alice
        .ok(&["approvals", "approve", &a, "--digest", reviewed_a]);
    let ran = w.admin.wait_terminal(&a).await;
    assert_eq!(ran.status, RunStatus::Succeeded);
    assert_eq!(w.admin.stdout(&a).await, "read-only\n");
    // B differs in one env value: a request of its own, still unapproved.
    let b_now = p.alice.json(&["approvals", "show", &b]);
    assert_eq!(b_now["status"], "pending_approval");
    assert_eq!(b_now["approvals"], json!([]));
    assert!(!ever_started(&w, &b).await);
    // And A's digest, sent for B, is refused.
    let sent = w
        .admin
        .with_token(&p.alice.token)
        .post(
            &format!("/v1/approvals/{b}/approve"),
            json!({"digest": shown_a["digest"]}),
        )
        .await;
    assert_eq!(sent.status, reqwest::StatusCode::CONFLICT, "{}", sent.text);
    // Through the CLI, A's reviewed digest approves nothing of B: what the
    // control plane hands the approval is not what was reviewed.
    let out = p
        .alice
        .output(&["approvals", "approve", &b, "--digest", reviewed_a]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the one you reviewed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        p.alice.json(&["approvals", "show", &b])["approvals"],
        json!([])
    );
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn someone_outside_dba_is_refused_naming_the_rule() {
    if !require_docker() {
        return;
    }
    let (w, p) = world(two_from_dba()).await;
    let id = p
        .alice
        .ok(&["run", "--target", "e2e", "--detach", "--", "true"])
        .trim()
        .to_owned();
    let refused = p.carol.output(&["approvals", "approve", &id]);
    assert_eq!(code(&refused), 1);
    assert!(
        text(&refused.stderr).contains(&format!(
            "run {id} needs approval from group dba (the approval rule of target e2e); you are not one of them"
        )),
        "{}",
        text(&refused.stderr)
    );
    let listed = p.carol.ok(&["approvals", "list"]);
    assert!(
        listed.contains(&id) && listed.contains("0 of 2"),
        "{listed}"
    );
    let shown = p.carol.ok(&["runs", "show", &id]);
    assert!(
        shown.contains("status:    pending_approval")
            && shown.contains(&format!("approval:  sealrun approvals show {id}")),
        "{shown}"
    );
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn break_glass_runs_at_once_for_a_role_the_policy_names_and_is_listed_for_review() {
    if !require_docker() {
        return;
    }
    let mut rule = two_from_dba();
    rule["break_glass_roles"] = json!(["admin"]);
    let (w, p) = world(rule).await;
    let args = [
        "run",
        "--target",
        "e2e",
        "--break-glass",
        "db down, dba unreachable",
        "--",
        "echo",
        "fixed",
    ];
    let refused = p.carol.output(&args);
    assert_eq!(code(&refused), 125);
    assert!(
        text(&refused.stderr).contains(
            "role operator may not skip approval on target e2e (approval.break_glass_roles: only admin may)"
        ),
        "{}",
        text(&refused.stderr)
    );
    let out = p.admin.output(&args);
    assert_eq!(
        (code(&out), text(&out.stdout).as_str()),
        (0, "fixed\n"),
        "{}",
        text(&out.stderr)
    );
    let review = p.carol.ok(&["approvals", "list", "--break-glass"]);
    assert!(review.contains("db down, dba unreachable"), "{review}");
    let trail = p.admin.json(&["audit", "list", "--limit", "1000"]);
    let entry = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "run.break_glass")
        .cloned()
        .expect("a run.break_glass entry");
    assert_eq!(entry["detail"]["review_required"], true, "{entry}");
    assert_eq!(entry["detail"]["reason"], "db down, dba unreachable");
    w.assert_no_containers();
}
