//! `sealrun target ...`

use super::seg;
use crate::cli::{ClientArgs, TargetCommand, TargetCreateArgs};
use crate::client::Client;
use crate::output::{self, Table, outln, safe};
use anyhow::{Context as _, Result, anyhow};
use reqwest::Method;
use sealrun_vault::KeyId;
use sealrun_wire::admin::{
    RekeyRequest, Rekeyed, TargetList, TargetPolicy, TargetSpec, TargetSpecs, TargetView,
};
use sealrun_wire::agent::ResourceLimits;
use serde::Deserialize;
use std::path::Path;

/// The shape of `targets.toml`: a list of `[[target]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(default)]
    target: Vec<TargetSpec>,
}

pub async fn run(cmd: TargetCommand) -> Result<()> {
    match cmd {
        TargetCommand::Create(args) => create(args).await,
        TargetCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: TargetList = client.get("/v1/targets").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&["NAME", "POOL", "IMAGE", "NETWORK", "KEY ID", "TIMEOUT"]);
            for v in list.targets {
                t.row(vec![
                    v.spec.name,
                    v.spec.pool,
                    v.spec.image,
                    v.spec.network.unwrap_or_else(|| "none".to_owned()),
                    match (v.public_key, v.awaiting_key_id) {
                        (Some(k), _) => k.key_id.to_string(),
                        (None, Some(k)) => format!("{k} (awaited)"),
                        (None, None) => "(no agent yet)".to_owned(),
                    },
                    format!("{}s", v.spec.timeout_secs),
                ]);
            }
            t.print()
        }
        TargetCommand::Show { name, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let v: TargetView = client.get(&format!("/v1/targets/{}", seg(&name))).await?;
            if json {
                return output::json(&v);
            }
            outln!("name:            {}", safe(&v.spec.name))?;
            outln!("private network: {}", safe(&v.spec.private_network))?;
            outln!("pool:            {}", safe(&v.spec.pool))?;
            outln!("image:           {}", safe(&v.spec.image))?;
            if !v.spec.allowed_images.is_empty() {
                outln!(
                    "allowed images:  {}",
                    safe(&v.spec.allowed_images.join(", "))
                )?;
            }
            outln!(
                "network:         {}",
                safe(v.spec.network.as_deref().unwrap_or("none"))
            )?;
            outln!(
                "limits:          {} MiB, {} millicpus, {} pids",
                v.spec.limits.memory_mb,
                v.spec.limits.millicpus,
                v.spec.limits.pids
            )?;
            outln!("timeout:         {}s", v.spec.timeout_secs)?;
            let policy = &v.spec.policy;
            outln!(
                "ad hoc:          {}",
                if policy.ad_hoc {
                    "allowed"
                } else {
                    "refused: only runbooks run here"
                }
            )?;
            if !policy.runbook_only_secrets.is_empty() {
                outln!(
                    "runbook-only:    {}",
                    safe(&policy.runbook_only_secrets.join(", "))
                )?;
            }
            if let Some(rule) = &policy.approval {
                let mut which = rule.require.as_str().to_owned();
                if !rule.runbooks.is_empty() {
                    which.push_str(&format!(" + runbooks {}", rule.runbooks.join(", ")));
                }
                let glass = if rule.break_glass_roles.is_empty() {
                    "none".to_owned()
                } else {
                    let roles: Vec<&str> =
                        rule.break_glass_roles.iter().map(|r| r.as_str()).collect();
                    roles.join(", ")
                };
                outln!(
                    "approval:        {} from {} for {} runs, within {}s; break-glass: {}",
                    rule.approvals,
                    safe(&rule.approvers()),
                    safe(&which),
                    rule.expires_in_secs,
                    glass
                )?;
            }
            outln!(
                "user:            {}",
                safe(v.spec.user.as_deref().unwrap_or("65534:65534"))
            )?;
            match (v.public_key, v.awaiting_key_id) {
                (Some(k), _) => outln!("key id:          {}", k.key_id)?,
                (None, Some(k)) => {
                    outln!("key id:          {k} (re-keyed; no agent with this key yet)")?
                }
                (None, None) => outln!("key id:          (no agent has served it yet)")?,
            }
            Ok(())
        }
        TargetCommand::Apply { file, client } => {
            let client = Client::from_args(&client)?;
            let targets = read_targets_file(&file)?;
            // One request, one transaction: every target or none.
            let applied: TargetList = client
                .put(
                    "/v1/targets",
                    &TargetSpecs {
                        targets: targets.clone(),
                    },
                )
                .await
                .map_err(with_pool_hint)
                .with_context(|| format!("nothing in {} was applied", file.display()))?;
            for v in &applied.targets {
                eprintln!("applied target {}", safe(&v.spec.name));
            }
            // Re-certified: the declarations of the file, not the control
            // plane's answer.
            super::trust::recertify_targets(&client, &targets).await
        }
        TargetCommand::Rekey {
            name,
            key_id,
            drop_secrets,
            client,
        } => rekey(&name, key_id, drop_secrets, &client).await,
        TargetCommand::Trust {
            name,
            key_id,
            report_key,
            file,
            days,
            key_file,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let declared = match &file {
                Some(file) => Some(
                    read_targets_file(file)?
                        .into_iter()
                        .find(|s| s.name == name)
                        .ok_or_else(|| {
                            anyhow!("{} declares no target {}", file.display(), safe(&name))
                        })?,
                ),
                None => None,
            };
            let asked = super::trust::TrustTarget {
                name: name.clone(),
                key_id,
                report_key,
                declared,
            };
            let view = super::trust::certify_target(&client, asked, days, key_file).await?;
            if json {
                return output::json(&view);
            }
            if let Some(Ok((c, _))) = view.certificate.as_ref().map(|c| c.open()) {
                eprintln!(
                    "target {} key {} and declaration certified until {}; `sealrun secret set` now seals to it, and agents that trust your key enforce its declaration and policy",
                    safe(&name),
                    safe(&c.key_id),
                    output::time(c.expires_at_ms)
                );
            }
            Ok(())
        }
        TargetCommand::Rm { name, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(Method::DELETE, &format!("/v1/targets/{}", seg(&name)), None)
                .await?;
            eprintln!("deleted target {name}");
            Ok(())
        }
    }
}

async fn rekey(name: &str, key_id: String, drop_secrets: bool, args: &ClientArgs) -> Result<()> {
    let key_id: KeyId = key_id.parse()?;
    let client = Client::from_args(args)?;
    let done: Rekeyed = client
        .post(
            &format!("/v1/targets/{}/rekey", seg(name)),
            &RekeyRequest {
                key_id,
                drop_secrets,
            },
        )
        .await?;
    if args.json {
        return output::json(&done);
    }
    let was = done
        .old_key_id
        .as_ref()
        .map(|k| format!(" (was {k})"))
        .unwrap_or_default();
    eprintln!(
        "target {} now accepts only key {}{was}: start the agent that holds it",
        safe(&done.target),
        done.new_key_id
    );
    if !done.secrets_deleted.is_empty() {
        eprintln!(
            "deleted the secrets sealed to the old key: {}; set each again once the new agent is connected: sealrun secret set --target {} NAME",
            safe(&done.secrets_deleted.join(", ")),
            safe(&done.target)
        );
    }
    for a in &done.agents_stopped {
        eprintln!(
            "agent {} ({}) gets no more runs of {}; once it is retired: sealrun agents revoke {}",
            safe(&a.name),
            safe(&a.id),
            safe(&done.target),
            safe(&a.id)
        );
    }
    Ok(())
}

// `..TargetPolicy::default()` keeps fields `create` has no flag for (the
// approval rule) at their defaults, whichever fields the policy has.
#[allow(clippy::needless_update)]
async fn create(a: TargetCreateArgs) -> Result<()> {
    let client = Client::from_args(&a.client)?;
    let spec = TargetSpec {
        name: a.name.clone(),
        private_network: a.private_network,
        pool: a.pool,
        image: a.image,
        allowed_images: a.allowed_images,
        network: a.network,
        limits: ResourceLimits {
            memory_mb: a.memory_mb,
            millicpus: a.millicpus,
            pids: a.pids,
        },
        timeout_secs: a.timeout,
        // `create` replaces the whole spec: a policy it does not give is
        // the default one (ad hoc allowed, no runbook-only secret).
        policy: TargetPolicy {
            ad_hoc: !a.no_ad_hoc,
            runbook_only_secrets: a.runbook_only_secrets,
            ..TargetPolicy::default()
        },
        user: a.user,
    };
    let v: TargetView = client
        .put(&format!("/v1/targets/{}", seg(&a.name)), &spec)
        .await
        .map_err(with_pool_hint)?;
    super::trust::recertify_targets(&client, std::slice::from_ref(&spec)).await?;
    if a.client.json {
        return output::json(&v);
    }
    eprintln!("target {} saved", safe(&v.spec.name));
    Ok(())
}

/// The control plane refuses a target whose pool does not exist with
/// `no pool named "NAME": create the pool first` (neutral: each adapter says
/// how): says it with the CLI command that creates it, once.
fn with_pool_hint(err: anyhow::Error) -> anyhow::Error {
    const NEUTRAL: &str = "create the pool first";
    let text = err.to_string();
    let pool = text
        .split_once("no pool named \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(pool, _)| pool.to_owned());
    match pool {
        Some(pool) if text.contains(NEUTRAL) => anyhow!(text.replace(
            NEUTRAL,
            &format!("run `sealrun agent-pool create {pool}` first")
        )),
        _ => err,
    }
}

/// Reads and checks a `targets.toml` before anything is sent.
pub fn read_targets_file(path: &Path) -> Result<Vec<TargetSpec>> {
    check_targets(path, crate::config::load(path)?)
}

/// What the file format cannot say: at least one target, each declared once.
fn check_targets(path: &Path, file: TargetsFile) -> Result<Vec<TargetSpec>> {
    let invalid = |why: String| anyhow!("{} is not a valid targets file: {why}", path.display());
    if file.target.is_empty() {
        return Err(invalid("it declares no [[target]]".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &file.target {
        if !seen.insert(t.name.as_str()) {
            return Err(invalid(format!("target {} is declared twice", t.name)));
        }
    }
    Ok(file.target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` as if read from a `targets.toml`.
    fn parse_targets(path: &Path, text: &str) -> Result<Vec<TargetSpec>> {
        check_targets(path, crate::config::parse(path, text)?)
    }

    #[test]
    fn the_example_targets_file_parses() {
        let text = include_str!("../../examples/targets.toml");
        let targets = parse_targets(Path::new("examples/targets.toml"), text).unwrap();
        assert!(targets.iter().any(|t| t.name == "demo"));
    }

    #[test]
    fn a_misspelled_field_is_refused() {
        let err = parse_targets(
            Path::new("targets.toml"),
            "[[target]]\nname = \"a\"\nimgae = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("imgae"), "{err}");
    }

    #[test]
    fn a_target_declared_twice_is_refused() {
        let t = "[[target]]\nname = \"a\"\nimage = \"x\"\n";
        let err = parse_targets(Path::new("targets.toml"), &format!("{t}{t}")).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}
