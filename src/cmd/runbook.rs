//! `sealrun runbook ...`: declare (from TOML, as `target apply` does), list,
//! show and certify runbooks. The control plane renders a runbook run; the
//! CLI renders it too, with the same rule (`sealrun_wire::runbook::render`),
//! only to sign exactly what will run.

use super::seg;
use crate::cli::RunbookCommand;
use crate::client::Client;
use crate::output::{self, Table, outln, safe};
use anyhow::{Context as _, Result, anyhow};
use sealrun_wire::runbook::{
    Applied, ParamSpec, ParamType, RunbookList, RunbookSpec, RunbookSpecs, RunbookView,
    RunbooksApplied,
};
use serde::Deserialize;
use std::io::IsTerminal as _;
use std::path::Path;

/// After an apply: certifies each runbook whose latest version is not
/// certified yet, if this person's key is an admin key this machine
/// trusts; else says that agents with a trust file will not run them.
/// The definition of runbook `name` the admin certifies: from their file
/// (`-f`), or the control plane's latest, shown in full and confirmed on a
/// terminal. Never the control plane's unseen.
async fn reviewed(client: &Client, name: &str, file: Option<&Path>) -> Result<RunbookSpec> {
    if let Some(file) = file {
        return read_runbooks_file(file)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow!("{} declares no runbook {}", file.display(), safe(name)));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "pass -f FILE, the runbooks file you reviewed: without a terminal to confirm it on, nothing the control plane shows is certified"
        );
    }
    let view: RunbookView = client.get(&format!("/v1/runbooks/{}", seg(name))).await?;
    show(&view)?;
    eprint!(
        "Certify exactly this definition of runbook {}? [y/N] ",
        safe(name)
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        anyhow::bail!("nothing certified");
    }
    Ok(view.spec)
}

/// What is certified is the definition in the admin's own file, never the
/// one the control plane serves back: a control plane that answers with
/// another definition gets its certificate refused (`409`), not signed.
async fn certify_applied(
    client: &Client,
    applied: &RunbooksApplied,
    declared: &[RunbookSpec],
) -> Result<()> {
    let Some(admin) = super::trust::own_admin_key(client)? else {
        let fresh: Vec<&str> = applied
            .runbooks
            .iter()
            .filter(|r| r.outcome != Applied::Unchanged)
            .map(|r| r.name.as_str())
            .collect();
        if !fresh.is_empty() {
            eprintln!(
                "not certified: {} (agents with a trust file run a runbook only as an admin certified it: `sealrun runbook trust NAME`)",
                safe(&fresh.join(", "))
            );
        }
        return Ok(());
    };
    for r in &applied.runbooks {
        let Some(spec) = declared.iter().find(|s| s.name == r.name) else {
            continue;
        };
        let view: RunbookView = client
            .get(&format!("/v1/runbooks/{}", seg(&r.name)))
            .await?;
        if view.certificate.is_some() && r.outcome == Applied::Unchanged {
            continue;
        }
        let view = super::trust::certify_runbook_with(client, &admin, spec, 365).await?;
        eprintln!(
            "certified runbook {} version {} with your admin key {}",
            safe(&view.spec.name),
            view.version,
            admin.public_key().fingerprint()
        );
    }
    Ok(())
}

/// The shape of `runbooks.toml`: a list of `[[runbook]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunbooksFile {
    #[serde(default)]
    runbook: Vec<RunbookSpec>,
}

pub async fn run(cmd: RunbookCommand) -> Result<()> {
    match cmd {
        RunbookCommand::Apply { file, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let runbooks = read_runbooks_file(&file)?;
            // One request, one transaction: every runbook or none.
            let applied: RunbooksApplied = client
                .put(
                    "/v1/runbooks",
                    &RunbookSpecs {
                        runbooks: runbooks.clone(),
                    },
                )
                .await
                .with_context(|| format!("nothing in {} was applied", file.display()))?;
            if json {
                return output::json(&applied);
            }
            for r in &applied.runbooks {
                eprintln!(
                    "{} runbook {} (version {})",
                    r.outcome.as_str(),
                    safe(&r.name),
                    r.version
                );
            }
            certify_applied(&client, &applied, &runbooks).await
        }
        RunbookCommand::Trust {
            name,
            file,
            days,
            key_file,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let spec = reviewed(&client, &name, file.as_deref()).await?;
            let view = super::trust::certify_runbook(&client, &spec, days, key_file).await?;
            if json {
                return output::json(&view);
            }
            eprintln!(
                "certified runbook {} version {}",
                safe(&view.spec.name),
                view.version
            );
            Ok(())
        }
        RunbookCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: RunbookList = client.get("/v1/runbooks").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&["NAME", "VERSION", "TARGETS", "PARAMS", "DESCRIPTION"]);
            for v in list.runbooks {
                t.row(vec![
                    v.spec.name,
                    v.version.to_string(),
                    v.spec.targets.join(","),
                    v.spec.params.keys().cloned().collect::<Vec<_>>().join(","),
                    v.spec.description.lines().next().unwrap_or("").to_owned(),
                ]);
            }
            t.print()
        }
        RunbookCommand::Show {
            name,
            version,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let path = match version {
                Some(v) => format!("/v1/runbooks/{}?version={v}", seg(&name)),
                None => format!("/v1/runbooks/{}", seg(&name)),
            };
            let v: RunbookView = client.get(&path).await?;
            if json {
                return output::json(&v);
            }
            show(&v)
        }
    }
}

fn show(v: &RunbookView) -> Result<()> {
    let s = &v.spec;
    outln!("name:        {}", safe(&s.name))?;
    outln!(
        "version:     {} (applied {} by {})",
        v.version,
        output::time(v.created_at_ms),
        safe(&v.created_by)
    )?;
    if !s.description.is_empty() {
        outln!("description: {}", safe(&s.description))?;
    }
    outln!("targets:     {}", safe(&s.targets.join(", ")))?;
    // The template as declared: one element per line would hide nothing,
    // but shell quoting reads like the command it becomes.
    outln!("argv:        {}", sealrun_wire::shell::join(&s.argv))?;
    if !s.secrets.is_empty() {
        outln!("secrets:     {}", safe(&s.secrets.join(", ")))?;
    }
    if let Some(image) = &s.image {
        outln!("image:       {}", safe(image))?;
    }
    if let Some(t) = s.timeout_secs {
        outln!("timeout:     {t}s")?;
    }
    if s.allow_slack {
        outln!("slack:       may run from Slack unsigned")?;
    }
    match v.certificate.as_ref().map(|c| c.open()) {
        Some(Ok((c, signer))) => outln!(
            "certified:   by admin key {} until {}",
            signer.fingerprint(),
            output::time(c.expires_at_ms)
        )?,
        Some(Err(e)) => outln!("certified:   no (its certificate does not hold: {e})")?,
        None => outln!(
            "certified:   no (`sealrun runbook trust {}`)",
            safe(&s.name)
        )?,
    }
    if s.params.is_empty() {
        outln!("params:      none")?;
    } else {
        outln!("params:")?;
        for (name, p) in &s.params {
            outln!("  {}: {}", safe(name), safe(&rule(p)))?;
            if !p.description.is_empty() {
                outln!("      {}", safe(&p.description))?;
            }
        }
    }
    Ok(())
}

/// A parameter's type, rule and default in one line.
fn rule(p: &ParamSpec) -> String {
    let mut out = match p.kind {
        ParamType::String => format!(
            "string matching {} (at most {} bytes)",
            p.pattern.as_deref().unwrap_or(""),
            p.max_len.unwrap_or(256)
        ),
        ParamType::Enum => format!("one of {}", p.values.join(", ")),
        ParamType::Integer => match (p.min, p.max) {
            (Some(a), Some(b)) => format!("integer from {a} to {b}"),
            (Some(a), None) => format!("integer, at least {a}"),
            (None, Some(b)) => format!("integer, at most {b}"),
            (None, None) => "integer".to_owned(),
        },
        ParamType::Boolean => "boolean (true or false)".to_owned(),
    };
    match &p.default {
        Some(d) => out.push_str(&format!("; default {d}")),
        None => out.push_str("; required"),
    }
    out
}

/// Reads and checks a `runbooks.toml` before anything is sent (the control
/// plane checks everything else).
pub fn read_runbooks_file(path: &Path) -> Result<Vec<RunbookSpec>> {
    check_runbooks(path, crate::config::load(path)?)
}

/// What the file format cannot say: at least one runbook, each declared once.
fn check_runbooks(path: &Path, file: RunbooksFile) -> Result<Vec<RunbookSpec>> {
    let invalid = |why: String| anyhow!("{} is not a valid runbooks file: {why}", path.display());
    if file.runbook.is_empty() {
        return Err(invalid("it declares no [[runbook]]".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &file.runbook {
        if !seen.insert(r.name.as_str()) {
            return Err(invalid(format!("runbook {} is declared twice", r.name)));
        }
    }
    Ok(file.runbook)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<RunbookSpec>> {
        let path = Path::new("runbooks.toml");
        check_runbooks(path, crate::config::parse(path, text)?)
    }

    #[test]
    fn the_example_runbooks_file_parses() {
        let runbooks = parse(include_str!("../../examples/runbooks.toml")).unwrap();
        assert!(runbooks.iter().any(|r| r.name == "restart-api"));
        let restart = runbooks.iter().find(|r| r.name == "restart-api").unwrap();
        assert_eq!(restart.params["service"].kind, ParamType::String);
    }

    #[test]
    fn a_misspelled_field_is_refused_naming_it() {
        let err =
            parse("[[runbook]]\nname = \"a\"\ntargets = [\"t\"]\nargv = [\"x\"]\nparms = 1\n")
                .unwrap_err();
        assert!(err.to_string().contains("parms"), "{err}");
    }

    #[test]
    fn a_runbook_declared_twice_is_refused() {
        let r = "[[runbook]]\nname = \"a\"\ntargets = [\"t\"]\nargv = [\"x\"]\n";
        let err = parse(&format!("{r}{r}")).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}
