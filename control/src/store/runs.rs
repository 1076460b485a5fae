//! Rows of `runs`: the queue, leases and each run's outcome.
//!
//! Every transition is a conditional `UPDATE ... WHERE status = <expected>`,
//! so two transitions can never both apply (see `crate::queue`).

use super::sql::Arg;
use super::sql::{self, Optional as _, Row};
use super::tx::{Backend, Tx};
use crate::error::Error;
use sealrun_wire::admin::TargetSpec;
use sealrun_wire::run::{Redactions, RunSource, RunStatus, RunView};
use std::collections::HashMap;

/// Columns [`view_from_row`] reads, in order.
const VIEW_COLUMNS: &str = "id, target, argv, secrets, image, status, exit_code, error, \
     source, submitter, agent_name, timeout_secs, created_ms, started_ms, finished_ms, log_bytes, log_truncated, stdin, stdin_bytes, \
     redacted_stdout, redacted_stderr, runbook, runbook_version, report";

fn json_column<T: serde::de::DeserializeOwned>(r: &Row<'_>, i: usize) -> sql::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| sql::SqlError::Conversion(format!("column {i}: {e}")))
}

fn status_column(r: &Row<'_>, i: usize) -> sql::Result<RunStatus> {
    let text: String = r.get(i)?;
    RunStatus::parse(&text).ok_or_else(|| {
        sql::SqlError::Conversion(format!("column {i}: unknown run status {text:?}"))
    })
}

fn source_column(r: &Row<'_>, i: usize) -> sql::Result<RunSource> {
    let text: String = r.get(i)?;
    Ok(match text.as_str() {
        "cli" => RunSource::Cli,
        "slack" => RunSource::Slack,
        _ => RunSource::Api,
    })
}

/// A [`RunView`] from a row selected with [`VIEW_COLUMNS`].
fn view_from_row(r: &Row<'_>) -> sql::Result<RunView> {
    Ok(RunView {
        id: r.get(0)?,
        target: r.get(1)?,
        argv: json_column(r, 2)?,
        secrets: json_column(r, 3)?,
        image: r.get(4)?,
        status: status_column(r, 5)?,
        exit_code: r.get(6)?,
        error: r.get(7)?,
        source: source_column(r, 8)?,
        submitter: r.get(9)?,
        agent: r.get(10)?,
        timeout_secs: r.get(11)?,
        created_at_ms: r.get(12)?,
        started_at_ms: r.get(13)?,
        finished_at_ms: r.get(14)?,
        log_bytes: r.get(15)?,
        log_truncated: r.get(16)?,
        stdin: r.get(17)?,
        stdin_bytes: r.get(18)?,
        redactions: match (r.get(19)?, r.get(20)?) {
            (Some(stdout), Some(stderr)) => Some(Redactions { stdout, stderr }),
            _ => None,
        },
        runbook: r.get(21)?,
        runbook_version: r.get(22)?,
        report: match r.get::<_, Option<String>>(23)? {
            Some(_) => Some(json_column(r, 23)?),
            None => None,
        },
    })
}

/// The org's run `run_id`.
pub(crate) fn view(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<Option<RunView>, Error> {
    Ok(tx
        .prepare_cached(&format!(
            "SELECT {VIEW_COLUMNS} FROM runs WHERE org_id = ?1 AND id = ?2"
        ))?
        .query_row(params![org_id, run_id], view_from_row)
        .optional()?)
}

/// Which runs a listing wants.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub(crate) status: Option<RunStatus>,
    pub(crate) target: Option<String>,
    /// Only runs submitted before this run.
    pub(crate) before: Option<String>,
    pub(crate) submitter: Option<String>,
    pub(crate) source: Option<RunSource>,
    /// Submitted at or after / before these Unix milliseconds.
    pub(crate) since_ms: Option<i64>,
    pub(crate) until_ms: Option<i64>,
    pub(crate) limit: u32,
}

/// The org's runs matching `filter`, newest first.
pub(crate) fn list(tx: &Tx<'_>, org_id: i64, filter: Filter) -> Result<Vec<RunView>, Error> {
    let mut sql = format!("SELECT {VIEW_COLUMNS} FROM runs WHERE org_id = ?");
    let mut args = vec![Arg::Int(org_id)];
    if let Some(s) = filter.status {
        sql.push_str(" AND status = ?");
        args.push(Arg::Text(s.as_str().to_owned()));
    }
    if let Some(t) = filter.target {
        sql.push_str(" AND target = ?");
        args.push(Arg::Text(t));
    }
    if let Some(s) = filter.submitter {
        sql.push_str(" AND submitter = ?");
        args.push(Arg::Text(s));
    }
    if let Some(s) = filter.source {
        sql.push_str(" AND source = ?");
        args.push(Arg::Text(s.as_str().to_owned()));
    }
    if let Some(t) = filter.since_ms {
        sql.push_str(" AND created_ms >= ?");
        args.push(Arg::Int(t));
    }
    if let Some(t) = filter.until_ms {
        sql.push_str(" AND created_ms < ?");
        args.push(Arg::Int(t));
    }
    if let Some(b) = filter.before {
        sql.push_str(" AND n < (SELECT n FROM runs WHERE org_id = ? AND id = ?)");
        args.push(Arg::Int(org_id));
        args.push(Arg::Text(b));
    }
    sql.push_str(" ORDER BY n DESC LIMIT ?");
    args.push(Arg::Int(i64::from(filter.limit)));
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(&sql::args(&args), view_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A run to queue.
#[derive(Debug)]
pub(crate) struct NewRun<'a> {
    pub(crate) id: &'a str,
    pub(crate) org_id: i64,
    pub(crate) target_id: i64,
    pub(crate) target: &'a str,
    pub(crate) argv: &'a [String],
    pub(crate) env: &'a std::collections::BTreeMap<String, String>,
    pub(crate) secrets: &'a [String],
    pub(crate) image: &'a str,
    pub(crate) timeout_secs: u64,
    pub(crate) source: RunSource,
    pub(crate) submitter: &'a str,
    pub(crate) stdin: bool,
    pub(crate) now: i64,
}

/// Queues a run, with the digest its approvals bind and its submitter's
/// user id.
pub(crate) fn insert(
    tx: &Tx<'_>,
    run: &NewRun<'_>,
    spec_digest: &str,
    submitter_user_id: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO runs (id, org_id, target_id, target, argv, env, secrets, image, timeout_secs,
                               source, submitter, status, created_ms, stdin, spec_digest,
                               submitter_user_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', ?12, ?13, ?14, ?15)",
    )?
    .execute_later(params![
        run.id,
        run.org_id,
        run.target_id,
        run.target,
        serde_json::to_string(run.argv)?,
        serde_json::to_string(run.env)?,
        serde_json::to_string(run.secrets)?,
        run.image,
        run.timeout_secs,
        run.source.as_str(),
        run.submitter,
        run.now,
        run.stdin,
        spec_digest,
        submitter_user_id,
    ])?;
    Ok(())
}

/// Records that run `run_id` (just queued) was rendered from version
/// `version` of runbook `name`.
pub(crate) fn set_runbook(
    tx: &Tx<'_>,
    run_id: &str,
    name: &str,
    version: u64,
) -> Result<(), Error> {
    tx.prepare_cached("UPDATE runs SET runbook = ?2, runbook_version = ?3 WHERE id = ?1")?
        .execute_later(params![run_id, name, version])?;
    Ok(())
}

/// Records run `run_id`'s signed intent and its submitter's certificate
/// then (both JSON), just inserted.
pub(crate) fn set_signed(
    tx: &Tx<'_>,
    run_id: &str,
    intent: &str,
    certificate: &str,
) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runs SET signed_intent = ?2, submitter_certificate = ?3 WHERE id = ?1",
    )?
    .execute_later(params![run_id, intent, certificate])?;
    Ok(())
}

/// Records the intent stated for run `run_id`, which no person signed
/// (JSON of a `RunIntent`), just inserted.
pub(crate) fn set_stated(tx: &Tx<'_>, run_id: &str, intent: &str) -> Result<(), Error> {
    tx.prepare_cached("UPDATE runs SET stated_intent = ?2 WHERE id = ?1")?
        .execute_later(params![run_id, intent])?;
    Ok(())
}

/// What run `run_id` carries of the intent it was submitted with (JSON),
/// read in one statement: an agent's every claim needs it.
#[derive(Debug, Default)]
pub(crate) struct Intents {
    /// The signed intent and its submitter's certificate, if it was signed.
    pub(crate) signed: Option<(String, String)>,
    /// The intent stated for it, if no person signed it and one was stated.
    pub(crate) stated: Option<String>,
}

/// Run `run_id`'s [`Intents`] (none for a run that does not exist).
pub(crate) fn intents(tx: &Tx<'_>, run_id: &str) -> Result<Intents, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT signed_intent, submitter_certificate, stated_intent FROM runs WHERE id = ?1",
        )?
        .query_row(params![run_id], |r| intents_from_row(r, 0))
        .optional()?
        .unwrap_or_default())
}

/// [`Intents`] from columns `signed_intent, submitter_certificate,
/// stated_intent` from column `i` on.
fn intents_from_row(r: &Row<'_>, i: usize) -> sql::Result<Intents> {
    let intent: Option<String> = r.get(i)?;
    let certificate: Option<String> = r.get(i + 1)?;
    Ok(Intents {
        signed: intent.zip(certificate),
        stated: r.get(i + 2)?,
    })
}

/// A run just claimed, as stored.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) run_id: String,
    pub(crate) target_id: i64,
    pub(crate) target: String,
    pub(crate) argv: Vec<String>,
    pub(crate) env: std::collections::BTreeMap<String, String>,
    pub(crate) secrets: Vec<String>,
    pub(crate) image: String,
    pub(crate) timeout_secs: u64,
    pub(crate) created_ms: i64,
    pub(crate) stdin: bool,
    /// Its target's spec as it is now.
    pub(crate) spec: TargetSpec,
    /// What it carries of the intent it was submitted with.
    pub(crate) intents: Intents,
}

/// Columns [`claimed_from_row`] reads, in order: those of `runs` and its
/// target's spec, returned by the statement that claims it (one round trip
/// for all an assignment needs of the run).
const CLAIMED_COLUMNS: &str = "id, target_id, target, argv, env, secrets, image, timeout_secs, \
     COALESCE(queued_ms, created_ms), stdin, \
     (SELECT t.spec FROM targets t WHERE t.id = runs.target_id), \
     signed_intent, submitter_certificate, stated_intent";

/// A [`Claimed`] from a row returned with [`CLAIMED_COLUMNS`].
fn claimed_from_row(r: &Row<'_>) -> sql::Result<Claimed> {
    claimed_at(r, 0)
}

/// A [`Claimed`] from [`CLAIMED_COLUMNS`] from column `i` on.
fn claimed_at(r: &Row<'_>, i: usize) -> sql::Result<Claimed> {
    Ok(Claimed {
        run_id: r.get(i)?,
        target_id: r.get(i + 1)?,
        target: r.get(i + 2)?,
        argv: json_column(r, i + 3)?,
        env: json_column(r, i + 4)?,
        secrets: json_column(r, i + 5)?,
        image: r.get(i + 6)?,
        timeout_secs: r.get(i + 7)?,
        created_ms: r.get(i + 8)?,
        stdin: r.get(i + 9)?,
        spec: json_column(r, i + 10)?,
        intents: intents_from_row(r, i + 11)?,
    })
}

/// What a poll's claim found ([`try_claim`]).
#[derive(Debug)]
pub(crate) struct Tried {
    /// The agent's running runs before the claim.
    pub(crate) held: i64,
    /// The most it declared it runs at once.
    pub(crate) max: i64,
    /// Whether it is connected.
    pub(crate) online: bool,
    /// The run found, if any.
    pub(crate) found: Option<Found>,
}

/// A run a poll's claim found.
#[derive(Debug)]
pub(crate) enum Found {
    /// Handed to the agent in this poll before (it did not get the
    /// answer), its lease renewed ([`claimed_in_poll`]).
    Again(Claimed),
    /// Just claimed ([`claim_next`]): the agent had a free slot.
    New(Claimed),
}

/// A poll's claim for agent `agent_id` (see `queue::claim`): touches the
/// agent, counts its slots, renews and returns the run handed to it in
/// poll `poll_id` if it still runs, else claims the next queued run if the
/// agent is connected and has a free slot.
///
/// On SQLite, statement after statement; on PostgreSQL, the touch and one
/// statement doing the rest, one round trip (an agent's every poll takes
/// it). The count there begins after the touch, which holds the agent's
/// row: a claim of the same agent on another replica has committed by
/// then, and the run it took is counted (see [`super::agents::touch_and_slots`]).
/// Fails if there is no such agent.
pub(crate) fn try_claim(
    tx: &Tx<'_>,
    agent_id: &str,
    agent_name: &str,
    poll_id: Option<&str>,
    lease_until: i64,
    now: i64,
) -> Result<Tried, Error> {
    if tx.backend() == Backend::Sqlite {
        let (held, max, online) = super::agents::touch_and_slots(tx, agent_id, now)?;
        let again = match poll_id {
            Some(poll_id) => claimed_in_poll(tx, agent_id, poll_id, lease_until)?,
            None => None,
        };
        let found = match again {
            Some(again) => Some(Found::Again(again)),
            None if held < max && online => {
                claim_next(tx, agent_id, agent_name, poll_id, lease_until, now)?.map(Found::New)
            }
            None => None,
        };
        return Ok(Tried {
            held,
            max,
            online,
            found,
        });
    }
    super::agents::touch_later(tx, agent_id, now)?;
    // `again` and `claimed` cannot both return a run: a run of this poll
    // still running stops the claim. Both see the statement's snapshot,
    // as does `me`: the count includes the run handed out again.
    static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH me AS (
                 SELECT max_concurrency, online,
                        (SELECT COUNT(*) FROM runs
                         WHERE agent_id = ?1 AND status = 'running') AS held
                 FROM agents WHERE id = ?1),
             again AS (
                 UPDATE runs SET lease_expires_ms = ?3
                 WHERE agent_id = ?1 AND status = 'running' AND poll_id = ?5
                 RETURNING 'again' AS kind, {CLAIMED_COLUMNS}),
             claimed AS (
                 UPDATE runs SET status = 'running', agent_id = ?1, agent_name = ?2,
                                 lease_expires_ms = ?3, started_ms = ?4, poll_id = ?5
                 WHERE n = (SELECT r.n FROM agent_targets a
                            JOIN runs r ON r.target_id = a.target_id AND r.status = 'queued'
                            WHERE a.agent_id = ?1
                              AND EXISTS (SELECT 1 FROM me
                                          WHERE online = 1 AND held < max_concurrency)
                              AND NOT EXISTS (SELECT 1 FROM runs p
                                              WHERE p.agent_id = ?1 AND p.status = 'running'
                                                AND p.poll_id = ?5)
                            ORDER BY r.n LIMIT 1 FOR UPDATE OF r SKIP LOCKED)
                   AND status = 'queued'
                 RETURNING 'new' AS kind, {CLAIMED_COLUMNS})
             SELECT me.held, me.max_concurrency, me.online, found.*
             FROM me LEFT JOIN (SELECT * FROM again UNION ALL SELECT * FROM claimed) AS found
                  ON TRUE"
        )
    });
    Ok(tx.prepare_cached(&CLAIM)?.query_row(
        params![agent_id, agent_name, lease_until, now, poll_id],
        |r| {
            let kind: Option<String> = r.get(3)?;
            let found = match kind.as_deref() {
                Some("again") => Some(Found::Again(claimed_at(r, 4)?)),
                Some(_) => Some(Found::New(claimed_at(r, 4)?)),
                None => None,
            };
            Ok(Tried {
                held: r.get(0)?,
                max: r.get(1)?,
                online: r.get(2)?,
                found,
            })
        },
    )?)
}

/// Atomically turns the oldest queued run of the agent's targets into
/// `running`, leased to the agent until `lease_until`, recording the poll
/// it is handed out in.
pub(crate) fn claim_next(
    tx: &Tx<'_>,
    agent_id: &str,
    agent_name: &str,
    poll_id: Option<&str>,
    lease_until: i64,
    now: i64,
) -> Result<Option<Claimed>, Error> {
    // On PostgreSQL, claims of several replicas run beside each other
    // (`Db::write_beside`): each skips the queued runs another is claiming
    // instead of waiting for it and then finding them taken.
    let skip = match tx.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE OF r SKIP LOCKED",
    };
    Ok(tx
        .prepare_cached(&format!(
            "UPDATE runs SET status = 'running', agent_id = ?1, agent_name = ?2,
                             lease_expires_ms = ?3, started_ms = ?4, poll_id = ?5
             WHERE n = (SELECT r.n FROM agent_targets a
                        JOIN runs r ON r.target_id = a.target_id AND r.status = 'queued'
                        WHERE a.agent_id = ?1 ORDER BY r.n LIMIT 1{skip})
               AND status = 'queued'
             RETURNING {CLAIMED_COLUMNS}"
        ))?
        .query_row(
            params![agent_id, agent_name, lease_until, now, poll_id],
            claimed_from_row,
        )
        .optional()?)
}

/// The run handed to agent `agent_id` in its poll `poll_id`, if the agent
/// still holds it running; its lease renewed until `lease_until`.
pub(crate) fn claimed_in_poll(
    tx: &Tx<'_>,
    agent_id: &str,
    poll_id: &str,
    lease_until: i64,
) -> Result<Option<Claimed>, Error> {
    Ok(tx
        .prepare_cached(&format!(
            "UPDATE runs SET lease_expires_ms = ?3
             WHERE agent_id = ?1 AND status = 'running' AND poll_id = ?2
             RETURNING {CLAIMED_COLUMNS}"
        ))?
        .query_row(params![agent_id, poll_id, lease_until], claimed_from_row)
        .optional()?)
}

/// A submission's idempotency key, as remembered.
#[derive(Debug)]
pub(crate) struct Keyed {
    pub(crate) run_id: String,
    /// The hash of the request first submitted with the key.
    pub(crate) fingerprint: String,
    pub(crate) target_id: i64,
    pub(crate) created_ms: i64,
}

/// The run `actor` of org `org_id` submitted with idempotency key `key`.
///
/// On PostgreSQL the key is locked first, to the transaction's end
/// (an advisory lock on its hash): submissions run beside other
/// replicas' (`Db::write_beside`), and the same submission sent again to
/// another replica while the first is open must wait for it and replay
/// its run, not insert a second one and fail on the key.
pub(crate) fn by_key(
    tx: &Tx<'_>,
    org_id: i64,
    actor: &str,
    key: &str,
) -> Result<Option<Keyed>, Error> {
    if tx.backend() == Backend::Postgres {
        // Sent with the read below, which begins once the lock is held
        // and so sees the other submission's key if it committed.
        tx.prepare_cached(&KEY_LOCK)?
            .execute_later(params![format!("{org_id}\n{actor}\n{key}")])?;
    }
    Ok(tx
        .prepare_cached(
            "SELECT k.run_id, k.fingerprint, r.target_id, r.created_ms
             FROM run_keys k JOIN runs r ON r.id = k.run_id
             WHERE k.org_id = ?1 AND k.actor = ?2 AND k.key = ?3",
        )?
        .query_row(params![org_id, actor, key], |r| {
            Ok(Keyed {
                run_id: r.get(0)?,
                fingerprint: r.get(1)?,
                target_id: r.get(2)?,
                created_ms: r.get(3)?,
            })
        })
        .optional()?)
}

/// Locks an idempotency key (`?1`: org, actor and key) to the end of the
/// transaction: an advisory lock of two 32-bit keys, a class ("seal") and
/// the text's hash, whose locks are apart from the one-key locks
/// (`WRITE_LOCK`, `AUDIT_LOCK`, the migrations'), so no key, however
/// chosen, can hash to one of those. Two keys of one hash only wait for
/// each other.
static KEY_LOCK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT pg_advisory_xact_lock({}, hashtext(?1))",
        0x7365_616c_i32
    )
});

/// Remembers that `actor` of org `org_id` submitted run `run_id` with
/// idempotency key `key` and a request hashing to `fingerprint`.
pub(crate) fn insert_key(
    tx: &Tx<'_>,
    org_id: i64,
    actor: &str,
    key: &str,
    fingerprint: &str,
    run_id: &str,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "INSERT INTO run_keys (org_id, actor, key, fingerprint, run_id, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute_later(params![org_id, actor, key, fingerprint, run_id, now])?;
    Ok(())
}

/// Ends a just-claimed run as `error` before it was handed out.
pub(crate) fn fail_unstarted(
    tx: &Tx<'_>,
    run_id: &str,
    error: &str,
    now: i64,
) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runs SET status = 'error', error = ?2, finished_ms = ?3, lease_expires_ms = NULL
             WHERE id = ?1",
    )?
    .execute(params![run_id, error, now])?;
    Ok(())
}

/// The status of the org's run `run_id`, as stored.
pub(crate) fn status(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT status FROM runs WHERE org_id = ?1 AND id = ?2")?
        .query_row(params![org_id, run_id], |r| r.get(0))
        .optional()?)
}

/// The status of run `run_id`, whatever its org (for housekeeping).
pub(crate) fn status_any_org(tx: &Tx<'_>, run_id: &str) -> Result<Option<String>, Error> {
    Ok(tx
        .prepare_cached("SELECT status FROM runs WHERE id = ?1")?
        .query_row(params![run_id], |r| r.get(0))
        .optional()?)
}

/// What feeding the org's run `run_id` input depends on: its status, its
/// submitter, and whether it was submitted to read input.
pub(crate) fn input_of(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
) -> Result<Option<(RunStatus, String, bool)>, Error> {
    Ok(tx
        .prepare_cached("SELECT status, submitter, stdin FROM runs WHERE org_id = ?1 AND id = ?2")?
        .query_row(params![org_id, run_id], |r| {
            Ok((status_column(r, 0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?)
}

/// `queued | pending_approval -> canceled`.
pub(crate) fn cancel_queued(tx: &Tx<'_>, run_id: &str, now: i64) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runs SET status = 'canceled', finished_ms = ?2
             WHERE id = ?1 AND status IN ('queued', 'pending_approval')",
    )?
    .execute(params![run_id, now])?;
    Ok(())
}

/// Flags a running run for cancellation; returns whether it was not yet.
pub(crate) fn request_cancel(tx: &Tx<'_>, run_id: &str) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 AND cancel_requested = 0",
        )?
        .execute(params![run_id])?
        > 0)
}

/// A run as its holder sees it: status, holding agent, exit code.
pub(crate) type Held = (String, Option<String>, Option<i64>);

/// What [`holder`] and [`holder_locked`] read.
const HOLDER: &str = "SELECT status, agent_id, exit_code FROM runs WHERE org_id = ?1 AND id = ?2";

/// The org's run `run_id` as its holder sees it.
pub(crate) fn holder(tx: &Tx<'_>, org_id: i64, run_id: &str) -> Result<Option<Held>, Error> {
    Ok(tx
        .prepare_cached(HOLDER)?
        .query_row(params![org_id, run_id], held)
        .optional()?)
}

/// [`holder`] if agent `agent_id` holds the run, for a write that decides
/// from it: on PostgreSQL the row is locked until the transaction ends,
/// because a finish runs beside other replicas' (`Db::write_beside`) and
/// the same finish sent again to another replica must wait and see the
/// first's outcome. (Only the agent's own runs: one naming another's run
/// locks nothing.)
pub(crate) fn holder_locked(
    tx: &Tx<'_>,
    org_id: i64,
    run_id: &str,
    agent_id: &str,
) -> Result<Option<Held>, Error> {
    static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        let own = format!("{HOLDER} AND agent_id = ?3");
        [own.clone(), format!("{own} FOR UPDATE")]
    });
    let sql = match tx.backend() {
        Backend::Sqlite => &SQL[0],
        Backend::Postgres => &SQL[1],
    };
    Ok(tx
        .prepare_cached(sql)?
        .query_row(params![org_id, run_id, agent_id], held)
        .optional()?)
}

fn held(r: &Row<'_>) -> sql::Result<Held> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// How a running run ended.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub(crate) status: RunStatus,
    pub(crate) exit_code: Option<i64>,
    pub(crate) error: Option<&'a str>,
    pub(crate) oom_killed: bool,
    pub(crate) now: i64,
    pub(crate) final_seq: u64,
    /// Bytes of input relayed, for a run given input, if this replica
    /// relayed it.
    pub(crate) stdin_bytes: Option<u64>,
    /// Masks the agent's redactor wrote, per stream.
    pub(crate) redactions: Redactions,
    /// The agent's signed report of all of it (JSON), if it sent one.
    pub(crate) report: Option<&'a str>,
}

/// Records that `bytes` of run `run_id`'s input were relayed (by the
/// replica its agent read it from, which may not be the one it reports its
/// end to).
pub(crate) fn record_stdin_bytes(tx: &Tx<'_>, run_id: &str, bytes: u64) -> Result<(), Error> {
    tx.prepare_cached(
        "UPDATE runs SET stdin_bytes = ?2
         WHERE id = ?1 AND stdin <> 0 AND (stdin_bytes IS NULL OR stdin_bytes < ?2)",
    )?
    .execute(params![run_id, bytes])?;
    Ok(())
}

/// Finishes run `run_id` of org `org_id` as `o` says (`running ->
/// <outcome>`), if agent `agent_id` holds it running: its target's id, or
/// `None` if it does not (nothing changed). A run's input's size, if `o`
/// does not know it or knows less, stays what [`record_stdin_bytes`]
/// recorded (both count what one relay handed the agent, which only grows).
pub(crate) fn finish_held(
    tx: &Tx<'_>,
    org_id: i64,
    agent_id: &str,
    run_id: &str,
    o: &Outcome<'_>,
) -> Result<Option<i64>, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = ?2, exit_code = ?3, error = ?4, oom_killed = ?5, finished_ms = ?6,
                             lease_expires_ms = NULL, log_final_seq = ?7,
                             stdin_bytes = CASE WHEN stdin <> 0 THEN
                                 CASE WHEN stdin_bytes IS NULL OR stdin_bytes < CAST(?8 AS BIGINT)
                                      THEN CAST(?8 AS BIGINT) ELSE stdin_bytes END END,
                             redacted_stdout = ?9, redacted_stderr = ?10, report = ?11
             WHERE id = ?1 AND org_id = ?12 AND agent_id = ?13 AND status = 'running'
             RETURNING target_id",
        )?
        .query_row(
            params![
                run_id,
                o.status.as_str(),
                o.exit_code,
                o.error,
                o.oom_killed,
                o.now,
                o.final_seq,
                o.stdin_bytes,
                o.redactions.stdout,
                o.redactions.stderr,
                o.report,
                org_id,
                agent_id,
            ],
            |r| r.get(0),
        )
        .optional()?)
}

/// `running -> lost` for every run agent `agent_id` holds; returns their ids.
pub(crate) fn lose_held(
    tx: &Tx<'_>,
    agent_id: &str,
    error: &str,
    now: i64,
) -> Result<Vec<String>, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = 'lost', finished_ms = ?2, lease_expires_ms = NULL,
                             error = ?3
             WHERE agent_id = ?1 AND status = 'running' RETURNING id",
        )?
        .query_map(params![agent_id, now, error], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?)
}

/// `running -> lost` for every run whose lease expired before `now`;
/// returns (run id, org id, agent id) of each.
pub(crate) fn expire_leases(
    tx: &Tx<'_>,
    now: i64,
    error: &str,
) -> Result<Vec<(String, i64, Option<String>)>, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = 'lost', finished_ms = ?1, lease_expires_ms = NULL,
                             error = ?2
             WHERE status = 'running' AND lease_expires_ms < ?1
             RETURNING id, org_id, agent_id",
        )?
        .query_map(params![now, error], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// `queued -> expired` for every run queued before `created_before`
/// (since it entered the queue: a run that waited for approval entered it
/// when approved); returns (run id, org id) of each.
pub(crate) fn expire_queued(
    tx: &Tx<'_>,
    created_before: i64,
    now: i64,
    error: &str,
) -> Result<Vec<(String, i64)>, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET status = 'expired', finished_ms = ?2, error = ?3
             WHERE status = 'queued' AND COALESCE(queued_ms, created_ms) < ?1
             RETURNING id, org_id",
        )?
        .query_map(params![created_before, now, error], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Extends the lease of run `run_id` if agent `agent_id` holds it running;
/// `Some(cancel requested)` if it did, `None` if the agent does not hold it.
pub(crate) fn renew_lease(
    tx: &Tx<'_>,
    run_id: &str,
    agent_id: &str,
    until: i64,
) -> Result<Option<bool>, Error> {
    Ok(tx
        .prepare_cached(
            "UPDATE runs SET lease_expires_ms = ?3
             WHERE id = ?1 AND agent_id = ?2 AND status = 'running'
             RETURNING cancel_requested",
        )?
        .query_row(params![run_id, agent_id, until], |r| r.get(0))
        .optional()?)
}

/// How many runs of target `target_id` are waiting for approval, queued
/// or running.
pub(crate) fn active_for_target(tx: &Tx<'_>, target_id: i64) -> Result<i64, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(*) FROM runs
             WHERE target_id = ?1 AND status IN ('pending_approval', 'queued', 'running')",
        )?
        .query_row(params![target_id], |r| r.get(0))?)
}

/// How many runs (of every org) are in each status: read from `run_counts`,
/// which triggers keep up to date as runs are inserted and change status, so
/// the cost does not grow with the number of runs (`/metrics` asks often).
///
/// On PostgreSQL the triggers add a row per change instead of updating one
/// per status (transactions beside each other would otherwise wait on, and
/// deadlock over, those rows): the counts are the sums, and
/// [`compact_counts`] folds the rows up now and then.
pub(crate) fn count_by_status(tx: &Tx<'_>) -> Result<HashMap<String, u64>, Error> {
    let mut counts = HashMap::new();
    let mut stmt =
        tx.prepare_cached("SELECT status, CAST(SUM(n) AS BIGINT) FROM run_counts GROUP BY status")?;
    stmt.each(params![], |r| {
        counts.insert(r.get::<_, String>(0)?, r.get::<_, u64>(1)?);
        Ok(true)
    })?;
    Ok(counts)
}

/// Folds `run_counts`' rows into one per status (PostgreSQL adds one per
/// change: see [`count_by_status`]). For a write that no job beside it can
/// interleave with (`Db::write`). Nothing to do on SQLite.
pub(crate) fn compact_counts(tx: &Tx<'_>) -> Result<(), Error> {
    if tx.backend() == Backend::Postgres {
        tx.prepare_cached(
            "WITH gone AS (DELETE FROM run_counts RETURNING status, n)
             INSERT INTO run_counts (status, n) SELECT status, SUM(n) FROM gone GROUP BY status",
        )?
        .execute_later(params![])?;
    }
    Ok(())
}

/// How many runs of target `target_id` are queued, counting up to
/// `at_most`.
pub(crate) fn queued(tx: &Tx<'_>, target_id: i64, at_most: u64) -> Result<u64, Error> {
    Ok(tx
        .prepare_cached(
            "SELECT COUNT(*) FROM
                (SELECT 1 FROM runs WHERE target_id = ?1 AND status = 'queued' LIMIT ?2) AS q",
        )?
        .query_row(params![target_id, at_most], |r| r.get(0))?)
}
