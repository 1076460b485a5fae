//! End to end through the real `sealrun server` and `sealrun agent` processes
//! and Docker: an admin links a Slack workspace and an operator with the CLI,
//! a signed `/sealrun run` arrives over HTTPS, the agent runs it with a
//! secret the command prints, and the result reaches a local HTTP server
//! standing in for Slack's `response_url`: exit code 3, the secret masked.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::slack::{
    StandIn, interaction_form, link_workspace, now_secs, sign, slash_command,
};
use sealrun_testkit::{ControlPlane as _, World, require_docker};
use sealrun_wire::run::RunStatus;
use serde_json::Value;
use std::time::Duration;

const TEAM: &str = "T0E2E";
const USER: &str = "U0OPERATOR";
const SIGNING_SECRET: &str = "e2e0signing0secret0123456789abcd";
const SECRET_NAME: &str = "API_TOKEN";
const SECRET_VALUE: &str = "slack-e2e-Secret-Value-77";

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_slash_command_runs_in_docker_and_its_masked_result_is_posted_back() {
    if !require_docker() {
        return;
    }
    let world = World::spawned().await;
    let cli = world.server.cli(&world.server.admin_token);

    link_workspace(&cli, TEAM, SIGNING_SECRET);
    let out = cli.output(&[
        "slack",
        "link-user",
        "--team-id",
        TEAM,
        "--user",
        USER,
        "--name",
        "olivia",
        "--role",
        "operator",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli.output(&["slack", "users", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("olivia"));
    world
        .admin
        .set_secret(&world.target, SECRET_NAME, SECRET_VALUE.as_bytes())
        .await;

    let mut slack = StandIn::start().await;
    let url = slack.url(&format!("/commands/{TEAM}/1/abc"));
    let text = format!(
        "run {} --secret {SECRET_NAME} -- sh -c 'echo ${SECRET_NAME}; exit 3'",
        world.target
    );
    let (status, ack) =
        slash_command(&world.server, SIGNING_SECRET, (TEAM, USER), &text, &url).await;
    assert_eq!(status, 200);
    let ack_text = ack["text"].as_str().unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(ack_text.starts_with("Queued run `run_"), "{ack_text}");
    let run_id = ack_text.split('`').nth(1).unwrap().to_owned();

    let message = slack.next_within(Duration::from_secs(120)).await.body;
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains(&run_id) && text.contains("*failed*") && text.contains("exit code 3"),
        "{text}"
    );
    assert!(text.contains("***"), "the printed secret is masked: {text}");
    assert!(
        !text.contains(SECRET_VALUE),
        "the secret never reaches Slack: {text}"
    );

    let run = world.admin.run(&run_id).await;
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.submitter, format!("slack:{TEAM}/{USER} (olivia)"));
    world.assert_no_containers();
}

/// The buttons of a Slack message.
fn buttons(message: &Value) -> Vec<Value> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_waiting_for_approval_is_approved_by_a_slack_click_and_runs_in_docker() {
    if !require_docker() {
        return;
    }
    const BOT_TOKEN: &str = "xoxb-e2e-0123456789-abcdefghij";
    let mut slack = StandIn::start().await;
    let world = World::spawned_with(sealrun_testkit::WorldOptions {
        server_args: vec!["--slack-api-url".into(), slack.api_url()],
        ..Default::default()
    })
    .await;
    let spec: sealrun_wire::admin::TargetSpec = serde_json::from_value(serde_json::json!({
        "name": world.target, "image": sealrun_testkit::IMAGE, "private_network": "test",
        "timeout_secs": 300,
        "policy": {"approval": {"require": "ad_hoc", "approvals": 1, "from_groups": ["dba"]}},
    }))
    .unwrap();
    world.admin.put_target(&spec).await;
    let admin = world.server.cli(&world.server.admin_token);
    admin.ok(&["user", "create", "alice", "--role", "operator"]);
    admin.ok(&["user", "create", "carol", "--role", "operator"]);
    admin.ok(&["group", "create", "dba", "--member", "alice"]);
    let carol = admin.with_token(admin.ok(&["token", "create", "--user", "carol"]).trim());
    link_workspace(&admin, TEAM, SIGNING_SECRET);
    admin.ok(&[
        "slack",
        "link-user",
        "--team-id",
        TEAM,
        "--user",
        "U0ALICE",
        "--as",
        "alice",
    ]);
    let set = admin.output_with_stdin(
        &[
            "slack",
            "set-approvals",
            "--team-id",
            TEAM,
            "--channel",
            "C0APPROVE",
        ],
        format!("{BOT_TOKEN}\n").as_bytes(),
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let listed = admin.ok(&["slack", "workspaces"]);
    assert!(listed.contains("C0APPROVE"), "{listed}");
    assert!(!listed.contains(BOT_TOKEN), "{listed}");

    // Carol's `sealrun run` waits for approval...
    let run = carol.spawn(&[
        "run",
        "--target",
        &world.target,
        "--",
        "echo",
        "approved-in-slack",
    ]);
    let posted = slack.next_to("chat.postMessage").await;
    assert_eq!(
        posted.authorization.as_deref(),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );
    let value = buttons(&posted.body)[0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let run_id = value.split(' ').next().unwrap().to_owned();
    assert_eq!(
        world.admin.run(&run_id).await.status,
        RunStatus::PendingApproval
    );

    // ...until alice clicks Approve in the channel.
    let payload = serde_json::json!({
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": "U0ALICE"},
        "trigger_id": "1.2.3",
        "response_url": slack.response_url(),
        "actions": [{"type": "button", "action_id": "sealrun_approve", "value": value}],
    });
    let body = interaction_form(&payload);
    let ts = now_secs();
    let clicked = world
        .server
        .http()
        .post(format!(
            "{}/v1/integrations/slack/interactions",
            world.server.url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sign(SIGNING_SECRET, ts, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 200);
    let out = tokio::task::spawn_blocking(move || run.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "approved-in-slack\n");
    let updated = slack.next_to("chat.update").await;
    assert!(buttons(&updated.body).is_empty());
    assert!(
        updated.body["blocks"]
            .to_string()
            .contains("Approved* by alice")
    );
    world.assert_no_containers();
}
