//! `PUT /v1/targets` declares or replaces several targets in one
//! transaction: all of them, or none when any one is refused.
#![allow(clippy::unwrap_used)]

use reqwest::StatusCode;
use sealrun_testkit::{ControlPlane as _, InProcessServer};
use sealrun_wire::admin::{Role, TargetList};
use sealrun_wire::audit::AuditPage;
use serde_json::{Value, json};

fn target(name: &str, pool: &str, image: &str) -> Value {
    json!({"name": name, "pool": pool, "image": image})
}

async fn names(admin: &sealrun_testkit::Client) -> Vec<String> {
    let list: TargetList = admin.get("/v1/targets").await.ok().parse();
    list.targets.into_iter().map(|v| v.spec.name).collect()
}

async fn target_changes(admin: &sealrun_testkit::Client) -> Vec<String> {
    let page: AuditPage = admin.get("/v1/audit?limit=1000").await.ok().parse();
    page.entries
        .into_iter()
        .filter(|e| e.action == "target.changed")
        .map(|e| e.subject)
        .collect()
}

#[tokio::test]
async fn a_valid_list_is_applied_whole_and_each_target_audited() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    admin
        .put("/v1/targets/old", target("old", "default", "x:1"))
        .await
        .ok();

    let list: TargetList = admin
        .put(
            "/v1/targets",
            json!({"targets": [target("old", "default", "x:2"), target("new", "default", "y")]}),
        )
        .await
        .ok()
        .parse();

    let written: Vec<_> = list.targets.iter().map(|v| v.spec.name.as_str()).collect();
    assert_eq!(written, ["old", "new"], "in the order given");
    assert_eq!(names(&admin).await, ["new", "old"]);
    assert_eq!(list.targets[0].spec.image, "x:2", "replaced");
    assert_eq!(target_changes(&admin).await, ["old", "old", "new"]);
}

#[tokio::test]
async fn one_target_in_a_missing_pool_leaves_everything_unchanged() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    admin
        .put("/v1/targets/old", target("old", "default", "x:1"))
        .await
        .ok();
    let audited = target_changes(&admin).await;

    let msg = admin
        .put(
            "/v1/targets",
            json!({"targets": [
                target("old", "default", "x:2"),
                target("new", "default", "y"),
                target("elsewhere", "dc1", "z"),
            ]}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);

    assert!(msg.contains("elsewhere"), "names the target: {msg}");
    assert!(msg.contains("no pool named \"dc1\""), "{msg}");
    assert_eq!(names(&admin).await, ["old"], "nothing declared");
    let old: Value = admin.get("/v1/targets/old").await.ok().json();
    assert_eq!(old["image"], "x:1", "nothing replaced");
    assert_eq!(target_changes(&admin).await, audited, "nothing audited");

    // Positive control: the same list applies once the pool exists.
    admin.post("/v1/pools", json!({"name": "dc1"})).await.ok();
    admin
        .put(
            "/v1/targets",
            json!({"targets": [
                target("old", "default", "x:2"),
                target("new", "default", "y"),
                target("elsewhere", "dc1", "z"),
            ]}),
        )
        .await
        .ok();
    assert_eq!(names(&admin).await, ["elsewhere", "new", "old"]);
}

#[tokio::test]
async fn an_invalid_spec_or_a_duplicate_is_refused_before_anything_is_written() {
    let s = InProcessServer::start().await;
    let admin = s.admin();

    let msg = admin
        .put(
            "/v1/targets",
            json!({"targets": [target("a", "default", "x"), target("b", "default", "has space")]}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("\"b\"") && msg.contains("image"), "{msg}");

    let msg = admin
        .put(
            "/v1/targets",
            json!({"targets": [target("a", "default", "x"), target("a", "default", "y")]}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("twice"), "{msg}");

    let msg = admin
        .put("/v1/targets", json!({"targets": []}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(msg.contains("no target"), "{msg}");
    assert!(names(&admin).await.is_empty());
}

#[tokio::test]
async fn only_admins_may_apply_a_list() {
    let s = InProcessServer::start().await;
    let admin = s.admin();
    let op = admin.token("ops", Role::Operator).await;
    let body = json!({"targets": [target("a", "default", "x")]});
    op.put("/v1/targets", body.clone())
        .await
        .error(StatusCode::FORBIDDEN);
    assert!(names(&admin).await.is_empty());
    admin.put("/v1/targets", body).await.ok();
    assert_eq!(names(&admin).await, ["a"]);
}
