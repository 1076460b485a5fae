//! The deployment examples keep the invariants the README states: the k8s
//! agent gets the init shim from its node (the agent refuses to start
//! without it, and Docker resolves a bind source on the node), and the
//! compose agent gets the CA certificate alone, never the server's volume
//! (the CA key, the database, the Slack signing key), and the systemd units
//! set an open-file limit fit for many connections.
//!
//! The files are read line by line rather than with a YAML crate (the
//! maintained ones are not worth a dependency for two files): [`block`]
//! follows block-style keys by indentation, and the list items checked are
//! single lines (flow mappings in the manifest, strings in compose; the
//! compose server's volumes are a one-line flow list). The
//! positive controls below fail if the files stop being shaped that way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn example(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(path),
    )
    .unwrap()
}

/// The lines nested under the block-style keys `keys` (each found below the
/// previous one, deeper indented), comments and blank lines left out.
fn block<'a>(text: &'a str, keys: &[&str]) -> Vec<&'a str> {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    for key in keys {
        let at = lines
            .iter()
            .position(|l| l.trim_start().trim_start_matches("- ") == format!("{key}:"))
            .unwrap_or_else(|| panic!("no `{key}:` in:\n{}", lines.join("\n")));
        let depth = indent(lines[at]);
        lines = lines[at + 1..]
            .iter()
            .take_while(|l| indent(l) > depth)
            .copied()
            .collect();
    }
    lines
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The items of a block list, one line each, without the `- `.
fn items<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .map(str::trim)
        .collect()
}

/// `value` of `key: value` in a one-line flow mapping `{ key: value, ... }`
/// (the value up to the next `,` or `}`).
fn field<'a>(flow: &'a str, key: &str) -> Option<&'a str> {
    let start = flow.find(&format!("{key}: "))? + key.len() + 2;
    let rest = &flow[start..];
    Some(rest[..rest.find([',', '}']).unwrap_or(rest.len())].trim())
}

#[test]
fn the_k8s_agent_mounts_the_init_shim_from_its_node_where_the_agent_looks() {
    let manifest = example("k8s/agent.yaml");
    let container = block(&manifest, &["containers"]).join("\n");
    let mounts = items(&block(&container, &["volumeMounts"]));
    let volumes = items(&block(&manifest, &["volumes"]));
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| field(v, "name") == Some(name))
            .unwrap_or_else(|| panic!("no volume {name} in {volumes:?}"))
    };
    // Positive control: the parse sees the mounts that were always there.
    let docker = mounts
        .iter()
        .find(|m| field(m, "mountPath") == Some("/var/run/docker.sock"))
        .expect("the Docker socket mount");
    assert!(volume(field(docker, "name").unwrap()).contains("hostPath"));

    // The first place the agent looks when no --init-binary is given.
    let shim = Path::new(sealrun_agent::init::SEARCH_PATHS[0]);
    let dir = shim.parent().unwrap().to_str().unwrap();
    let mount = mounts
        .iter()
        .find(|m| field(m, "mountPath") == Some(dir))
        .unwrap_or_else(|| panic!("no mount of {dir} in {mounts:?}"));
    let from = volume(field(mount, "name").unwrap());
    assert!(
        from.contains(&format!("hostPath: {{ path: {dir}")),
        "{dir} must come from the node, at the same path: {from}"
    );
    assert_eq!(field(mount, "readOnly"), Some("true"), "{mount}");
}

#[test]
fn the_compose_agent_gets_the_ca_certificate_but_not_the_servers_volume() {
    let compose = example("compose.yaml");
    // The server's volumes are a one-line flow list: `volumes: ["a:/b", ...]`.
    let server: Vec<&str> = block(&compose, &["services", "server"])
        .iter()
        .find_map(|l| l.trim().strip_prefix("volumes: ["))
        .and_then(|l| l.strip_suffix(']'))
        .expect("the server's volumes")
        .split(',')
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    let agent = items(&block(&compose, &["services", "agent", "volumes"]));
    // Positive control: the server's data volume is found where it is.
    let data = server
        .iter()
        .find_map(|v| v.strip_suffix(":/data"))
        .unwrap_or_else(|| panic!("no /data volume in {server:?}"));
    assert_eq!(data, "sealrun-data");
    assert!(
        agent.iter().any(|v| v.starts_with("sealrun-agent:")),
        "{agent:?}"
    );

    for v in &agent {
        assert!(
            !v.starts_with(&format!("{data}:")),
            "the agent mounts the server's volume: {v}"
        );
    }
    let env = block(&compose, &["services", "agent", "environment"]);
    let ca = env
        .iter()
        .find_map(|l| l.trim().strip_prefix("SEALRUN_CA_CERT: "))
        .expect("the agent's SEALRUN_CA_CERT");
    let ca_mount = agent
        .iter()
        .find(|v| v.split(':').nth(1) == Some(ca))
        .unwrap_or_else(|| panic!("nothing mounted at {ca} in {agent:?}"));
    assert!(
        ca_mount.starts_with("./") && ca_mount.ends_with(":ro"),
        "the CA certificate comes read-only from a file: {ca_mount}"
    );
}

#[test]
fn both_systemd_units_set_an_open_file_limit_far_above_the_default() {
    for unit in ["sealrun-server.service", "sealrun-agent.service"] {
        let text = example(&format!("systemd/{unit}"));
        let limit: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("LimitNOFILE="))
            .unwrap_or_else(|| panic!("{unit} sets no LimitNOFILE="))
            .parse()
            .unwrap_or_else(|e| panic!("{unit}: LimitNOFILE= is not a number: {e}"));
        // Positive control on the parse: the default soft limit is 1024.
        assert!(limit >= 16_384, "{unit}: LimitNOFILE={limit}");
    }
}

#[test]
fn the_replicas_share_the_database_and_certificate_but_each_keeps_its_data_directory() {
    let compose = example("compose-replicas.yaml");
    for replica in ["server-1", "server-2"] {
        assert!(
            compose.contains(&format!("  {replica}:\n    <<: *replica\n")),
            "{replica} is not made from the shared replica block"
        );
    }
    let shared = compose
        .split_once("x-replica: &replica\n")
        .and_then(|(_, rest)| rest.split_once("\nservices:"))
        .map(|(shared, _)| shared)
        .expect("the shared replica block");
    for setting in [
        "SEALRUN_DATABASE_URL",
        "SEALRUN_TLS_CERT",
        "SEALRUN_TLS_KEY",
        "slack.key",
    ] {
        assert!(
            shared.contains(setting),
            "the replicas do not share {setting}"
        );
    }
    assert!(compose.contains("sealrun-data-1:/data") && compose.contains("sealrun-data-2:/data"));
    let haproxy = example("haproxy.cfg");
    assert!(
        haproxy.contains("mode tcp"),
        "the balancer must pass TLS through"
    );
    for replica in ["server-1", "server-2"] {
        assert!(haproxy.contains(&format!("server {replica} {replica}:8443")));
    }
    let k8s = example("k8s/server.yaml");
    assert!(k8s.contains("  replicas: 2\n"));
    assert!(k8s.contains("secretKeyRef: { name: sealrun-db, key: url }"));
    // The database's password is never a flag (visible in `ps`) or a plain value.
    for text in [&compose, &k8s] {
        assert!(!text.contains("--database-url"));
        assert!(!text.contains("postgres://sealrun:change-me"));
    }
}
