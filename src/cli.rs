//! The command line, parsed into types before anything runs.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Run sensitive commands against private infrastructure, safely and auditably.
#[derive(Debug, Parser)]
#[command(
    name = "sealrun",
    version,
    about,
    propagate_version = true,
    after_help = "\
Examples:
  sealrun dev                                   # local control plane + agent + demo target
  source .sealrun-dev/dev.env                   # point this shell at it
  printf %s \"$PW\" | sealrun secret set --target demo DB_PASSWORD
  sealrun run --target demo --secret DB_PASSWORD -- sh -c 'echo $DB_PASSWORD'
  sealrun runs list
  sealrun audit verify

Client commands read SEALRUN_URL, SEALRUN_TOKEN and SEALRUN_CA_CERT, or the
profile saved by `sealrun login` (--profile NAME / SEALRUN_PROFILE picks one)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Connection settings shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Control plane URL, e.g. https://sealrun.internal:8443
    #[arg(long, env = "SEALRUN_URL", global = true, hide_env_values = true)]
    pub url: Option<String>,
    /// API token (prefer the env var: flags show up in `ps`)
    #[arg(long, env = "SEALRUN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA to trust (pins the control plane's certificate)
    #[arg(long, env = "SEALRUN_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of text: one object (streams: one object per line,
    /// the run's output as base64 chunks, then its end); times are *_ms
    #[arg(long, global = true)]
    pub json: bool,
    /// Saved profile to use (`sealrun login --profile NAME`; default `default`);
    /// --url/--token/--ca-cert and their env vars override its settings
    #[arg(long, env = "SEALRUN_PROFILE", global = true, value_name = "NAME")]
    pub profile: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (HTTPS API, queue, logs, audit trail)
    #[command(after_help = "\
Examples:
  sealrun server --data-dir /var/lib/sealrun --listen 0.0.0.0:8443
  sealrun server --config /etc/sealrun/server.toml
  sealrun server create-org --data-dir /var/lib/sealrun acme")]
    Server(ServerArgs),
    /// Run an agent inside a private network (dials out to the control plane)
    #[command(after_help = "\
Examples:
  sealrun agent --url https://sealrun.example:8443 --ca-cert ca.pem \\
      --enrollment-token \"$ENROLL\" --name db-net-1 --target prod-db
  sealrun agent --config /etc/sealrun/agent.toml
  sealrun agent --config /etc/sealrun/agent.toml --print-key-ids   # for target rekey")]
    Agent(AgentArgs),
    /// All-in-one local setup: control plane, agent, org, pool and a demo target
    #[command(after_help = "\
Examples:
  sealrun dev                      # data in ./.sealrun-dev, Ctrl-C to stop
  sealrun dev --data-dir /tmp/sr   # then: source /tmp/sr/dev.env")]
    Dev(DevArgs),
    /// Save the control plane URL, token and CA as a profile for later commands
    #[command(after_help = "\
The token is read from SEALRUN_TOKEN, else from stdin when it is not a
terminal, else from a hidden prompt. --token works too but puts the token in
shell history and `ps`, so login warns about it. It is checked against the
control plane before it is saved, in ~/.config/sealrun/profile.toml (mode
0600; a file others may read is refused; SEALRUN_PROFILE_FILE moves it).

Like ssh with a host key, login then offers the admin keys that signed the
org's certificates for pinning: compare each fingerprint with your admin
(`sealrun keys show` on their machine) and confirm it, or pass
--trust-admin FINGERPRINT. A pinned key is trusted for this profile as the
trust file's keys are: `secret set` seals only to target keys it certified.

Examples:
  sealrun login                             # saves SEALRUN_URL, SEALRUN_TOKEN, SEALRUN_CA_CERT
  sealrun login --profile staging           # the same, as the profile `staging`
  sealrun runs list --profile staging       # or: export SEALRUN_PROFILE=staging
  sealrun login --url https://sealrun.example:8443 --ca-cert ca.pem   # prompts
  pass show sealrun | sealrun login --url https://sealrun.example:8443")]
    Login(LoginArgs),
    /// Remove a saved profile (its token stays valid until revoked)
    #[command(after_help = "\
Examples:
  sealrun logout                      # the profile `default`
  sealrun logout --profile staging")]
    Logout(LogoutArgs),
    /// Show who the current token belongs to, and which profile gave it
    #[command(after_help = "\
Examples:
  sealrun whoami
  sealrun whoami --json")]
    Whoami(ClientOnly),
    /// Declare and list targets
    #[command(subcommand)]
    Target(TargetCommand),
    /// Set, list and remove write-only secrets (sealed on this machine)
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Run a command on a target and stream its (redacted) output
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// List, inspect, follow and cancel runs
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List, show, approve and reject runs waiting for approval (four eyes)
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Declare, list and show runbooks: named command templates with typed parameters
    #[command(subcommand)]
    Runbook(RunbookCommand),
    /// Issue, list and revoke API tokens (admin)
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, list and disable users: the people tokens belong to (admin)
    #[command(subcommand)]
    User(UserCommand),
    /// Groups of users, for approval rules (admin)
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage agent pools and enrollment tokens (admin)
    #[command(subcommand, name = "agent-pool")]
    AgentPool(PoolCommand),
    /// List and revoke agents (admin)
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Read, export and verify the tamper-evident audit trail
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Link a Slack workspace and its users, for the `/sealrun` slash command (admin)
    #[command(subcommand)]
    Slack(SlackCommand),
    /// Your signing key: signs your runs and approvals; an admin's certifies targets and users
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The admin keys this machine trusts to certify target keys
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  source <(sealrun completions bash)     # this shell (add it to ~/.bashrc)
  mkdir -p ~/.zfunc                      # and fpath+=(~/.zfunc) in ~/.zshrc
  sealrun completions zsh > ~/.zfunc/_sealrun
  mkdir -p ~/.config/fish/completions
  sealrun completions fish > ~/.config/fish/completions/sealrun.fish")]
    Completions {
        /// Shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const RUN_HELP: &str = "\
Exit status:
  0-255  the command's own exit code
  124    the run timed out (as timeout(1))
  125    sealrun could not run it (the request was refused, the image could
         not be pulled, the agent failed, ...), or it needed approval and was
         rejected (the reason is printed) or not approved in time
  126    the command could not be executed (not executable), as in a shell
  127    the command was not found in the image, as in a shell
  75     the run was lost: its agent vanished and it may or may not have run
         (EX_TEMPFAIL: check, then resubmit)
  130    the run was canceled (Ctrl-C, SIGTERM or SIGHUP cancel the remote run)
  69     the run expired: no agent took it within the control plane's queue
         TTL (default one hour), so it never ran (EX_UNAVAILABLE)
  74     sealrun lost contact with the control plane for 10 minutes while
         following: the run's state is unknown (it prints how to follow it)
  141    the reader of the output went away (`| head`): sealrun stops
         following quietly; the run goes on

A refused request (404 unknown run, 401/403 token) ends following at once
(125); a control plane that cannot be reached is retried with a one-line
notice. The submission itself carries an idempotency key: when it is not
confirmed (the control plane unreachable, or a 5xx saying it may or may not
have been applied), sealrun sends it again with the same key for about 30
seconds, with a one-line notice each time, and the command still runs at most
once.

Input: when sealrun's stdin is a pipe or a file, it is streamed to the
command's stdin (as docker run -i does) and the command reads end-of-file
where it ends; the input is never stored, only its size is recorded with the
run. If the input breaks off (sealrun is killed mid-way), the command is killed
rather than left to act on part of it (exit 125). A terminal or /dev/null
stdin, --no-stdin and --detach give the command an empty stdin. Use
--no-stdin in a `while read` loop, which would otherwise feed the loop's input
to the first run.

When the target's policy demands approval, the run waits as
pending_approval and sealrun says so (\"run X is waiting for approval (0 of 2
from group dba)\") and keeps following: once enough other people approve it
(`sealrun approvals approve X`) it is queued and streams as usual. Ctrl-C
withdraws it. --break-glass \"reason\" skips approval if the policy lets your
role (audited as run.break_glass, flagged for review).

When no connected agent serves the target, sealrun says so at once; the run
then waits in the queue for an agent (--wait-for-agent, the default) until it
expires, or is refused at once (--no-wait, exit 125).

The command's output is written as it comes, control characters included (as
docker logs does), so colours and progress bars work. --sanitize shows them
visibly instead (\\e, \\r, \\x07; newlines and tabs kept): use it for output you
do not trust. Everything else sealrun prints (error lines, tables, names)
always shows such characters visibly.

Examples:
  sealrun run --target demo -- uname -a
  printf %s \"$PW\" | sealrun secret set --target demo DB_PASSWORD   # once
  sealrun run --target demo --secret DB_PASSWORD --env PGHOST=db -- sh -c 'echo $DB_PASSWORD'
  echo 'select 1;' | sealrun run --target demo -- cat
  sealrun run --target demo -- sh -c 'exit 3'           # exits 3
  sealrun run --target demo --timeout 2s -- sleep 30    # exits 124
  sealrun run --target demo --detach -- sleep 30        # prints the run id
  sealrun run --target prod-db -- psql -c 'select count(*) from users'
  sealrun run --target prod-db -- psql < migration.sql
  sealrun run --target prod-db --timeout 10m --image postgres:17-alpine -- pg_dump --schema-only";

#[derive(Debug, Args)]
pub struct ClientOnly {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// TOML config file (flags and SEALRUN_* env vars override it); read by
    /// create-org and migrate-store too, for data_dir and database_url
    #[arg(long, env = "SEALRUN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for the database, TLS material and the first admin token
    #[arg(long, env = "SEALRUN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A shared PostgreSQL database (postgres://USER:PASSWORD@HOST/DB) for
    /// several replicas, instead of SQLite in the data directory; over TLS
    /// with ?sslmode=verify-full&sslrootcert=CA.pem; prefer the environment
    /// variable or the config file (a flag is visible in `ps`)
    #[arg(long, env = "SEALRUN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address to listen on
    #[arg(long, env = "SEALRUN_LISTEN")]
    pub listen: Option<String>,
    /// TLS certificate chain (PEM); without it a self-signed CA is generated
    #[arg(long, env = "SEALRUN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, env = "SEALRUN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names / IPs for the generated certificate (repeatable)
    #[arg(long = "hostname", env = "SEALRUN_HOSTNAMES", value_delimiter = ',')]
    pub hostnames: Vec<String>,
    /// Name of the org created on first start
    #[arg(long, env = "SEALRUN_ORG")]
    pub org: Option<String>,
    /// On first start, write the one-time admin token to this file (mode 0600)
    #[arg(long, env = "SEALRUN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds without a heartbeat before a run's lease lapses (run becomes `lost`);
    /// default 60, at least 20 (two heartbeats). Judged only once the server has
    /// been up, and able to write, for that long: outages lose no run
    #[arg(long, env = "SEALRUN_LEASE_TTL_SECS")]
    pub lease_ttl_secs: Option<u64>,
    /// Seconds a run may wait in the queue for an agent before it expires
    /// (default 3600)
    #[arg(long, env = "SEALRUN_QUEUE_TTL_SECS")]
    pub queue_ttl_secs: Option<u64>,
    /// Per-run cap on stored output, in bytes
    #[arg(long, env = "SEALRUN_MAX_LOG_BYTES")]
    pub max_log_bytes: Option<u64>,
    /// Maximum connected agents per org
    #[arg(long, env = "SEALRUN_MAX_AGENTS_PER_ORG")]
    pub max_agents_per_org: Option<u32>,
    /// Serve /metrics (and /health) over plain HTTP on this separate
    /// address, without a token; bind it to loopback or an internal network
    #[arg(long, env = "SEALRUN_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Serve /metrics on the API address to this file's token only
    /// (Authorization: Bearer; at least 16 characters)
    #[arg(long, env = "SEALRUN_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Slack's Web API, where approval requests are posted (default
    /// https://slack.com/api/; http:// only to a loopback address)
    #[arg(long, env = "SEALRUN_SLACK_API_URL")]
    pub slack_api_url: Option<String>,
    /// Client connections kept at once (default 4096; lowered to fit the
    /// open-file limit)
    #[arg(long, env = "SEALRUN_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Client connections kept at once from one address (default 256)
    #[arg(long, env = "SEALRUN_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Create another org in the data directory and print its admin token (offline)
    #[command(after_help = "\
Examples:
  sealrun server create-org --data-dir /var/lib/sealrun acme   # prints acme's admin token")]
    CreateOrg {
        /// Directory of the control plane's data (default ./sealrun-data, as
        /// the server's)
        #[arg(long, env = "SEALRUN_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The shared PostgreSQL database, when the control plane uses one
        #[arg(long, env = "SEALRUN_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Org name
        name: String,
    },
    /// Make the files the replicas of a shared database must hold alike: the
    /// certificate clients pin (and its CA) and the key Slack secrets are
    /// sealed to (offline; run again to renew the certificate)
    #[command(after_help = "\
Examples:
  sealrun server replica-files --out ./secrets --hostname lb --hostname sealrun.example.com
  # each replica: tls_cert = secrets/server.pem, tls_key = secrets/server.key,
  #               secrets/slack.key copied into its data directory
  # agents and CLIs: --ca-cert secrets/ca.pem (keep secrets/ca.key off the replicas)")]
    ReplicaFiles {
        /// Directory to write them to (created if missing; files already
        /// there are kept: the CA and Slack key are reused)
        #[arg(long)]
        out: PathBuf,
        /// A name or address clients reach the replicas by, besides
        /// localhost (repeatable, or comma-separated); give them all each time
        #[arg(long = "hostname", value_delimiter = ',')]
        hostnames: Vec<String>,
    },
    /// Copy a SQLite installation into an empty PostgreSQL database, every
    /// org's audit chain verified on the copy (offline: stop the server first)
    #[command(after_help = "\
Examples:
  SEALRUN_DATABASE_URL=postgres://sealrun:PASSWORD@db/sealrun \\
    sealrun server migrate-store --from /var/lib/sealrun/sealrun.db")]
    MigrateStore {
        /// The installation to copy: its data directory or DATA_DIR/sealrun.db
        /// (refused while a server uses the directory)
        #[arg(long)]
        from: PathBuf,
        /// The empty PostgreSQL database to fill; prefer SEALRUN_DATABASE_URL
        /// or the config file's database_url (a flag is visible in `ps`)
        #[arg(long, env = "SEALRUN_DATABASE_URL", hide_env_values = true)]
        to: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML config file (flags and SEALRUN_* env vars override it)
    #[arg(long, env = "SEALRUN_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Control plane URL
    #[arg(long, env = "SEALRUN_URL")]
    pub url: Option<String>,
    /// PEM file of the CA to trust
    #[arg(long, env = "SEALRUN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Directory for the agent token and target keys
    #[arg(long, env = "SEALRUN_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Enrollment token (needed on first start only)
    #[arg(long, env = "SEALRUN_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,
    /// Agent name (default: the host name)
    #[arg(long, env = "SEALRUN_AGENT_NAME")]
    pub name: Option<String>,
    /// Target served, as NAME or NAME=KEYFILE (repeatable)
    #[arg(long = "target", env = "SEALRUN_AGENT_TARGETS", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Runs executed at once
    #[arg(long, env = "SEALRUN_AGENT_CONCURRENCY")]
    pub concurrency: Option<u32>,
    /// Docker endpoint (default: the local socket)
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Seconds running commands get to finish on SIGTERM before they are killed
    #[arg(long, env = "SEALRUN_AGENT_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Agent-side cap on any run's timeout, in seconds
    #[arg(long, env = "SEALRUN_AGENT_MAX_RUN_TIMEOUT_SECS")]
    pub max_run_timeout_secs: Option<u64>,
    /// Containers kept started and waiting, per served target, so that a run
    /// skips Docker's create and start (each is used for one run, then
    /// destroyed; default 0: none)
    #[arg(long, env = "SEALRUN_AGENT_POOL_SIZE")]
    pub pool_size: Option<usize>,
    /// Seconds after which a waiting container that no run took is replaced
    /// (default 300)
    #[arg(long, env = "SEALRUN_AGENT_POOL_MAX_AGE_SECS")]
    pub pool_max_age_secs: Option<u64>,
    /// The static sealrun-init shim (scripts/build-init.sh builds it; default:
    /// ../lib/sealrun/sealrun-init from this binary's directory, then
    /// /usr/local/lib/sealrun/, /usr/lib/sealrun/)
    #[arg(long, env = "SEALRUN_AGENT_INIT")]
    pub init_binary: Option<PathBuf>,
    /// The admin keys this agent trusts (TOML: admins = ["ed25519:..."], as
    /// `sealrun trust add` writes): it then runs only runs signed by users
    /// they certified, within the targets' certified policy. Without it the
    /// agent runs whatever the control plane hands it
    #[arg(long, env = "SEALRUN_AGENT_TRUST_FILE")]
    pub trust_file: Option<PathBuf>,
    /// Print the key id of each served target's key and exit (creating a
    /// missing key as the agent would): what `sealrun target rekey --key-id`
    /// takes. Dials nothing; refused while an agent uses the state directory
    #[arg(long)]
    pub print_key_ids: bool,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the dev control plane and agent keep their state
    #[arg(long, default_value = ".sealrun-dev")]
    pub data_dir: PathBuf,
    /// Address of the dev control plane
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Image of the demo target (built FROM scratch with static busybox if absent)
    #[arg(long, default_value = sealrun_agent::image::BASE_IMAGE)]
    pub image: String,
    /// The agent's static sealrun-init shim (as `sealrun agent --init-binary`)
    #[arg(long, env = "SEALRUN_AGENT_INIT")]
    pub init_binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Pin this admin key (its fingerprint, or the key) for the profile, after
    /// checking it with your admin; repeat for several (asked on a terminal)
    #[arg(long = "trust-admin", value_name = "FINGERPRINT")]
    pub trust_admin: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Create or replace a target
    #[command(after_help = "\
Examples:
  sealrun target create prod-db --image postgres:16 --network db-net --private-network dc1
  sealrun target create tools --image busybox --allow-image 'registry.example.com/ops/*'
  sealrun target create vault-ops --image busybox --runbook-only-secret VAULT_ROOT_TOKEN")]
    Create(TargetCreateArgs),
    /// List targets
    #[command(after_help = "\
Examples:
  sealrun target list
  sealrun target list --json")]
    List(ClientOnly),
    /// Show one target, with its public key id
    #[command(after_help = "\
Examples:
  sealrun target show demo")]
    Show {
        /// Target name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create or replace every target declared in a TOML file
    #[command(after_help = "\
Examples:
  sealrun agent-pool create dc1        # once: the file's dc1 targets need it
  sealrun target apply -f examples/targets.toml")]
    Apply {
        /// TOML file with [[target]] tables
        #[arg(short, long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Certify the target's key with your admin key, so `secret set` seals to it (admin)
    #[command(after_help = "\
Signs, with your admin key (`sealrun keys init`), that the key the target is
pinned to (the key its agent proved it holds) is the target's, for --days,
with the run-report key its agents sign run outcomes with, and its
declaration and policy as you reviewed them. Check both keys against
`sealrun agent --print-key-ids` on the agent's host first. On a terminal you
are shown what is not given and asked to confirm it; otherwise pass --key-id,
--report-key and -f (your targets file). `target create` and `target apply` by
an admin whose key this machine trusts re-certify a changed declaration. After a re-key, certify
the new key: until then `secret set` refuses to seal to it. Audited as
target.certified.

Examples:
  sealrun target show demo      # the key id it is pinned to
  sealrun target trust demo --key-id k1_0123456789abcdef0123456789abcdef \\
      --report-key ak1_0123456789abcdef -f examples/targets.toml")]
    Trust {
        /// Target name
        name: String,
        /// The key id you checked (asked for on a terminal otherwise)
        #[arg(long)]
        key_id: Option<String>,
        /// The run-report key fingerprint you checked (`--print-key-ids`)
        #[arg(long, value_name = "FINGERPRINT")]
        report_key: Option<String>,
        /// The targets file (as for `target apply`) holding the declaration to certify
        #[arg(short, long)]
        file: Option<PathBuf>,
        /// How long the certificate is valid
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Your admin key file
        #[arg(long, env = "SEALRUN_SIGNING_KEY_FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move a target to another agent key (a new or rebuilt agent) (admin)
    #[command(after_help = "\
From now on only an agent presenting exactly KEY_ID may serve the target: its
key is pinned when that agent connects, so no other agent of the pool can take
the target first. Agents serving it with the old key get none of its runs any
more (runs they are running finish; queued runs wait for the new agent).

The new key cannot open secrets sealed to the old one: while the target has
any, rekey refuses and names them; --drop-secrets deletes them (it prints their
names: set each again with `sealrun secret set` once the new agent is
connected). Audited as target.rekeyed with both key ids.

KEY_ID is in the new agent's refusal (\"... this agent presented key k1_...\"),
in the audit trail (target.key_mismatch), or printed on the agent's host by
`sealrun agent --print-key-ids` with the agent's flags or config.

Examples:
  sealrun target rekey prod-db --key-id k1_0123456789abcdef0123456789abcdef
  sealrun target rekey prod-db --key-id k1_fedcba9876543210fedcba9876543210 --drop-secrets")]
    Rekey {
        /// Target name
        name: String,
        /// Id of the new agent's key for this target (k1_ + 32 hex digits)
        #[arg(long)]
        key_id: String,
        /// Delete the secrets sealed to the old key (the new key cannot open them)
        #[arg(long)]
        drop_secrets: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a target (its secrets go with it)
    #[command(after_help = "\
Examples:
  sealrun target rm prod-db")]
    Rm {
        /// Target name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct TargetCreateArgs {
    /// Target name
    pub name: String,
    /// Default image of its runs
    #[arg(long)]
    pub image: String,
    /// Another image its runs may name with --image (repeatable): an exact
    /// reference, a digest (repo@sha256:...), or a repository prefix ending
    /// in /* (registry.example.com/team/*). Without it, only --image's
    #[arg(long = "allow-image", value_name = "IMAGE")]
    pub allowed_images: Vec<String>,
    /// Label of the private network it lives in
    #[arg(long, default_value = "")]
    pub private_network: String,
    /// Agent pool that serves it
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Docker network for its containers (default: no network at all)
    #[arg(long)]
    pub network: Option<String>,
    /// Memory limit in MiB
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u64,
    /// CPU limit in thousandths of a core
    #[arg(long, default_value_t = 1000)]
    pub millicpus: u64,
    /// Process limit
    #[arg(long, default_value_t = 128)]
    pub pids: u64,
    /// Default and maximum run timeout (e.g. 90s, 10m, 1h)
    #[arg(long, default_value = "1h", value_parser = parse_duration_secs)]
    pub timeout: u64,
    /// User to run as inside the container (default 65534:65534)
    #[arg(long)]
    pub user: Option<String>,
    /// Allow only runbooks here: refuse ad-hoc commands (policy.ad_hoc = false)
    #[arg(long)]
    pub no_ad_hoc: bool,
    /// A secret only runbooks may use: ad-hoc commands naming it are refused
    /// (repeatable; policy.runbook_only_secrets)
    #[arg(long = "runbook-only-secret", value_name = "NAME")]
    pub runbook_only_secrets: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Seal a secret on this machine and upload the ciphertext
    #[command(after_help = "\
The value is read from stdin (a hidden prompt on a terminal). It is sealed
here with the target's public key; the control plane never sees it.

Examples:
  printf %s \"$PW\" | sealrun secret set --target demo DB_PASSWORD
  sealrun secret set --target demo DB_PASSWORD     # prompts")]
    Set {
        /// Target the secret belongs to
        #[arg(long)]
        target: String,
        /// Secret name (exposed to commands as this env var)
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a target's secrets (names, versions and key ids only)
    #[command(after_help = "\
Examples:
  sealrun secret list --target demo")]
    List {
        /// Target
        #[arg(long)]
        target: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a secret
    #[command(after_help = "\
Examples:
  sealrun secret rm --target demo DB_PASSWORD")]
    Rm {
        /// Target
        #[arg(long)]
        target: String,
        /// Secret name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target to run on (with --runbook: needed only if the runbook has several)
    #[arg(long, required_unless_present = "runbook")]
    pub target: Option<String>,
    /// Run this runbook (an admin's template) instead of a command of your own
    #[arg(long, conflicts_with_all = ["argv", "secrets", "env", "image"])]
    pub runbook: Option<String>,
    /// A runbook parameter NAME=VALUE (repeatable); the control plane checks
    /// it against the runbook's rule and renders the command
    #[arg(long = "param", value_parser = parse_env_pair, requires = "runbook")]
    pub params: Vec<(String, String)>,
    /// Secret to expose as an env var (repeatable)
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Plain env var K=V (repeatable)
    #[arg(long = "env", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Timeout (e.g. 90s, 10m, 1h); default: the target's
    #[arg(long, value_parser = parse_duration_secs)]
    pub timeout: Option<u64>,
    /// Image to use instead of the target's default
    #[arg(long)]
    pub image: Option<String>,
    /// Print the run id and return at once
    #[arg(long)]
    pub detach: bool,
    /// Show control characters in the output visibly (\e, \r, \x07) instead
    /// of letting the terminal act on them; newlines and tabs are kept
    #[arg(long)]
    pub sanitize: bool,
    /// Refuse the run at once (exit 125) if no connected agent serves the target
    #[arg(long, conflicts_with = "wait_for_agent")]
    pub no_wait: bool,
    /// Queue the run even if no connected agent serves the target yet: it
    /// waits for one until it expires (the default)
    #[arg(long)]
    pub wait_for_agent: bool,
    /// Give the command an empty stdin instead of this one's (the default
    /// when stdin is a terminal or /dev/null, and with --detach)
    #[arg(long)]
    pub no_stdin: bool,
    /// Skip the approval the target's policy demands, saying why (only roles
    /// the policy's break_glass_roles lists; loudly audited, flagged for review)
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
    /// The command and its arguments (run directly, not through a shell)
    #[arg(last = true, required_unless_present = "runbook", num_args = 1..)]
    pub argv: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum RunbookCommand {
    /// Declare or change every runbook in a TOML file (admin): all or none
    #[command(after_help = "\
Each [[runbook]] names its targets, an argv template with {param}
placeholders ({{ and }} for literal braces), typed [runbook.params.NAME]
(string with a whole-value pattern, enum, integer with bounds, boolean), the
secrets it injects, and optionally an image, a timeout, an approval rule and
allow_slack = true (Slack may run it although no person signs it). A runbook
whose spec changed gets a new version; an unchanged one keeps its version.

If your signing key is an admin key this machine trusts (`sealrun trust
list`), each new version is also certified with it (`sealrun runbook trust`):
agents with a trust file run a runbook only as an admin certified it.

Examples:
  sealrun target apply -f examples/targets.toml     # their targets first (prod-db, k8s-prod)
  sealrun runbook apply -f examples/runbooks.toml
  sealrun run --runbook restart-api --param service=web --detach")]
    Apply {
        /// TOML file with [[runbook]] tables
        #[arg(short, long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List runbooks (their latest versions)
    #[command(after_help = "\
Examples:
  sealrun runbook list
  sealrun runbook list --json")]
    List(ClientOnly),
    /// Show a runbook: its template, parameters and rules, secrets, targets
    #[command(after_help = "\
Examples:
  sealrun runbook show restart-api
  sealrun runbook show restart-api --version 1",
        // --version is the runbook's here, not sealrun's.
        disable_version_flag = true)]
    Show {
        /// Runbook name
        name: String,
        /// An older version instead of the latest
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Certify a runbook's latest definition with your admin key (admin)
    #[command(after_help = "\
Signs, with your admin key (`sealrun keys init --admin`), the runbook's latest
definition: its template, parameter rules, secrets, image, timeout, approval
rule and allow_slack. Agents with a trust file run a runbook only as an admin
certified it, and refuse a definition older than one they already ran. A new
version needs certifying again (`runbook apply` does it when your key is a
trusted admin key). Audited as runbook.certified.

Signed is the definition you reviewed: from your runbooks file (-f), or, on a
terminal, the control plane's latest shown in full for you to confirm. The
control plane stores it only on a latest version with exactly that definition.

Examples:
  sealrun runbook show restart-api     # read what you certify
  sealrun runbook trust restart-api -f examples/runbooks.toml")]
    Trust {
        /// Runbook name
        name: String,
        /// The runbooks file (as for `runbook apply`) holding the definition to certify
        #[arg(short, long)]
        file: Option<PathBuf>,
        /// How long the certificate is valid
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Your admin key file
        #[arg(long, env = "SEALRUN_SIGNING_KEY_FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List recent runs
    #[command(after_help = "\
Examples:
  sealrun runs list
  sealrun runs list --status failed --target demo --limit 10")]
    List {
        /// Only runs in this status
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this target
        #[arg(long)]
        target: Option<String>,
        /// How many
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one run
    #[command(after_help = "\
Examples:
  id=$(sealrun run --target demo --detach -- echo hi)   # or an ID from `sealrun runs list`
  sealrun runs show \"$id\"
  sealrun runs show \"$id\" --json")]
    Show {
        /// Run id
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a run's redacted output
    #[command(after_help = "\
The output is written raw, control characters included, as docker logs does;
--sanitize shows them visibly instead (newlines and tabs kept).

--json prints one JSON object per line, with or without --follow: each chunk
as {\"chunk\":{\"seq\":0,\"stream\":\"stdout\",\"data\":\"<base64>\"}}, then, once the
run has ended, {\"end\":{\"status\":\"succeeded\",\"exit_code\":0,\"error\":null}}.
Without --follow the output so far is printed; no end line means the run is
still going. JSON needs no sanitizing.

Examples:
  id=$(sealrun run --target demo --detach -- sh -c 'echo started; sleep 1; echo done')
  sealrun runs logs \"$id\" --follow     # until the run ends
  sealrun runs logs \"$id\" --sanitize   # output you do not trust
  sealrun runs logs \"$id\" --json       # one JSON object per line")]
    Logs {
        /// Run id
        id: String,
        /// Keep streaming until the run ends
        #[arg(long, short)]
        follow: bool,
        /// Show control characters in the output visibly (\e, \r, \x07)
        /// instead of letting the terminal act on them
        #[arg(long)]
        sanitize: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a queued or running run
    #[command(after_help = "\
Examples:
  id=$(sealrun run --target demo --detach -- sleep 600)
  sealrun runs cancel \"$id\"")]
    Cancel {
        /// Run id
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests (default: those waiting)
    #[command(after_help = "\
Examples:
  sealrun approvals list
  sealrun approvals list --status rejected
  sealrun approvals list --break-glass     # runs that skipped approval, to review")]
    List {
        /// Only requests whose run is in this status (default pending_approval)
        #[arg(long)]
        status: Option<String>,
        /// Runs whose submitter skipped approval by break-glass instead
        #[arg(long)]
        break_glass: bool,
        /// How many
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the full spec a request asks to approve, its digest, who approved
    #[command(after_help = "\
Environment values are shown (they are not secrets); secrets by name only.
The digest is SHA-256 over the whole spec; approving sends it back, so an
approval never applies to another spec.

Examples:
  sealrun target apply -f examples/targets.toml   # prod-db: ad-hoc runs need 2 approvals from dba
  id=$(sealrun run --target prod-db --detach -- psql -c 'select 1')
  sealrun approvals show \"$id\"
  sealrun approvals show \"$id\" --json")]
    Show {
        /// Run id
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a run (never your own): binds the digest of the spec shown
    #[command(after_help = "\
Fetches the request, checks that its digest is the digest of the spec it
shows, and approves exactly that digest: a run whose spec is not that one is
refused (409). Each person counts once, whichever token they use.

What you approve is what you reviewed: --digest takes the digest `approvals
show` printed, and nothing is approved if the run is not that one now; on a
terminal without it, the run is shown and you confirm it. Otherwise the run is
approved as fetched, and what was approved is said on stderr.

Examples:
  sealrun approvals list                          # what waits, and from whom
  sealrun approvals approve run_0123456789abcdef --comment \"checked with Bob\"")]
    Approve {
        /// Run id
        id: String,
        /// The digest `approvals show` showed you: approved only if the run
        /// is still exactly that (on a terminal you are shown it otherwise)
        #[arg(long)]
        digest: Option<String>,
        /// A note for the audit trail
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a run (it never runs), saying why
    #[command(after_help = "\
Examples:
  sealrun approvals reject run_0123456789abcdef --reason \"use the migrate runbook\"")]
    Reject {
        /// Run id
        id: String,
        /// Why (mandatory; the submitter sees it)
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Auditor,
}

impl RoleArg {
    /// The wire role.
    pub fn role(self) -> sealrun_wire::admin::Role {
        use sealrun_wire::admin::Role;
        match self {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user (its value is shown once)
    #[command(after_help = "\
A token belongs to a user and acts with the user's role. --user issues one
for an existing user (sealrun user create); --role with --name is the short
way: it creates user NAME with that role, or issues another token for NAME if
it exists with that role (a user has one role: another is refused).

Without --expires-in a token works until it is revoked. A revoked or expired
token is refused at once, also by a log stream it is following; disabling its
user revokes it too.

Examples:
  sealrun token create --role operator --name alice      # creates user alice
  sealrun token create --user alice --name alice-laptop  # another token for alice
  sealrun token create --role auditor --name soc --expires-in 90d")]
    Create {
        /// The user it is for (an existing user)
        #[arg(long, conflicts_with = "role")]
        user: Option<String>,
        /// Without --user: the role of user --name (created if missing)
        #[arg(long, value_enum, required_unless_present = "user")]
        role: Option<RoleArg>,
        /// Label (with --role: also the user's name; with --user: defaults
        /// to the user's name)
        #[arg(long, required_unless_present = "user")]
        name: Option<String>,
        /// Stop working after this long (90s, 10m, 12h, 30d; at most 10 years)
        #[arg(long, value_parser = parse_duration_secs)]
        expires_in: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tokens (never their values)
    #[command(after_help = "\
Examples:
  sealrun token list")]
    List(ClientOnly),
    /// Revoke a token
    #[command(after_help = "\
Examples:
  sealrun token list                    # the ID of the token to revoke
  sealrun token revoke <token-id>")]
    Revoke {
        /// Token id
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool
    #[command(after_help = "\
Examples:
  sealrun agent-pool create eu-west
  sealrun agent-pool enroll-token eu-west   # for its agents")]
    Create {
        /// Pool name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List pools
    #[command(after_help = "\
Examples:
  sealrun agent-pool list")]
    List(ClientOnly),
    /// Issue an enrollment token for agents of a pool (shown once)
    #[command(after_help = "\
A token enrolls one agent unless --max-agents or --unlimited says otherwise;
a registration the control plane refuses (a name in use, a key the target is
not pinned to) does not count. It stops enrolling at its expiry either way.

Examples:
  sealrun agent-pool enroll-token default
  sealrun agent-pool enroll-token default --max-agents 3 --ttl 2h")]
    EnrollToken {
        /// Pool name
        #[arg(default_value = "default")]
        pool: String,
        /// How many agents it may enroll (default 1)
        #[arg(long, conflicts_with = "unlimited")]
        max_agents: Option<u32>,
        /// Enroll any number of agents until it expires
        #[arg(long)]
        unlimited: bool,
        /// How long it enrolls (90s, 10m, 12h, 30d; default: the server's, 24 h)
        #[arg(long, value_parser = parse_duration_secs)]
        ttl: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents
    #[command(after_help = "\
Examples:
  sealrun agents list")]
    List(ClientOnly),
    /// Revoke an agent's token
    #[command(after_help = "\
Examples:
  sealrun agents list                   # the ID of the agent to revoke
  sealrun agents revoke <agent-id>")]
    Revoke {
        /// Agent id
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print a page of the audit trail, oldest first
    #[command(after_help = "\
A full page ends with a hint on stderr to the next one, e.g.
  more: sealrun audit list --after 100 --limit 100
--json prints the page as one object ({\"entries\": [...], \"next_after\": N}),
each entry's detail as a JSON value.

Examples:
  sealrun audit list                       # entries 1-100
  sealrun audit list --after 100 --limit 1000
  sealrun audit list --json --limit 10")]
    List {
        /// Only entries after this sequence number
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many (at most 1000)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify the hash chain of the live trail, or of an exported file offline
    #[command(after_help = "\
The control plane re-hashes only the entries appended since its last
verification that found the trail intact (and checks that entry is still
there with the same hash); --full re-hashes every entry, which also finds an
older entry edited in place. Run --full now and then, and keep exported
heads elsewhere: whoever can edit the database can edit its checkpoint too.

With --witness this CLI also remembers the last entry it saw (per control
plane and org, next to its profile file) and checks that the trail still
extends it: an entry edited with every later hash recomputed, which the
control plane's own verification cannot see, or entries cut from the end,
fail the check (exit 1).

With --file it also checks each run's outcome (run.finished) against the
report its agent signed, with the report key of the target's certificate
(target.certified) from an admin this machine trusts: an outcome rewritten
with every hash recomputed fails too (exit 1).

Examples:
  sealrun audit verify                    # asks the control plane
  sealrun audit verify --full             # every entry, from the first
  sealrun audit verify --witness          # and the trail extends what this CLI saw
  sealrun audit export -o audit.jsonl     # then, offline, no server needed:
  sealrun audit verify --file audit.jsonl")]
    Verify {
        /// An export written by `sealrun audit export`
        #[arg(long)]
        file: Option<PathBuf>,
        /// Re-hash every entry of the live trail, not only those appended
        /// since the last verification
        #[arg(long, conflicts_with = "file")]
        full: bool,
        /// Also check that the trail extends the last entry this CLI saw,
        /// and remember the newest
        #[arg(long, conflicts_with = "file")]
        witness: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write the whole trail as JSON lines
    #[command(after_help = "\
When done, it prints on stderr (stdout may be the export itself) how many
entries it wrote and the chain's head hash, e.g.
  exported 42 audit entries to audit.jsonl, head 3f2a...
Keep the head hash elsewhere: `sealrun audit verify --file` of this export
reports the same head, and the live trail must always extend it.

Examples:
  sealrun audit export -o audit.jsonl && sealrun audit verify --file audit.jsonl
  sealrun audit export > audit.jsonl     # the same, the summary on stderr")]
    Export {
        /// Output file (default: stdout)
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Parses `90`, `90s`, `10m`, `2h`, `30d` into seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 90s, 10m or 1h)"))?;
    n.checked_mul(mult)
        .filter(|&secs| secs > 0)
        .ok_or_else(|| format!("`{s}` is not a positive duration"))
}

/// Parses `K=V`.
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not K=V")),
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (then issue it tokens with `token create --user`)
    #[command(after_help = "\
A user is a person (or a program) with one role; its tokens and the Slack
users linked to it act with that role, and count as the same person for
approvals.

Examples:
  sealrun user create dave --role operator
  sealrun token create --user dave --name dave-laptop")]
    Create {
        /// Its name, unique in the org
        name: String,
        /// What its tokens may do
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List users: role, working tokens, disabled
    #[command(after_help = "\
Examples:
  sealrun user list")]
    List(ClientOnly),
    /// Certify a user's signing key, role and groups with your admin key
    #[command(after_help = "\
The user makes their key with `sealrun keys init` and gives you the public key
out of band; compare its fingerprint with them. You sign (org, user, role,
groups, key, expiry) on this machine: their runs and approvals count with
agents that trust your key. Certify again after changing their role or groups.

Passkeys: a user registers one in the web console (Passkeys page), which
shows its fingerprint (pk1_...); compare it with them and pass it with
--passkey (with --key, as above). Their approvals in the console then count
as signed ones. Certifying again without --passkey keeps the passkeys of
their current certificate (if a key you trust signed it); --drop-passkeys
certifies none. A passkey is registered through the control plane: certify
one only while you trust the control plane (ARCHITECTURE.md, threat model).

Examples:
  sealrun keys init --key-file dave.key    # on dave's machine; he sends the public key
  sealrun user certify dave --key \"$(sealrun keys show --key-file dave.key)\" --days 90")]
    Certify {
        /// The user's name
        name: String,
        /// Their public signing key, as `sealrun keys show` prints it
        #[arg(long)]
        key: String,
        /// A passkey they registered in the web console, by its fingerprint
        /// (repeat for several)
        #[arg(long = "passkey", value_name = "FINGERPRINT")]
        passkeys: Vec<String>,
        /// Certify no passkey (without --passkey, those of their current
        /// certificate are kept when a key you trust signed it)
        #[arg(long, conflicts_with = "passkeys")]
        drop_passkeys: bool,
        /// How long the certificate is valid
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Your admin signing key
        #[arg(long, env = "SEALRUN_SIGNING_KEY_FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a user: all its tokens are revoked at once
    #[command(after_help = "\
Its tokens stop working at once, also for log streams they are following; a
Slack user linked to it is refused like an unlinked one. It cannot be undone:
create another user.

Examples:
  sealrun user disable dave")]
    Disable {
        /// The user's name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group, optionally with members
    #[command(after_help = "\
Examples:
  sealrun group create dba --member alice --member dave")]
    Create {
        /// Its name, unique in the org
        name: String,
        /// A user to put in it (repeat for more)
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List groups and their members
    #[command(after_help = "\
Examples:
  sealrun group list")]
    List(ClientOnly),
    /// Show a group's members
    #[command(after_help = "\
Examples:
  sealrun group show dba")]
    Show {
        /// The group's name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add users to a group
    #[command(after_help = "\
Examples:
  sealrun group add dba soc")]
    Add {
        /// The group's name
        name: String,
        /// Users to add
        #[arg(required = true)]
        users: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove users from a group
    #[command(after_help = "\
Examples:
  sealrun group remove dba soc dave")]
    Remove {
        /// The group's name
        name: String,
        /// Users to remove
        #[arg(required = true)]
        users: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a group (its members stay users)
    #[command(after_help = "\
Examples:
  sealrun group delete dba")]
    Delete {
        /// The group's name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SlackCommand {
    /// Link a Slack workspace, or replace its signing secret
    #[command(after_help = "\
The signing secret (Slack app > Basic Information > App Credentials) is read
from stdin (a hidden prompt on a terminal). The control plane keeps it sealed
at rest and never shows it again.

Examples:
  printf %s \"$SLACK_SIGNING_SECRET\" | sealrun slack link-workspace --team-id T0123ABCD
  sealrun slack link-workspace --team-id T0123ABCD     # prompts")]
    LinkWorkspace {
        /// Slack team id (T...)
        #[arg(long)]
        team_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List linked workspaces (team ids and dates; never secrets)
    #[command(after_help = "\
Examples:
  sealrun slack workspaces")]
    Workspaces(ClientOnly),
    /// Let a Slack user use /sealrun as a sealrun user
    #[command(after_help = "\
The Slack user acts as the sealrun user given with --as, with its role, and
counts as the same person as its tokens (for approvals). operator and admin
may run and cancel; auditor may only use status, logs and help. A link to a
disabled user works no more. (--name with --role, as before users existed,
links to user NAME, created with that role if it does not exist.)

Examples:
  sealrun slack link-user --team-id T0123ABCD --user U0456EFGH --as alice
  sealrun slack link-user --team-id T0123ABCD --user U0789IJKL --name soc --role auditor")]
    LinkUser {
        /// Slack team id
        #[arg(long)]
        team_id: String,
        /// Slack user id (U... or W...; Slack profile > ... > Copy member ID)
        #[arg(long)]
        user: String,
        /// The sealrun user they are
        #[arg(long = "as", value_name = "USER", conflicts_with_all = ["name", "role"], required_unless_present_all = ["name", "role"])]
        as_user: Option<String>,
        /// Without --as: the sealrun user's name (created with --role if missing)
        #[arg(long, requires = "role")]
        name: Option<String>,
        /// Without --as: that user's role
        #[arg(long, value_enum, requires = "name")]
        role: Option<RoleArg>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List linked Slack users
    #[command(after_help = "\
Examples:
  sealrun slack users")]
    Users(ClientOnly),
    /// Unlink a Slack user
    #[command(after_help = "\
Examples:
  sealrun slack unlink-user --team-id T0123ABCD --user U0456EFGH")]
    UnlinkUser {
        /// Slack team id
        #[arg(long)]
        team_id: String,
        /// Slack user id
        #[arg(long)]
        user: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Post approval requests to a channel, with Approve / Reject buttons
    #[command(after_help = "\
Every run of the org that waits for approval is posted to CHANNEL of the
workspace, as the Slack app's bot, with the spec being approved and Approve /
Reject buttons; the message shows the outcome once decided, and the requester
(if linked) is told in a direct message. A click counts as the clicker's
linked sealrun user, under the same rules as `sealrun approvals approve`.

The bot token (Slack app > OAuth & Permissions > Bot User OAuth Token, xoxb-...;
scope chat:write; invite the bot to the channel) is read from stdin (a hidden
prompt on a terminal), sealed at rest and never shown again. The app's
Interactivity Request URL must be https://<server>/v1/integrations/slack/interactions
(examples/slack-app-manifest.yaml).

Examples:
  printf %s \"$SLACK_BOT_TOKEN\" | sealrun slack set-approvals --team-id T0123ABCD --channel C0APPROVE
  sealrun slack clear-approvals --team-id T0123ABCD")]
    SetApprovals {
        /// Slack team id (T...)
        #[arg(long)]
        team_id: String,
        /// The approvers' channel id (C... or G...; channel details > About)
        #[arg(long)]
        channel: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop posting approval requests to Slack (the bot token is forgotten)
    #[command(after_help = "\
Examples:
  sealrun slack clear-approvals --team-id T0123ABCD")]
    ClearApprovals {
        /// Slack team id (T...)
        #[arg(long)]
        team_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unlink a workspace and every user linked in it
    #[command(after_help = "\
Examples:
  sealrun slack unlink-workspace T0123ABCD")]
    UnlinkWorkspace {
        /// Slack team id
        team_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_accept_seconds_minutes_and_hours() {
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("10m"), Ok(600));
        assert_eq!(parse_duration_secs("2h"), Ok(7200));
        assert!(parse_duration_secs("0s").is_err());
        assert!(parse_duration_secs("soon").is_err());
    }

    #[test]
    fn env_pairs_need_a_name() {
        assert_eq!(
            parse_env_pair("A=b=c"),
            Ok(("A".to_owned(), "b=c".to_owned()))
        );
        assert!(parse_env_pair("=x").is_err());
        assert!(parse_env_pair("nothing").is_err());
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create your signing key on this machine (0600)
    #[command(after_help = "\
The key is written to signing.key next to the profile file (or --key-file, or
$SEALRUN_SIGNING_KEY_FILE) and never leaves this machine. It signs your runs
and approvals, once an admin certified it (`sealrun user certify`); an
admin's also certifies targets and users. The public key is printed.

An admin passes --admin: this machine then trusts the key as an admin key at
once. They give the public key to their team out of band: each runs
`sealrun trust add <key>` after checking its fingerprint with them, and each
agent lists it in its trust_file. Anyone else gives the key to an admin.

Examples:
  sealrun keys init --admin
  sealrun keys show")]
    Init {
        /// Where to write the key
        #[arg(long, env = "SEALRUN_SIGNING_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// You are an admin: trust the new key here as an admin key
        #[arg(long)]
        admin: bool,
    },
    /// Print your public signing key and its fingerprint
    #[command(after_help = "\
Examples:
  sealrun keys show")]
    Show {
        /// The key file
        #[arg(long, env = "SEALRUN_SIGNING_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust an admin's public key to certify target keys
    #[command(after_help = "\
`sealrun secret set` seals only to a target key that an admin this machine
trusts certified (`sealrun target trust`): a control plane that offers a key
of its own gets nothing. Get the key from the admin themselves (not from the
control plane) and compare its fingerprint (`sealrun trust list`) with theirs
(`sealrun keys show`). The keys are kept in trust.toml next to the profile
file, or $SEALRUN_TRUST_FILE.

Examples:
  sealrun trust add \"$(sealrun keys show)\"
  sealrun trust list")]
    Add {
        /// The admin's public key (ed25519:...)
        key: String,
    },
    /// List the admin keys this machine trusts
    #[command(after_help = "\
Examples:
  sealrun trust list")]
    List,
    /// Stop trusting an admin key
    #[command(after_help = "\
Examples:
  sealrun trust remove ed25519:6J2x2mWJk4nq8m0V0g3qkXGx8Q7W2N6b4cY1V8v2Jx0=")]
    Remove {
        /// The admin's public key (ed25519:...)
        key: String,
    },
}
