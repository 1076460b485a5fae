//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Migrations are append-only: a released entry is never edited, a change is a
//! new entry. Each runs in its own transaction together with the version bump.

use crate::error::OpenError;
use rusqlite::Connection;
use std::path::Path;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: everything.
    r#"
CREATE TABLE orgs (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE pools (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

-- Every bearer credential: user tokens (role set), enrollment tokens (pool
-- set) and agent tokens (agent set). Only SHA-256 of the secret is kept.
CREATE TABLE tokens (
    id             TEXT PRIMARY KEY,
    org_id         INTEGER NOT NULL REFERENCES orgs(id),
    kind           TEXT NOT NULL CHECK (kind IN ('user', 'enrollment', 'agent')),
    role           TEXT CHECK (role IN ('admin', 'operator', 'auditor')),
    name           TEXT NOT NULL,
    secret_sha256  BLOB NOT NULL,
    pool_id        INTEGER REFERENCES pools(id),
    agent_id       TEXT,
    created_ms     INTEGER NOT NULL,
    expires_ms     INTEGER,
    revoked_ms     INTEGER
);
CREATE INDEX tokens_by_org ON tokens (org_id, kind);

CREATE TABLE targets (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    pool_id     INTEGER NOT NULL REFERENCES pools(id),
    spec        TEXT NOT NULL,            -- TargetSpec as JSON
    public_key  TEXT,                     -- pinned by the first agent
    key_id      TEXT,
    updated_ms  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    org_id           INTEGER NOT NULL REFERENCES orgs(id),
    pool_id          INTEGER NOT NULL REFERENCES pools(id),
    name             TEXT NOT NULL,
    version          TEXT,
    max_concurrency  INTEGER NOT NULL DEFAULT 1,
    registered_ms    INTEGER NOT NULL,
    online           INTEGER NOT NULL DEFAULT 0,
    last_seen_ms     INTEGER,
    revoked_ms       INTEGER
);
CREATE UNIQUE INDEX agents_live_name ON agents (org_id, name) WHERE revoked_ms IS NULL;

-- Which targets a connected agent serves (replaced on every connect).
CREATE TABLE agent_targets (
    agent_id   TEXT NOT NULL,
    target_id  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, target_id)
) WITHOUT ROWID;
CREATE INDEX agent_targets_by_target ON agent_targets (target_id);

-- Sealed secrets; the ciphertext leaves only inside an agent's Assignment.
CREATE TABLE secrets (
    target_id   INTEGER NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    key_id      TEXT NOT NULL,
    sealed      TEXT NOT NULL,            -- SealedSecret as JSON
    updated_ms  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (target_id, name)
) WITHOUT ROWID;

CREATE TABLE runs (
    n                 INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    id                TEXT NOT NULL UNIQUE,
    org_id            INTEGER NOT NULL,
    target_id         INTEGER NOT NULL,
    target            TEXT NOT NULL,
    argv              TEXT NOT NULL,      -- JSON array
    env               TEXT NOT NULL,      -- JSON object
    secrets           TEXT NOT NULL,      -- JSON array of names
    image             TEXT NOT NULL,
    timeout_secs      INTEGER NOT NULL,
    source            TEXT NOT NULL,
    submitter         TEXT NOT NULL,
    status            TEXT NOT NULL,
    exit_code         INTEGER,
    error             TEXT,
    oom_killed        INTEGER NOT NULL DEFAULT 0,
    agent_id          TEXT,
    agent_name        TEXT,
    lease_expires_ms  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    created_ms        INTEGER NOT NULL,
    started_ms        INTEGER,
    finished_ms       INTEGER,
    log_bytes         INTEGER NOT NULL DEFAULT 0,
    log_truncated     INTEGER NOT NULL DEFAULT 0,
    log_next_seq      INTEGER NOT NULL DEFAULT 0, -- chunks below it are all stored
    log_final_seq     INTEGER                     -- chunks the agent said it made
);
CREATE INDEX runs_by_org ON runs (org_id, n);
CREATE INDEX runs_queued ON runs (target_id, n) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_ms) WHERE status = 'running';
CREATE INDEX runs_held ON runs (agent_id) WHERE status = 'running';

CREATE TABLE log_chunks (
    run_n   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    stream  TEXT NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (run_n, seq)
) WITHOUT ROWID;

-- One hash chain per org (see sealrun_wire::audit).
CREATE TABLE audit (
    org_id     INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
) WITHOUT ROWID;
"#,
    // 2: the Slack integration.
    r#"
-- A Slack workspace (team ids are unique across Slack) belongs to one org.
-- `sealed` is the app's signing secret as a SealedSecret (JSON), sealed to
-- the server's data_dir/slack.key: it must be usable for HMACs, so it
-- cannot be hashed.
CREATE TABLE slack_workspaces (
    team_id     TEXT PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    sealed      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX slack_workspaces_by_org ON slack_workspaces (org_id);

-- Slack users allowed to use /sealrun, and as whom.
CREATE TABLE slack_users (
    team_id     TEXT NOT NULL REFERENCES slack_workspaces(team_id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;
"#,
    // 3: run input. The input itself is relayed, never stored: only whether
    // the command was given some, and how much was relayed.
    r#"
ALTER TABLE runs ADD COLUMN stdin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN stdin_bytes INTEGER;
"#,
    // 4: monitoring without scans. Run counts by status kept by triggers
    // (so `/metrics` reads a handful of rows whatever the size of `runs`),
    // each org's audit-verification checkpoint, and the row the readiness
    // probe rewrites to prove the store can still write.
    r#"
CREATE TABLE run_counts (
    status  TEXT PRIMARY KEY,
    n       INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO run_counts (status, n) SELECT status, COUNT(*) FROM runs GROUP BY status;
CREATE TRIGGER run_counts_insert AFTER INSERT ON runs BEGIN
    INSERT INTO run_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER run_counts_update AFTER UPDATE OF status ON runs
    WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE run_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO run_counts (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER run_counts_delete AFTER DELETE ON runs BEGIN
    UPDATE run_counts SET n = n - 1 WHERE status = OLD.status;
END;

-- The last entry of an org's chain a verification found intact (and its
-- hash), so the next one re-hashes only what was appended since; and the
-- first failure any verification found, reported until a full one passes.
CREATE TABLE audit_checkpoints (
    org_id       INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL,
    hash         TEXT NOT NULL,
    verified_ms  INTEGER NOT NULL,
    failed_seq   INTEGER,
    problem      TEXT
);

CREATE TABLE health_probe (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms  INTEGER NOT NULL
);
"#,
    // 5: enrollment tokens limited to a number of agents.
    // `max_uses` NULL enrolls any number (what every earlier token was
    // issued as); `uses` counts registrations that succeeded.
    r#"
ALTER TABLE tokens ADD COLUMN max_uses INTEGER;
ALTER TABLE tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
"#,
    // 6: Slack requests accepted once (by signature, until the request's
    // timestamp leaves the replay window), and run results still owed to
    // Slack, kept across restarts. A `response_url` is a credential for
    // the channel, so it is stored sealed (to `slack.key`, like signing
    // secrets); the submitter's role, name and audit actor are what reading
    // the run again needs.
    r#"
CREATE TABLE slack_requests (
    mac         BLOB PRIMARY KEY,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX slack_requests_by_expiry ON slack_requests (expires_ms);

CREATE TABLE slack_notices (
    run_id        TEXT PRIMARY KEY,
    org_id        INTEGER NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    submitter     TEXT NOT NULL,
    actor         TEXT NOT NULL,
    response_url  TEXT NOT NULL,
    expires_ms    INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 7: retries that never act twice. A submission's idempotency key, per
    // (org, submitter's audit actor), with a hash of the request it came
    // with, kept as long as the run; and the poll a run was handed out in,
    // so an agent that did not get the answer gets the same run again by
    // asking with the same poll id instead of leaving it held by nobody.
    r#"
CREATE TABLE run_keys (
    org_id       INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    PRIMARY KEY (org_id, actor, key)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN poll_id TEXT;
"#,
    // 8: a Slack workspace may be linked by several orgs, each with its own
    // Slack app (and so its own signing secret, which tells them apart), so
    // that linking a team says nothing about whether another org linked it.
    // Users are linked per org.
    r#"
CREATE TABLE slack_workspaces_new (
    team_id     TEXT NOT NULL,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    sealed      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (team_id, org_id)
) WITHOUT ROWID;
INSERT INTO slack_workspaces_new (team_id, org_id, sealed, created_ms, updated_ms)
    SELECT team_id, org_id, sealed, created_ms, updated_ms FROM slack_workspaces;
CREATE TABLE slack_users_new (
    team_id     TEXT NOT NULL,
    org_id      INTEGER NOT NULL,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (team_id, org_id, user_id),
    FOREIGN KEY (team_id, org_id) REFERENCES slack_workspaces_new (team_id, org_id)
        ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO slack_users_new (team_id, org_id, user_id, name, role, updated_ms)
    SELECT u.team_id, w.org_id, u.user_id, u.name, u.role, u.updated_ms
    FROM slack_users u JOIN slack_workspaces w ON w.team_id = u.team_id;
DROP TABLE slack_users;
DROP TABLE slack_workspaces;
ALTER TABLE slack_workspaces_new RENAME TO slack_workspaces;
ALTER TABLE slack_users_new RENAME TO slack_users;
CREATE INDEX slack_workspaces_by_org ON slack_workspaces (org_id);
CREATE INDEX slack_users_by_org ON slack_users (org_id);
"#,
    // 9: how many masks the agent's redactor wrote in each stream of a run's
    // output (NULL until the run ends, and for runs finished before).
    r#"
ALTER TABLE runs ADD COLUMN redacted_stdout INTEGER;
ALTER TABLE runs ADD COLUMN redacted_stderr INTEGER;
"#,
    // 10: runbooks (issue 15): every version of every runbook (a version is
    // never rewritten, so a run names exactly what it rendered), and which
    // runbook and version a run was rendered from (NULL: an ad-hoc run).
    r#"
CREATE TABLE runbooks (
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,            -- RunbookSpec as JSON
    created_ms  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (org_id, name, version)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN runbook TEXT;
ALTER TABLE runs ADD COLUMN runbook_version INTEGER;
"#,
    // 11: people (issue 15). Tokens belong to users (a user has one role;
    // its tokens act with it, and disabling it stops them all); groups of
    // users; Slack users link to a user instead of carrying a name and a
    // role of their own.
    //
    // Existing credentials become users: one per (org, label, role) among
    // the user tokens and the Slack links, named after the label, so two
    // tokens with the same label and role become one user with two tokens.
    // The same label with another role is another person as far as we can
    // tell: the one seen later gets a suffix (`name-2`, `name-3`, ...; or,
    // should a label already be spelt that way, `name-2-<its first token
    // or Slack id>`), since a user has one role and names are unique.
    r#"
CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs(id),
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    disabled_ms  INTEGER,
    created_ms   INTEGER NOT NULL,
    UNIQUE (org_id, name)
);
-- NULL for enrollment and agent tokens.
ALTER TABLE tokens ADD COLUMN user_id INTEGER REFERENCES users(id);
CREATE INDEX tokens_by_user ON tokens (user_id) WHERE user_id IS NOT NULL;

CREATE TABLE groups (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id),
    name        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE group_members (
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_by_user ON group_members (user_id);

CREATE TEMP TABLE people_11 AS
WITH seen AS (
    SELECT org_id, name, role, MIN(created_ms) AS since, MIN(id) AS first_id
        FROM tokens WHERE kind = 'user' AND role IS NOT NULL GROUP BY org_id, name, role
    UNION ALL
    SELECT org_id, name, role, MIN(updated_ms), MIN(team_id || '/' || user_id)
        FROM slack_users GROUP BY org_id, name, role
), who AS (
    SELECT org_id, name, role, MIN(since) AS since, MIN(first_id) AS first_id
        FROM seen GROUP BY org_id, name, role
), ranked AS (
    SELECT who.*, ROW_NUMBER() OVER (PARTITION BY org_id, name ORDER BY since, role) AS k
        FROM who
)
SELECT org_id, name AS label, role, since,
    CASE
        WHEN k = 1 THEN name
        WHEN NOT EXISTS (SELECT 1 FROM who o WHERE o.org_id = ranked.org_id
                         AND o.name = ranked.name || '-' || k) THEN name || '-' || k
        ELSE name || '-' || k || '-' || first_id
    END AS user_name
FROM ranked;

INSERT INTO users (org_id, name, role, created_ms)
    SELECT org_id, user_name, role, since FROM people_11;
UPDATE tokens SET user_id = (
    SELECT u.id FROM people_11 p JOIN users u ON u.org_id = p.org_id AND u.name = p.user_name
    WHERE p.org_id = tokens.org_id AND p.label = tokens.name AND p.role = tokens.role
) WHERE kind = 'user';

CREATE TABLE slack_users_new (
    team_id          TEXT NOT NULL,
    org_id           INTEGER NOT NULL,
    user_id          TEXT NOT NULL,                      -- Slack's (U... or W...)
    sealrun_user_id  INTEGER NOT NULL REFERENCES users(id),
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (team_id, org_id, user_id),
    FOREIGN KEY (team_id, org_id) REFERENCES slack_workspaces (team_id, org_id)
        ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO slack_users_new (team_id, org_id, user_id, sealrun_user_id, updated_ms)
    SELECT s.team_id, s.org_id, s.user_id, u.id, s.updated_ms
    FROM slack_users s
    JOIN people_11 p ON p.org_id = s.org_id AND p.label = s.name AND p.role = s.role
    JOIN users u ON u.org_id = p.org_id AND u.name = p.user_name;
DROP TABLE slack_users;
ALTER TABLE slack_users_new RENAME TO slack_users;
CREATE INDEX slack_users_by_org ON slack_users (org_id);
CREATE INDEX slack_users_by_user ON slack_users (sealrun_user_id);

-- Who submitted a run owed to Slack (NULL for notices owed before).
ALTER TABLE slack_notices ADD COLUMN user_id INTEGER;

DROP TABLE people_11;
"#,
    // 12: four-eyes approvals (issue 15). Every run records the digest of
    // its spec (`sealrun_wire::approval::RunSpec`) and its submitter's user
    // id; a run that needs approval also the rule that applied (JSON) and
    // when its request expires, and waits as `pending_approval`; `queued_ms`
    // is when it entered the queue (NULL: when it was submitted), since the
    // queue TTL counts from then; `break_glass` the reason its submitter
    // gave for skipping approval. `approvals` holds one decision per person
    // and run (the primary key is what makes each person count once).
    r#"
ALTER TABLE runs ADD COLUMN spec_digest TEXT;
ALTER TABLE runs ADD COLUMN submitter_user_id INTEGER;
ALTER TABLE runs ADD COLUMN queued_ms INTEGER;
ALTER TABLE runs ADD COLUMN approval_rule TEXT;
ALTER TABLE runs ADD COLUMN approval_expires_ms INTEGER;
ALTER TABLE runs ADD COLUMN break_glass TEXT;
CREATE INDEX runs_pending ON runs (approval_expires_ms) WHERE status = 'pending_approval';
CREATE INDEX runs_approval ON runs (org_id, n) WHERE approval_rule IS NOT NULL;

CREATE TABLE approvals (
    run_id     TEXT NOT NULL,
    user_id    INTEGER NOT NULL,
    user_name  TEXT NOT NULL,
    actor      TEXT NOT NULL,
    decision   TEXT NOT NULL CHECK (decision IN ('approved', 'rejected')),
    digest     TEXT NOT NULL,
    comment    TEXT,                  -- an approval's comment, a rejection's reason
    at_ms      INTEGER NOT NULL,
    PRIMARY KEY (run_id, user_id)
) WITHOUT ROWID;
"#,
    // 13: approval requests in Slack (issue 15). A workspace may name the
    // channel its approvers read and the bot token to post there with
    // (sealed to `slack.key`, like the signing secret: it is a credential).
    // `slack_approval_posts` is the outbox of approval messages: one row per
    // pending run and workspace with a channel, written in the transaction
    // that holds the run, so a restart loses none; `ts` is Slack's id of
    // the posted message (NULL: not posted yet), `shown` the state it last
    // showed. A row is deleted once the message shows the outcome.
    r#"
ALTER TABLE slack_workspaces ADD COLUMN approvals_channel TEXT;
ALTER TABLE slack_workspaces ADD COLUMN bot_token TEXT;

CREATE TABLE slack_approval_posts (
    run_id      TEXT NOT NULL,
    team_id     TEXT NOT NULL,
    org_id      INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    ts          TEXT,
    shown       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (run_id, team_id, org_id),
    FOREIGN KEY (team_id, org_id) REFERENCES slack_workspaces (team_id, org_id)
        ON DELETE CASCADE
) WITHOUT ROWID;
"#,
    // 14: proof of possession (issue 16). Before connecting, an agent asks
    // for one challenge per target: a random nonce sealed to the key it
    // will present. Only the nonce's SHA-256 is kept, with the agent, the
    // target and the key it was sealed to; a challenge is answered once,
    // within its TTL, by that agent, for that key.
    r#"
CREATE TABLE agent_challenges (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    target      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    nonce_hash  BLOB NOT NULL,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX agent_challenges_by_expiry ON agent_challenges (expires_ms);
"#,
    // 15: target-key certificates (issue 16): an admin's signature, made on
    // their machine, that a target's key is that target's
    // (`sealrun_wire::trust::Signed<TargetCertificate>`, JSON). Stored and relayed,
    // never trusted here: clients check it against the admin keys they pin.
    r#"
ALTER TABLE targets ADD COLUMN certificate TEXT;
"#,
    // 16: signed runs (issue 16). A user's certificate (an admin's
    // signature over their signing key, role and groups); a run's intent as
    // its submitter signed it, with the submitter's certificate as it was
    // then; an approval's signed statement with its approver's certificate.
    // All stored and relayed to the agent, which checks them; never trusted
    // here. Target certificates now also certify the target's spec and
    // policy (`sealrun_wire::trust::TargetCertificate`): those of migration
    // 15 no longer parse and are dropped (`sealrun target trust` again).
    r#"
ALTER TABLE users ADD COLUMN certificate TEXT;
ALTER TABLE runs ADD COLUMN signed_intent TEXT;
ALTER TABLE runs ADD COLUMN submitter_certificate TEXT;
ALTER TABLE approvals ADD COLUMN signed TEXT;
UPDATE targets SET certificate = NULL;
"#,
    // 17: signed runbooks and runs no person signs (issue 16). A runbook
    // version's certificate (an admin's signature over its definition,
    // `sealrun_wire::runbook::RunbookCertificate`); a run no person signed
    // (a Slack command) gets the intent the control plane states for it,
    // whose digest approvals sign. Both relayed to agents, never trusted
    // here.
    r#"
ALTER TABLE runbooks ADD COLUMN certificate TEXT;
ALTER TABLE runs ADD COLUMN stated_intent TEXT;
"#,
    // 18: agent-signed run reports (issue 16). A target's report key (the
    // Ed25519 key its agents derive from the target's secret key, presented
    // with the public key and pinned with it); a run's report as its agent
    // signed it (`sealrun_wire::report`), stored and shown, never trusted
    // here: clients check it against the target's certificate.
    r#"
ALTER TABLE targets ADD COLUMN report_key TEXT;
ALTER TABLE runs ADD COLUMN report TEXT;
"#,
    // 19: web console sessions (issue 17): a session is a token of kind
    // `session` (hash only, like every token), valid only while the user
    // token it was signed in with is: `parent_id` names that token. The
    // kind's CHECK constraint changes, which SQLite does only by rebuilding
    // the table (no table references `tokens`).
    r#"
CREATE TABLE tokens_v19 (
    id             TEXT PRIMARY KEY,
    org_id         INTEGER NOT NULL REFERENCES orgs(id),
    kind           TEXT NOT NULL CHECK (kind IN ('user', 'enrollment', 'agent', 'session')),
    role           TEXT CHECK (role IN ('admin', 'operator', 'auditor')),
    name           TEXT NOT NULL,
    secret_sha256  BLOB NOT NULL,
    pool_id        INTEGER REFERENCES pools(id),
    agent_id       TEXT,
    created_ms     INTEGER NOT NULL,
    expires_ms     INTEGER,
    revoked_ms     INTEGER,
    max_uses       INTEGER,
    uses           INTEGER NOT NULL DEFAULT 0,
    user_id        INTEGER REFERENCES users(id),
    parent_id      TEXT
);
INSERT INTO tokens_v19 (id, org_id, kind, role, name, secret_sha256, pool_id, agent_id,
                        created_ms, expires_ms, revoked_ms, max_uses, uses, user_id)
    SELECT id, org_id, kind, role, name, secret_sha256, pool_id, agent_id,
           created_ms, expires_ms, revoked_ms, max_uses, uses, user_id FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v19 RENAME TO tokens;
CREATE INDEX tokens_by_org ON tokens (org_id, kind);
CREATE INDEX tokens_by_user ON tokens (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX tokens_by_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
"#,
    // 20: passkeys (issue 17): registered by their user in the web console,
    // certified by an admin into the user's certificate
    // (`sealrun user certify --passkey`), whose approvals agents then count.
    // Public keys only; what counts is the admin's certificate, never a row
    // here.
    r#"
CREATE TABLE passkeys (
    credential_id  TEXT PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id),
    public_key     TEXT NOT NULL,
    origin         TEXT NOT NULL,
    created_ms     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX passkeys_by_user ON passkeys (user_id);
"#,
    // 21: Slack's outbox held by one replica at a time (issue 18). Every
    // replica drains the approval messages and owed run results; a row is
    // worked on only by its holder (a replica's random id) until
    // `held_until_ms`, which the holder renews while it lives, so a message
    // is posted once and a dead replica's work is taken over.
    r#"
ALTER TABLE slack_approval_posts ADD COLUMN holder TEXT;
ALTER TABLE slack_approval_posts ADD COLUMN held_until_ms INTEGER;
ALTER TABLE slack_notices ADD COLUMN holder TEXT;
ALTER TABLE slack_notices ADD COLUMN held_until_ms INTEGER;
"#,
];

/// The schema version of the database `conn` is open on (0: none).
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the database at `path` (open as `conn`) up to the current schema.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenError> {
    let db_err = |e: rusqlite::Error| database_error(path, &e);
    let known = MIGRATIONS.len() as i64;
    let found = schema_version(conn).map_err(db_err)?;
    if found > known {
        return Err(OpenError::SchemaTooNew {
            location: path.display().to_string(),
            found,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        // Another process may have migrated while we waited for the lock.
        let now = schema_version(&tx).map_err(db_err)?;
        if now > version as i64 {
            continue;
        }
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version = version + 1, "database schema migrated");
    }
    Ok(())
}

/// [`OpenError::Database`] for `path`.
pub(crate) fn database_error(path: &Path, e: &rusqlite::Error) -> OpenError {
    OpenError::Database {
        location: path.display().to_string(),
        message: e.to_string(),
    }
}
