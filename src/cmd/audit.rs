//! `sealrun audit ...`: the trail is hash-chained, so an export can be
//! verified offline by anyone, without trusting the control plane.

use crate::cli::AuditCommand;
use crate::client::Client;
use crate::output::{self, Table, outln};
use crate::profile::Profiles;
use anyhow::{Context as _, Result, bail};
use sealrun_wire::admin::Whoami;
use sealrun_wire::audit::{
    AuditEntry, AuditLink, AuditPage, AuditVerification, ChainVerifier, verify_chain, witness,
};
use serde::Serialize;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

const PAGE: u32 = 1000;

/// `audit list --json`: the page with each entry's `detail` as the JSON value
/// it is, not a string holding JSON. (`audit export` keeps the text as the
/// control plane stored it: the hash chain is computed over it.)
#[derive(Serialize)]
struct ListedPage<'a> {
    entries: Vec<ListedEntry<'a>>,
    next_after: u64,
}

#[derive(Serialize)]
struct ListedEntry<'a> {
    seq: u64,
    at_ms: i64,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    /// The detail object; a detail that is not JSON stays a string.
    detail: serde_json::Value,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> From<&'a AuditPage> for ListedPage<'a> {
    fn from(page: &'a AuditPage) -> ListedPage<'a> {
        let entries = page
            .entries
            .iter()
            .map(|e| ListedEntry {
                seq: e.seq,
                at_ms: e.at_ms,
                actor: &e.actor,
                action: &e.action,
                subject: &e.subject,
                detail: serde_json::from_str(&e.detail)
                    .unwrap_or_else(|_| serde_json::Value::String(e.detail.clone())),
                prev_hash: &e.prev_hash,
                hash: &e.hash,
            })
            .collect();
        ListedPage {
            entries,
            next_after: page.next_after,
        }
    }
}

pub async fn run(cmd: AuditCommand) -> Result<ExitCode> {
    match cmd {
        AuditCommand::List {
            after,
            limit,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let page: AuditPage = client
                .get(&format!("/v1/audit?after={after}&limit={limit}"))
                .await?;
            // A full page may not be the last: say how to get the next one,
            // on stderr so that stdout (a table or JSON) stays as it is.
            let full = page.entries.len() >= limit as usize;
            if json {
                output::json(&ListedPage::from(&page))?;
            } else {
                let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]);
                for e in page.entries {
                    t.row(vec![
                        e.seq.to_string(),
                        output::time(e.at_ms),
                        e.actor,
                        e.action,
                        e.subject,
                        e.detail,
                    ]);
                }
                t.print()?;
            }
            if full {
                eprintln!(
                    "more: sealrun audit list --after {} --limit {limit}",
                    page.next_after
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            file: Some(path),
            client,
            ..
        } => {
            let entries = read_export(&path)?;
            let what = format!("{}", path.display());
            let code = report(&verify_chain(&entries), client.json, &what)?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            let trusted = super::trust::trusted_offline(&client)?;
            let checked = super::trust::check_reports(&entries, &trusted);
            if client.json {
                // The chain's verdict is the JSON on stdout; a forged
                // outcome still fails the command, said on stderr.
                for problem in &checked.forged {
                    eprintln!("sealrun: {problem}");
                }
            } else if checked.verified + checked.unchecked + checked.forged.len() as u64 > 0 {
                outln!("{what}: {}", checked.summary())?;
                for problem in &checked.forged {
                    outln!("  {problem}")?;
                }
            }
            Ok(if checked.forged.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Verify {
            file: None,
            full,
            witness: as_witness,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let path = if full {
                "/v1/audit/verify?full=true"
            } else {
                "/v1/audit/verify"
            };
            let v: AuditVerification = client.get(path).await?;
            let code = report(&v, json, "the live audit trail")?;
            if as_witness && v.ok {
                return witness_check(&client, &v).await;
            }
            Ok(code)
        }
        AuditCommand::Export {
            output: path,
            client,
        } => {
            let client = Client::from_args(&client)?;
            let mut sink: Box<dyn std::io::Write> = match &path {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            // The export is verified as it is written, for the head hash to
            // print: the one to keep elsewhere and compare with what
            // `audit verify --file` says of the file later.
            let mut chain = ChainVerifier::new();
            let mut after = 0;
            loop {
                let page: AuditPage = client
                    .get(&format!("/v1/audit?after={after}&limit={PAGE}"))
                    .await?;
                for e in &page.entries {
                    serde_json::to_writer(&mut sink, e)?;
                    sink.write_all(b"\n")?;
                    chain.push(e);
                }
                if page.entries.is_empty() || page.next_after <= after {
                    break;
                }
                after = page.next_after;
            }
            sink.flush()?;
            drop(sink);
            let v = chain.finish();
            let to = path.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
            if !v.ok {
                bail!(
                    "exported {} audit entries to {to}, but the chain does not verify at entry {}: {}",
                    v.entries,
                    v.first_bad_seq
                        .map_or_else(|| "?".into(), |s| s.to_string()),
                    output::safe(v.problem.as_deref().unwrap_or("?"))
                );
            }
            // On stderr whether or not -o is given: without it, stdout is
            // the export itself.
            eprintln!(
                "exported {} audit entries to {to}, head {}",
                v.entries,
                output::safe(&v.head)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report(v: &AuditVerification, json: bool, what: &str) -> Result<ExitCode> {
    if json {
        output::json(v)?;
    } else if v.ok {
        outln!(
            "{what}: OK, {} entries, head {}{}",
            v.entries,
            output::safe(&v.head),
            rehashed(v)
        )?;
    } else {
        outln!(
            "{what}: TAMPERED at entry {}: {}",
            v.first_bad_seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            output::safe(v.problem.as_deref().unwrap_or("chain does not verify"))
        )?;
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where this CLI remembers the last link it saw of `org`'s trail on the
/// control plane at `url`: `witness/<org>@<host_port>.json` next to the
/// profile file.
fn witness_file(url: &str, org: &str) -> Result<PathBuf> {
    let dir = Profiles::path()
        .and_then(|p| p.parent().map(|d| d.join("witness")))
        .context("cannot tell where to remember the audit trail (no HOME)")?;
    // Readable, and one file per control plane and org: every character
    // but letters, digits, `.` and `-` becomes `_`.
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let host = url.trim_start_matches("https://").trim_end_matches('/');
    Ok(dir.join(format!("{}@{}.json", safe(org), safe(host))))
}

/// `audit verify --witness`, after the control plane's verification `v`
/// passed: the trail must extend the link this CLI remembers (the same
/// check agents make, `sealrun_wire::audit::witness`), each entry shown
/// re-hashed here too; then the newest link is remembered.
async fn witness_check(client: &Client, v: &AuditVerification) -> Result<ExitCode> {
    let me: Whoami = client.get("/v1/whoami").await?;
    let file = witness_file(&client.connection().url, &me.org)?;
    let seen: Option<AuditLink> = match std::fs::read(&file) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a remembered audit link", file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let next = match &seen {
        None => AuditLink {
            seq: v.entries,
            prev_hash: String::new(),
            hash: v.head.clone(),
        },
        Some(seen) => {
            let mut links = Vec::new();
            let mut after = seen.seq.saturating_sub(1);
            loop {
                let page: AuditPage = client
                    .get(&format!("/v1/audit?after={after}&limit={PAGE}"))
                    .await?;
                for e in &page.entries {
                    if e.compute_hash() != e.hash {
                        eprintln!(
                            "witness: entry {} does not match its own hash: the trail was edited",
                            e.seq
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    links.push(AuditLink::from(e));
                }
                if page.entries.is_empty() || page.next_after <= after {
                    break;
                }
                after = page.next_after;
            }
            match witness(Some(seen), &links, v.entries) {
                Ok(next) => next.unwrap_or_else(|| seen.clone()),
                Err(e) => {
                    eprintln!(
                        "witness: {} (this CLI remembers entry {} in {})",
                        output::safe(&e.to_string()),
                        seen.seq,
                        file.display()
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&next)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot write {}", file.display()))?;
    match seen {
        None => eprintln!(
            "witness: remembering entry {} (head {}) of org {}; the next `audit verify --witness` checks that the trail extends it",
            next.seq,
            output::safe(&next.hash),
            output::safe(&me.org)
        ),
        Some(seen) => eprintln!(
            "witness: OK, the trail extends entry {} this CLI saw before; remembering entry {}",
            seen.seq, next.seq
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What an incremental verification re-hashed, when it was not everything.
fn rehashed(v: &AuditVerification) -> String {
    if v.verified_from <= 1 {
        String::new()
    } else if v.verified_from > v.entries {
        " (nothing appended since the last verification; --full re-hashes every entry)".into()
    } else {
        format!(
            " (re-hashed entries {}-{}, the ones before at an earlier verification; --full re-hashes every entry)",
            v.verified_from, v.entries
        )
    }
}

/// Reads a JSONL export, refusing anything that is not one entry per line.
fn read_export(path: &std::path::Path) -> Result<Vec<AuditEntry>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut entries = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditEntry = serde_json::from_str(&line)
            .with_context(|| format!("{} line {} is not an audit entry", path.display(), i + 1))?;
        entries.push(entry);
    }
    if entries.is_empty() {
        bail!("{} holds no audit entries", path.display());
    }
    Ok(entries)
}
