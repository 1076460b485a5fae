//! `sealrun runs ...`

use super::run::{Interrupt, follow, followed_exit_code};
use super::seg;
use super::trust::Report;
use crate::cli::RunsCommand;
use crate::client::Client;
use crate::output::{self, ChunkWriter, Table, outln, safe};
use anyhow::{Result, bail};
use reqwest::Method;
use sealrun_wire::log::{LogPage, RunEnd};
use sealrun_wire::run::{RunList, RunStatus, RunView};
use sealrun_wire::shell;
use std::process::ExitCode;

pub async fn run(cmd: RunsCommand) -> Result<ExitCode> {
    match cmd {
        RunsCommand::List {
            status,
            target,
            limit,
            client,
        } => {
            if let Some(s) = &status {
                if RunStatus::parse(s).is_none() {
                    anyhow::bail!(
                        "unknown status `{s}` (one of: {})",
                        RunStatus::ALL.map(|s| s.as_str()).join(", ")
                    );
                }
            }
            let json = client.json;
            let client = Client::from_args(&client)?;
            let mut path = format!("/v1/runs?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={}", seg(&s)));
            }
            if let Some(t) = target {
                path.push_str(&format!("&target={}", seg(&t)));
            }
            let list: RunList = client.get(&path).await?;
            if json {
                output::json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = Table::new(&[
                "ID",
                "TARGET",
                "STATUS",
                "EXIT",
                "SOURCE",
                "SUBMITTER",
                "CREATED",
                "COMMAND",
            ]);
            for r in list.runs {
                t.row(vec![
                    r.id,
                    r.target,
                    r.status.to_string(),
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    r.source.as_str().to_owned(),
                    r.submitter,
                    output::time(r.created_at_ms),
                    // A runbook run names its runbook before what it rendered.
                    match (&r.runbook, r.runbook_version) {
                        (Some(name), Some(v)) => {
                            format!("[{} v{v}] {}", safe(name), shell::join(&r.argv))
                        }
                        _ => shell::join(&r.argv),
                    },
                ]);
            }
            t.print()?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { id, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let r: RunView = client.get(&format!("/v1/runs/{}", seg(&id))).await?;
            if json {
                output::json(&r)?;
                return Ok(ExitCode::SUCCESS);
            }
            // Everything but the times and numbers comes from the submitter
            // or the agent: printed through `safe` (see `output`).
            outln!("id:        {}", safe(&r.id))?;
            outln!("target:    {}", safe(&r.target))?;
            outln!("image:     {}", safe(&r.image))?;
            outln!("command:   {}", shell::join(&r.argv))?;
            if let (Some(name), Some(v)) = (&r.runbook, r.runbook_version) {
                outln!("runbook:   {} (version {v})", safe(name))?;
            }
            outln!("secrets:   {}", safe(&r.secrets.join(", ")))?;
            outln!("status:    {}", r.status)?;
            if r.status == RunStatus::PendingApproval {
                // Who approved so far and who may still: the request's own view.
                outln!("approval:  sealrun approvals show {}", safe(&r.id))?;
            }
            outln!(
                "exit code: {}",
                r.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into())
            )?;
            if let Some(e) = &r.error {
                outln!("error:     {}", safe(e))?;
            }
            outln!("source:    {} ({})", r.source.as_str(), safe(&r.submitter))?;
            outln!("agent:     {}", safe(r.agent.as_deref().unwrap_or("-")))?;
            outln!("created:   {}", output::time(r.created_at_ms))?;
            outln!("started:   {}", output::opt_time(r.started_at_ms))?;
            outln!("finished:  {}", output::opt_time(r.finished_at_ms))?;
            outln!(
                "log:       {} bytes{}",
                r.log_bytes,
                if r.log_truncated { " (truncated)" } else { "" }
            )?;
            let input = match (r.stdin, r.stdin_bytes) {
                (false, _) => "none".to_owned(),
                (true, Some(n)) => format!("{n} bytes relayed (never stored)"),
                (true, None) => "piped in (size not recorded yet)".to_owned(),
            };
            outln!("input:     {input}")?;
            // Each mask is a run of output that held a secret (or an
            // encoding of one): a command that printed a secret shows here.
            let masked = match r.redactions {
                Some(n) => format!("{} in stdout, {} in stderr", n.stdout, n.stderr),
                None => "-".to_owned(),
            };
            outln!("masked:    {masked}")?;
            match super::trust::check_report(&client, &r).await? {
                Report::Verified(by) => outln!("report:    {by}")?,
                Report::Absent(why) | Report::Unchecked(why) => outln!("report:    {why}")?,
                Report::Forged(what) => {
                    outln!("report:    DOES NOT MATCH what the agent signed: {what}")?;
                    bail!(
                        "run {}: the control plane shows another outcome than the one its agent signed ({what}); do not trust this record",
                        safe(&r.id)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Logs {
            id,
            follow: true,
            sanitize,
            client,
        } => {
            let out = ChunkWriter::for_flags(client.json, sanitize);
            let client = Client::from_args(&client)?;
            let followed = follow(&client, &id, Interrupt::Detach, out).await;
            Ok(followed_exit_code(&id, followed))
        }
        RunsCommand::Logs {
            id,
            follow: false,
            sanitize,
            client,
        } => {
            // --json: the format of --follow --json, one LogEvent per line
            // (each chunk, then the run's end if it has ended).
            let mut out = ChunkWriter::for_flags(client.json, sanitize);
            let client = Client::from_args(&client)?;
            let mut after = 0;
            let status = loop {
                let page: LogPage = client
                    .get(&format!("/v1/runs/{}/logs?after={after}", seg(&id)))
                    .await?;
                let done = page.chunks.is_empty() || page.next_seq <= after;
                after = page.next_seq;
                for c in &page.chunks {
                    out.write(c)?;
                }
                if done {
                    break page.status;
                }
            };
            out.finish()?;
            if status.is_terminal() {
                // The page says how far the run got; the end line needs its
                // exit code and error too.
                let run: RunView = client.get(&format!("/v1/runs/{}", seg(&id))).await?;
                out.end(&RunEnd {
                    status: run.status,
                    exit_code: run.exit_code,
                    error: run.error,
                })?;
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Cancel { id, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(Method::POST, &format!("/v1/runs/{}/cancel", seg(&id)), None)
                .await?;
            eprintln!("cancel requested for run {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
