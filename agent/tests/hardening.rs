//! Escape probes: commands run inside a run's container, through the real
//! executor and Docker runtime, showing what the hardening denies them. Each case
//! also checks that no container of the run survives it.
#![allow(clippy::unwrap_used)]

use sealrun_testkit::runtime::{docker_runtime, in_image, job, run};
use sealrun_wire::agent::ResourceLimits;
use sealrun_wire::run::RunStatus;

#[tokio::test]
async fn the_command_has_no_capabilities() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, out) = run(&rt, job(&["grep", "^Cap", "/proc/self/status"])).await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    let stdout = out.stdout();
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            stdout.contains(&format!("{set}:\t0000000000000000")),
            "{set} not empty:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn the_command_cannot_gain_privileges() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (_, out) = run(&rt, job(&["grep", "NoNewPrivs", "/proc/self/status"])).await;
    assert_eq!(out.stdout(), "NoNewPrivs:\t1\n");
}

#[tokio::test]
async fn the_command_does_not_run_as_root() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (_, out) = run(&rt, job(&["id"])).await;
    assert!(
        out.stdout().starts_with("uid=65534 gid=65534"),
        "{}",
        out.stdout()
    );
}

#[tokio::test]
async fn a_target_can_name_another_user() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["id", "-u"]);
    j.assignment.user = Some("1234:1234".into());
    let (_, out) = run(&rt, j).await;
    assert_eq!(out.stdout(), "1234\n");
}

#[tokio::test]
async fn the_root_filesystem_is_read_only() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (finish, out) = run(
        &rt,
        job(&[
            "sh",
            "-c",
            "touch /probe || touch /bin/probe || echo denied",
        ]),
    )
    .await;
    assert_eq!(finish.status, RunStatus::Succeeded);
    assert_eq!(out.stdout(), "denied\n");
    assert!(
        out.stderr().contains("Read-only file system"),
        "{}",
        out.stderr()
    );
}

#[tokio::test]
async fn tmp_is_writable_but_nothing_there_can_be_executed() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let script = "echo scratch > /tmp/f && cat /tmp/f && cp /bin/busybox /tmp/bb && /tmp/bb true; echo rc=$?";
    let (_, out) = run(&rt, job(&["sh", "-c", script])).await;
    assert_eq!(
        out.stdout(),
        "scratch\nrc=126\n",
        "stderr: {}",
        out.stderr()
    );
}

#[tokio::test]
async fn there_is_no_network_interface_but_loopback() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let (_, out) = run(&rt, job(&["cat", "/proc/net/dev"])).await;
    let interfaces: Vec<String> = out
        .stdout()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.contains('|'))
        .collect();
    assert_eq!(interfaces, ["lo"]);
}

#[tokio::test]
async fn no_address_outside_the_container_is_reachable() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // The Docker bridge gateway is the address a container would reach the host by.
    let (_, out) = run(
        &rt,
        job(&["sh", "-c", "echo x | nc -w 2 172.17.0.1 2375; echo rc=$?"]),
    )
    .await;
    assert_eq!(out.stdout(), "rc=1\n");
    assert!(
        out.stderr().contains("Network is unreachable"),
        "{}",
        out.stderr()
    );
}

#[tokio::test]
async fn the_docker_socket_is_not_there() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let probe = "ls /var/run/docker.sock /run/docker.sock 2>/dev/null; grep -c docker.sock /proc/mounts; true";
    let (_, out) = run(&rt, job(&["sh", "-c", probe])).await;
    assert_eq!(
        out.stdout(),
        "0\n",
        "a Docker socket is visible: {}",
        out.stdout()
    );
}

#[tokio::test]
async fn no_host_path_is_mounted() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // Only the overlay root, Docker's pseudo filesystems, its generated
    // /etc/{hosts,hostname,resolv.conf}, our /tmp and the init shim (read-only)
    // may appear.
    let (_, out) = run(&rt, job(&["cat", "/proc/mounts"])).await;
    let mut shim_seen = false;
    for line in out.stdout().lines() {
        let mut fields = line.split_whitespace();
        let (source, point) = (fields.next().unwrap(), fields.next().unwrap());
        if point == "/.sealrun/init" {
            let options = fields.nth(1).unwrap();
            assert!(
                options.split(',').any(|o| o == "ro"),
                "the shim is mounted writable: {line}"
            );
            shim_seen = true;
            continue;
        }
        let expected = point == "/"
            || point == "/tmp"
            || matches!(point, "/etc/hosts" | "/etc/hostname" | "/etc/resolv.conf")
            || ["/proc", "/dev", "/sys"]
                .iter()
                .any(|p| point == *p || point.starts_with(&format!("{p}/")));
        assert!(expected, "unexpected mount {source} on {point}");
    }
    assert!(shim_seen, "the init shim is not mounted:\n{}", out.stdout());
}

#[tokio::test]
async fn the_resource_limits_are_applied_and_swap_is_off() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    // cgroup v1 paths first, v2 as the fallback; prints "quota period mem memsw pids".
    let probe = r#"
        if [ -f /sys/fs/cgroup/cpu.max ]; then
          read q p < /sys/fs/cgroup/cpu.max
          m=$(cat /sys/fs/cgroup/memory.max); s=$(cat /sys/fs/cgroup/memory.swap.max); s=$((m + s))
          echo "$q $p $m $s $(cat /sys/fs/cgroup/pids.max)"
        else
          echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) $(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes) $(cat /sys/fs/cgroup/pids/pids.max)"
        fi"#;
    let mut j = job(&["sh", "-c", probe]);
    j.assignment.limits = ResourceLimits {
        memory_mb: 48,
        millicpus: 500,
        pids: 20,
    };
    let (_, out) = run(&rt, j).await;
    let mib48 = 48 * 1024 * 1024;
    assert_eq!(
        out.stdout(),
        format!("50000 100000 {mib48} {mib48} 20\n"),
        "stderr: {}",
        out.stderr()
    );
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 64 ]; do sleep 1 & i=$((i+1)); done; echo all-started",
    ]);
    j.assignment.limits.pids = 16;
    let (finish, out) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Failed);
    assert!(!out.stdout().contains("all-started"));
    assert!(out.stderr().contains("can't fork"), "{}", out.stderr());
}

#[tokio::test]
async fn memory_beyond_the_limit_is_oom_killed_and_reported() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let mut j = job(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    j.assignment.limits.memory_mb = 16;
    let (finish, _) = run(&rt, j).await;
    assert_eq!(finish.status, RunStatus::Failed);
    assert!(finish.oom_killed);
    assert_eq!(finish.error.as_deref(), Some("OOM killed"));
    assert_eq!(finish.exit_code, Some(137));
}

#[tokio::test]
async fn an_image_entrypoint_does_not_wrap_the_command() {
    let Some(rt) = docker_runtime().await else {
        return;
    };
    let image = "sealrun/busybox-entrypoint:test";
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", image, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let dockerfile = "FROM sealrun/busybox:latest\nENTRYPOINT [\"/bin/echo\", \"wrapped\"]\n";
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
    }
    assert!(
        build.wait().unwrap().success(),
        "could not build {image} locally"
    );
    let mut j = job(&["echo", "direct"]);
    j = in_image(j, image);
    let (_, out) = run(&rt, j).await;
    assert_eq!(out.stdout(), "direct\n");
}
