//! Signed runs, against an adversary who controls the control plane: the
//! real agent, with a trust file naming the admin's key, runs only what a
//! certified user signed, within the target's certified policy, once.
//! Each attack is made as that adversary would make it: requests with an
//! admin token, and SQLite edits of the running server's database. Each
//! refused run ends `error` with the agent's reason, having produced no
//! output and created no container (the agent logs every container it
//! creates), and a signed run through the CLI is the positive control.
//!
//! It drives `target/<profile>/sealrun`: run it with the workspace
//! (`scripts/test.sh`, `cargo nextest run --workspace`) so that binary is
//! current.
#![allow(clippy::unwrap_used)]

use crate::signing;

use rusqlite::params;
use sealrun_testkit::{
    ADMIN_KEY_FILE, Cli, SpawnedWorld, certify_user, require_docker, signing_cli,
};
use sealrun_wire::admin::Role;
use sealrun_wire::authority::{ApprovalStatement, SignedApproval};
use sealrun_wire::run::RunStatus;
use sealrun_wire::trust::{Signed, SigningKey, UserCertificate};
use signing::{approve_unsigned, assert_refused, db, require_one_approval, signed_world};

/// `sealrun run --detach` through `cli`: the run's id.
fn detach(cli: &Cli, target: &str, args: &[&str]) -> String {
    let mut argv = vec!["run", "--detach", "--target", target];
    argv.extend_from_slice(args);
    cli.ok(&argv).trim().to_owned()
}

/// A positive control: a run signed through the CLI goes through.
fn assert_signed_run_works(w: &SpawnedWorld) {
    let out = w
        .signing_cli()
        .ok(&["run", "--target", &w.target, "--", "echo", "signed-ok"]);
    assert!(out.contains("signed-ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_with_a_trust_file_refuses_a_run_nobody_signed() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    assert_signed_run_works(&w);
    // The control plane (here: anyone with an admin token) injects an
    // ad-hoc command.
    let injected = w.submit(&["sh", "-c", "echo injected"]).await;
    assert_refused(&w, &injected, "the run is not signed").await;
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_run_changed_after_signing_or_carrying_a_forged_certificate_is_refused() {
    if !require_docker() {
        return;
    }
    let mut w = signed_world().await;
    let cli = w.signing_cli();
    cli.set_secret(&w.target, "PW", "hunter2-hunter2");
    // Queued while no agent is connected, so the database can be edited
    // before any agent sees them.
    w.agent.kill();
    let run = |args: &[&str]| detach(&cli, "e2e", args);
    let argv = run(&["--", "echo", "original"]);
    let env = run(&["--env", "A=1", "--", "echo", "original"]);
    let image = run(&["--", "echo", "original"]);
    let secrets = run(&["--", "echo", "original"]);
    let forged = run(&["--", "echo", "original"]);
    let control = run(&["--", "echo", "untouched"]);
    let conn = db(&w);
    let set = |column: &str, value: &str, id: &str| {
        let n = conn
            .execute(
                &format!("UPDATE runs SET {column} = ?1 WHERE id = ?2"),
                params![value, id],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    set("argv", r#"["sh","-c","echo pwned"]"#, &argv);
    set("env", r#"{"A":"2"}"#, &env);
    set("image", "sealrun/busybox:evil", &image);
    set("secrets", r#"["PW"]"#, &secrets);
    // Alice's certificate, re-made by a key the agent does not trust, with
    // the admin role.
    let forger = SigningKey::generate();
    let real: String = conn
        .query_row(
            "SELECT submitter_certificate FROM runs WHERE id = ?1",
            [&forged],
            |r| r.get(0),
        )
        .unwrap();
    let real: Signed<UserCertificate> = serde_json::from_str(&real).unwrap();
    let (mut cert, _) = real.open().unwrap();
    cert.role = Role::Admin;
    let mut claimed = forger.sign(&cert);
    set(
        "submitter_certificate",
        &serde_json::to_string(&claimed).unwrap(),
        &forged,
    );
    w.agent.restart();
    assert_refused(&w, &argv, "argv is not what its submitter signed").await;
    assert_refused(&w, &env, "env is not what its submitter signed").await;
    assert_refused(&w, &image, "image is not what").await;
    assert_refused(&w, &secrets, "secrets is not what its submitter signed").await;
    assert_refused(&w, &forged, "not a trusted admin key here").await;
    let ok = w.admin.wait_terminal(&control).await;
    assert_eq!(ok.status, RunStatus::Succeeded, "{ok:?}");
    // The forger naming the trusted admin as its signer fails too.
    let trusted = cli.ok(&[
        "keys",
        "show",
        "--key-file",
        w.server.data_dir.join(ADMIN_KEY_FILE).to_str().unwrap(),
    ]);
    claimed.signer = trusted.trim().to_owned();
    w.agent.kill();
    let named = run(&["--", "echo", "original"]);
    set(
        "submitter_certificate",
        &serde_json::to_string(&claimed).unwrap(),
        &named,
    );
    w.agent.restart();
    assert_refused(&w, &named, "signature does not verify").await;
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_signed_run_is_refused() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    let cli = w.signing_cli();
    let first = detach(&cli, "e2e", &["--", "echo", "once"]);
    let done = w.admin.wait_terminal(&first).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    // The same signed run queued again under a new id.
    let replay = "run_0123456789abcdef";
    db(&w)
        .execute(
            "INSERT INTO runs (id, org_id, target_id, target, argv, env, secrets, image,
                 timeout_secs, source, submitter, status, created_ms, queued_ms, stdin,
                 spec_digest, submitter_user_id, signed_intent, submitter_certificate)
             SELECT ?2, org_id, target_id, target, argv, env, secrets, image,
                 timeout_secs, source, submitter, 'queued', created_ms, queued_ms, stdin,
                 spec_digest, submitter_user_id, signed_intent, submitter_certificate
             FROM runs WHERE id = ?1",
            params![first, replay],
        )
        .unwrap();
    // Another run wakes the agent's poll; it claims both.
    let wake = detach(&cli, "e2e", &["--", "echo", "wake"]);
    assert_refused(&w, replay, "replayed").await;
    let woke = w.admin.wait_terminal(&wake).await;
    assert_eq!(woke.status, RunStatus::Succeeded, "{woke:?}");
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_signed_approvals_by_certified_people_other_than_the_submitter_count() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    // The target now needs one approval for ad-hoc runs; its admin
    // certifies that declaration.
    require_one_approval(&w).await;
    let bob = w.admin.token("bob", Role::Operator).await;
    let bob_key = w.dir.path().join("bob.key");
    certify_user(&w.server, &w.admin, "bob", &bob_key);
    let bob_cli = signing_cli(&w.server, &bob.token, &bob_key);

    // Positive control: bob's signed approval releases the run, and it runs.
    let cli = w.signing_cli();
    let approved = detach(&cli, "e2e", &["--", "echo", "approved-ok"]);
    bob_cli.ok(&["approvals", "approve", &approved]);
    let done = w.admin.wait_terminal(&approved).await;
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");

    // Two runs wait for approval; the control plane releases each with an
    // approval the agent must not count.
    let unsigned = detach(&cli, "e2e", &["--", "echo", "unsigned-approval"]);
    let pending = detach(&cli, "e2e", &["--", "echo", "self-approved"]);

    // The control plane records the submitter's own signed approval and
    // releases the run: the agent does not count it.
    let conn = db(&w);
    let (intent, certificate): (String, String) = conn
        .query_row(
            "SELECT signed_intent, submitter_certificate FROM runs WHERE id = ?1",
            [&pending],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let intent: Signed<sealrun_wire::authority::RunIntent> = serde_json::from_str(&intent).unwrap();
    let (said, _) = intent.open().unwrap();
    let admin_key = std::fs::read_to_string(w.server.data_dir.join(ADMIN_KEY_FILE)).unwrap();
    let submitter_key = SigningKey::from_text(&admin_key).unwrap();
    let own = SignedApproval {
        passkey: None,
        approval: Some(submitter_key.sign(&ApprovalStatement {
            org: said.org.clone(),
            run_digest: intent.digest(),
            approver: said.submitter.clone(),
            at_ms: 0,
        })),
        certificate: serde_json::from_str(&certificate).unwrap(),
    };
    let user_id: i64 = conn
        .query_row(
            "SELECT submitter_user_id FROM runs WHERE id = ?1",
            [&pending],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "INSERT INTO approvals (run_id, user_id, user_name, actor, decision, digest, at_ms, signed)
         VALUES (?1, ?2 + 1000, 'someone-else', 'token:x', 'approved', ?3, 0, ?4)",
        params![
            pending,
            user_id,
            intent.digest(),
            serde_json::to_string(&own).unwrap()
        ],
    )
    .unwrap();
    conn.execute(
        "UPDATE runs SET status = 'queued', queued_ms = created_ms WHERE id = ?1",
        [&pending],
    )
    .unwrap();
    // An approval without a signature (as a Slack click gives), which the
    // control plane records and counts; releasing the run wakes the agent,
    // which claims both.
    approve_unsigned(&bob, &unsigned).await;
    let refused = assert_refused(&w, &pending, "needs 1 approval(s)").await;
    let why = refused.error.unwrap();
    assert!(
        why.contains("the submitter never approves their own run"),
        "{why}"
    );
    let refused = assert_refused(&w, &unsigned, "needs 1 approval(s)").await;
    assert!(refused.error.unwrap().contains("it has 0"));
    w.assert_no_containers();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_outcome_rewritten_in_the_database_is_shown_as_not_what_the_agent_signed() {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    let cli = w.signing_cli();
    let run = detach(&cli, "e2e", &["--", "sh", "-c", "exit 3"]);
    let done = w.admin.wait_terminal(&run).await;
    assert_eq!(done.exit_code, Some(3), "{done:?}");
    // Positive control: the record is what the agent signed.
    let shown = cli.ok(&["runs", "show", &run]);
    assert!(
        shown.contains("report:    verified: signed by target e2e's agent"),
        "{shown}"
    );
    // Whoever edits the database turns the failure into a success.
    let n = db(&w)
        .execute(
            "UPDATE runs SET status = 'succeeded', exit_code = 0 WHERE id = ?1",
            [&run],
        )
        .unwrap();
    assert_eq!(n, 1);
    let out = cli.output(&["runs", "show", &run]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("DOES NOT MATCH what the agent signed")
            && stdout.contains("exit code 3 signed, 0 shown"),
        "{stdout}"
    );
    // Nor can it sign a report of its own: the certificate names the key.
    let forged = SigningKey::generate().sign(&sealrun_wire::report::RunReport {
        target: "e2e".into(),
        run_id: run.clone(),
        status: "succeeded".into(),
        exit_code: Some(0),
        stdout_redactions: 0,
        stderr_redactions: 0,
        log_chunks: 0,
        secrets: vec![],
        nonce: None,
        finished_at_ms: 0,
    });
    db(&w)
        .execute(
            "UPDATE runs SET report = ?1, redacted_stdout = 0, redacted_stderr = 0 WHERE id = ?2",
            params![serde_json::to_string(&forged).unwrap(), run],
        )
        .unwrap();
    let out = cli.output(&["runs", "show", &run]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("not signed with the report key target e2e's certificate names now"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_trail_whose_run_outcome_was_rewritten_with_every_hash_recomputed_fails_verification()
 {
    if !require_docker() {
        return;
    }
    let w = signed_world().await;
    let cli = w.signing_cli();
    let run = detach(&cli, "e2e", &["--", "sh", "-c", "exit 3"]);
    assert_eq!(w.admin.wait_terminal(&run).await.exit_code, Some(3));
    let file = w.dir.path().join("audit.jsonl");
    let path = file.to_str().unwrap();
    cli.ok(&["audit", "export", "-o", path]);
    // Positive control: the outcome is what the agent signed.
    let ok = cli.ok(&["audit", "verify", "--file", path]);
    assert!(
        ok.contains("OK") && ok.contains("1 match their agents' signed reports"),
        "{ok}"
    );
    // The run's failure rewritten as a success, and every later hash
    // recomputed: the chain verifies, the agent's signature does not.
    let mut entries: Vec<sealrun_wire::audit::AuditEntry> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut prev: Option<String> = None;
    for e in &mut entries {
        if e.action == "run.finished" && e.subject == run {
            let mut detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            detail["status"] = "succeeded".into();
            detail["exit_code"] = 0.into();
            e.detail = detail.to_string();
        }
        if let Some(p) = prev {
            e.prev_hash = p;
        }
        e.hash = e.compute_hash();
        prev = Some(e.hash.clone());
    }
    let lines: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = cli.output(&["audit", "verify", "--file", path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("OK")
            && stdout.contains("DO NOT MATCH")
            && stdout.contains("its agent signed failed (exit code 3)"),
        "{stdout}"
    );
}
