//! `sealrun keys ...`, `sealrun trust ...` and `sealrun target trust`: the
//! org's trust root, kept on people's machines, never on the control plane
//! (see `sealrun_wire::trust`).
//!
//! - An admin's signing key: `signing.key` next to the profile file (or
//!   `SEALRUN_SIGNING_KEY_FILE`), 0600, made by `sealrun keys init`.
//! - The admin keys this machine trusts: `trust.toml` next to the profile
//!   file (or `SEALRUN_TRUST_FILE`), `admins = ["ed25519:..."]`, added by
//!   `sealrun trust add` after checking the key out of band.
//! - Or pinned per profile on `sealrun login`, as ssh pins host keys: the
//!   control plane offers the keys that signed the org's certificates, and
//!   the person confirms a fingerprint they checked with their admin
//!   ([`trusted_here`] is the union).
//! - `sealrun target trust NAME` signs the key the target is pinned to;
//!   `sealrun secret set` seals only to a key certified by a trusted admin
//!   ([`certified_key`]).

use super::seg;
use crate::cli::{KeysCommand, TrustCommand};
use crate::client::Client;
use crate::output::{self, outln, safe};
use crate::profile::Profiles;
use anyhow::{Context as _, Result, bail};
use sealrun_vault::{KeyId, PublicKey};
use sealrun_wire::admin::{PublicKeyView, TargetSpec, TargetView, Whoami};
use sealrun_wire::people::{UserList, UserView};
use sealrun_wire::report::Ended;
use sealrun_wire::run::RunView;
use sealrun_wire::runbook::{RunbookCertificate, RunbookSpec, RunbookView};
use sealrun_wire::trust::{Signed, SignerKey, SigningKey, TargetCertificate, UserCertificate};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The directory of the profile file (`~/.config/sealrun`).
fn config_dir() -> Result<PathBuf> {
    Profiles::path()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .context("cannot tell where sealrun keeps its files (no HOME)")
}

/// The admin key file: `flag`, else `SEALRUN_SIGNING_KEY_FILE` (clap reads
/// it into the flag), else `signing.key` in the config directory.
fn signing_key_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(p) => Ok(p),
        None => Ok(config_dir()?.join("signing.key")),
    }
}

/// The trust file: `SEALRUN_TRUST_FILE`, else `trust.toml` in the config
/// directory.
fn trust_path() -> Result<PathBuf> {
    match std::env::var_os("SEALRUN_TRUST_FILE") {
        Some(p) => Ok(PathBuf::from(p)),
        None => Ok(config_dir()?.join("trust.toml")),
    }
}

/// What `trust.toml` holds.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    /// Admin public keys, `ed25519:...`.
    #[serde(default)]
    admins: Vec<String>,
}

pub fn load_trust(path: &Path) -> Result<Vec<SignerKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: TrustFile = crate::config::parse(path, &text)?;
    file.admins
        .iter()
        .map(|k| SignerKey::parse(k).with_context(|| format!("{}: {k}", path.display())))
        .collect()
}

fn save_trust(path: &Path, keys: &[SignerKey]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = TrustFile {
        admins: keys.iter().map(ToString::to_string).collect(),
    };
    let text = format!(
        "# Admin keys this machine trusts to certify target keys (sealrun trust add).\n{}",
        toml::to_string(&file)?
    );
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads the signing key at `path`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read your signing key {} (make one with `sealrun keys init`)",
            path.display()
        )
    })?);
    SigningKey::from_text(&text).with_context(|| format!("{}", path.display()))
}

/// Writes a new signing key to `path` (0600; never over an existing
/// one).
pub fn create_signing_key(path: &Path) -> Result<SigningKey> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = SigningKey::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.to_text().as_bytes())?;
    file.sync_all()?;
    Ok(key)
}

/// Adds `key` to the trust file at `path` (once).
pub fn trust_key(path: &Path, key: SignerKey) -> Result<bool> {
    let mut keys = load_trust(path)?;
    if keys.contains(&key) {
        return Ok(false);
    }
    keys.push(key);
    save_trust(path, &keys)?;
    Ok(true)
}

pub async fn keys(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Init { key_file, admin } => {
            let path = signing_key_path(key_file)?;
            if path.exists() {
                bail!(
                    "{} already holds a signing key (`sealrun keys show` prints it); remove it first to make another",
                    path.display()
                );
            }
            let key = create_signing_key(&path)?;
            let public = key.public_key();
            if admin {
                // This machine trusts its own admin's key.
                trust_key(&trust_path()?, public)?;
            }
            outln!("{public}")?;
            if admin {
                eprintln!(
                    "signing key {} written to {} and trusted here as an admin key (keep it there; it never leaves this machine).\n\
                     Give the public key above to your team out of band: each runs `sealrun trust add <key>`; agents list it in their trust_file.",
                    public.fingerprint(),
                    path.display()
                );
            } else {
                eprintln!(
                    "signing key {} written to {} (keep it there; it never leaves this machine).\n\
                     Give the public key above to an admin out of band: they run `sealrun user certify <you> --key <key>`.",
                    public.fingerprint(),
                    path.display()
                );
            }
            Ok(())
        }
        KeysCommand::Show { key_file } => {
            let key = load_signing_key(&signing_key_path(key_file)?)?;
            let public = key.public_key();
            outln!("{public}")?;
            eprintln!("fingerprint {}", public.fingerprint());
            Ok(())
        }
    }
}

pub async fn trust(cmd: TrustCommand) -> Result<()> {
    let path = trust_path()?;
    match cmd {
        TrustCommand::Add { key } => {
            let key = SignerKey::parse(&key)?;
            if trust_key(&path, key)? {
                eprintln!(
                    "trusting admin key {} (in {})",
                    key.fingerprint(),
                    path.display()
                );
            } else {
                eprintln!("admin key {} was already trusted", key.fingerprint());
            }
            Ok(())
        }
        TrustCommand::List => {
            for key in load_trust(&path)? {
                outln!("{}  {key}", key.fingerprint())?;
            }
            Ok(())
        }
        TrustCommand::Remove { key } => {
            let key = SignerKey::parse(&key)?;
            let mut keys = load_trust(&path)?;
            let before = keys.len();
            keys.retain(|k| *k != key);
            if keys.len() == before {
                bail!("admin key {} is not trusted here", key.fingerprint());
            }
            save_trust(&path, &keys)?;
            eprintln!("no longer trusting admin key {}", key.fingerprint());
            Ok(())
        }
    }
}

/// How long a certificate made now is valid.
fn validity_ms(days: u32) -> i64 {
    i64::from(days) * 24 * 3600 * 1000
}

/// Signs, as `admin`, that `key` (with its report key) and declaration
/// `spec` are target `spec.name`'s in `org`, for `days`. `spec` is what the
/// admin reviewed: their file, or what they were shown and confirmed.
pub fn certificate(
    admin: &SigningKey,
    org: &str,
    spec: &TargetSpec,
    key: &PublicKeyView,
    days: u32,
) -> Signed<TargetCertificate> {
    let now = output::now_ms();
    admin.sign(&TargetCertificate {
        org: org.to_owned(),
        target: spec.name.clone(),
        public_key: key.key.clone(),
        key_id: key.key_id.0.clone(),
        report_key: key.report_key.clone(),
        spec: spec.clone(),
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(validity_ms(days)),
    })
}

/// This person's signing key, if they made one
/// (`SEALRUN_SIGNING_KEY_FILE`, else `signing.key` in the config
/// directory): what `sealrun run` and `sealrun approvals approve` sign with.
pub fn own_signing_key() -> Result<Option<SigningKey>> {
    let path = match std::env::var_os("SEALRUN_SIGNING_KEY_FILE") {
        Some(p) => PathBuf::from(p),
        None => config_dir()?.join("signing.key"),
    };
    if !path.exists() {
        return Ok(None);
    }
    load_signing_key(&path).map(Some)
}

/// `sealrun user certify NAME --key K`: signs, as the admin, user NAME's
/// key with the role and groups the control plane shows for them (the
/// control plane refuses a certificate that does not match them).
/// Which passkeys `sealrun user certify` certifies.
#[derive(Debug)]
pub enum Passkeys {
    /// Those of the user's current certificate, if a key trusted here
    /// signed it (none otherwise).
    Keep,
    /// None.
    None,
    /// These, by fingerprint (`--passkey`), from what the user registered.
    These(Vec<String>),
}

pub async fn certify_user(
    client: &Client,
    name: &str,
    key: &str,
    passkeys: Passkeys,
    days: u32,
    key_file: Option<PathBuf>,
) -> Result<UserView> {
    let admin = load_signing_key(&signing_key_path(key_file)?)?;
    let key = SignerKey::parse(key)?;
    let me: Whoami = client.get("/v1/whoami").await?;
    let users: UserList = client.get("/v1/users").await?;
    let Some(user) = users.users.into_iter().find(|u| u.name == name) else {
        bail!("there is no user {}", safe(name));
    };
    // Only the passkeys whose fingerprints the admin compared with the user:
    // the control plane's list is where to find them, not what to sign.
    let certified_passkeys = if let Passkeys::Keep = passkeys {
        // What a key trusted here certified before, and nothing else: a
        // re-certification (a new role or group) keeps the person's passkeys.
        let mut trusted = trusted_with(&[]).unwrap_or_default();
        trusted.push(admin.public_key());
        let kept = user
            .certificate
            .as_ref()
            .and_then(|c| c.verify(&trusted).ok())
            .filter(|c| c.org == me.org && c.user == user.name)
            .map(|c| c.passkeys)
            .unwrap_or_default();
        if !kept.is_empty() {
            let names: Vec<String> = kept.iter().map(|p| p.fingerprint()).collect();
            eprintln!(
                "keeping the passkeys of {}'s current certificate: {} (--drop-passkeys certifies none)",
                safe(name),
                names.join(", ")
            );
        }
        kept
    } else if let Passkeys::These(passkeys) = passkeys {
        let registered: sealrun_wire::people::PasskeyList = client
            .get(&format!("/v1/users/{}/passkeys", seg(name)))
            .await?;
        let mut chosen = Vec::new();
        for fingerprint in &passkeys {
            let matching: Vec<_> = registered
                .passkeys
                .iter()
                .filter(|p| p.fingerprint() == *fingerprint)
                .collect();
            let [p] = matching.as_slice() else {
                bail!(
                    "user {} has registered {} passkey {} (one must match: they register one in the web console, which shows its fingerprint)",
                    safe(name),
                    if matching.is_empty() {
                        "no"
                    } else {
                        "more than one"
                    },
                    safe(fingerprint)
                );
            };
            eprintln!(
                "certifying passkey {} of {} (origin {})",
                safe(fingerprint),
                safe(name),
                safe(&p.origin)
            );
            chosen.push((*p).clone());
        }
        chosen
    } else {
        Vec::new()
    };
    let now = output::now_ms();
    let signed = admin.sign(&UserCertificate {
        org: me.org,
        user: user.name.clone(),
        role: user.role,
        groups: user.groups.clone(),
        public_key: key.to_string(),
        passkeys: certified_passkeys,
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(validity_ms(days)),
    });
    client
        .put(&format!("/v1/users/{}/certificate", seg(name)), &signed)
        .await
}

/// What `sealrun target trust` is told to certify.
#[derive(Debug)]
pub struct TrustTarget {
    /// Target name.
    pub name: String,
    /// The key id the admin checked (`--key-id`).
    pub key_id: Option<String>,
    /// The report-key fingerprint the admin checked (`--report-key`).
    pub report_key: Option<String>,
    /// The declaration to certify, from the admin's targets file (`-f`).
    pub declared: Option<TargetSpec>,
}

/// `sealrun target trust NAME`: certifies the key the target is pinned to,
/// its report key and a declaration the admin reviewed. Without a
/// terminal, all three must be given (`--key-id`, `--report-key`, `-f`);
/// on one, what is not given is shown and confirmed. Nothing the control
/// plane says is signed unseen.
pub async fn certify_target(
    client: &Client,
    t: TrustTarget,
    days: u32,
    key_file: Option<PathBuf>,
) -> Result<TargetView> {
    let name = t.name.as_str();
    let admin = load_signing_key(&signing_key_path(key_file)?)?;
    let me: Whoami = client.get("/v1/whoami").await?;
    let view: TargetView = client.get(&format!("/v1/targets/{}", seg(name))).await?;
    let Some(pinned) = &view.public_key else {
        bail!(
            "target {} has no key yet: start an agent serving it first",
            safe(name)
        );
    };
    let report = pinned
        .report_key
        .as_deref()
        .and_then(|k| SignerKey::parse(k).ok())
        .map(|k| k.fingerprint());
    if let Some(expected) = &t.key_id {
        if *expected != pinned.key_id.0 {
            bail!(
                "target {} is pinned to key {}, not {}: nothing certified",
                safe(name),
                pinned.key_id,
                safe(expected)
            );
        }
    }
    if let Some(expected) = &t.report_key {
        // `none`: the agent presented no report key (an older agent).
        if report.as_deref().unwrap_or("none") != expected.trim() {
            bail!(
                "target {}'s run-report key is {}, not {}: nothing certified",
                safe(name),
                report.as_deref().unwrap_or("none"),
                safe(expected)
            );
        }
    }
    let declared = t.declared;
    let checked = t.key_id.is_some() && t.report_key.is_some() && declared.is_some();
    if !checked {
        if !std::io::stdin().is_terminal() {
            bail!(
                "target {} is pinned to key {} with run-report key {}: check both against `sealrun agent --print-key-ids` on the agent's host, then pass --key-id, --report-key and -f (the targets file holding the declaration you certify)",
                safe(name),
                pinned.key_id,
                report.as_deref().unwrap_or("none")
            );
        }
        let spec = declared.as_ref().unwrap_or(&view.spec);
        eprintln!(
            "Target {} is pinned to key {} (its agent proved it holds it), with run-report key {}. Compare both with `sealrun agent --print-key-ids` on the agent's host.\nIts declaration and policy, as certified:\n{}",
            safe(name),
            pinned.key_id,
            report.as_deref().unwrap_or("none"),
            safe(&serde_json::to_string_pretty(spec)?)
        );
        eprint!(
            "Certify them with admin key {}? [y/N] ",
            admin.public_key().fingerprint()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("nothing certified");
        }
    }
    let spec = declared.unwrap_or_else(|| view.spec.clone());
    let signed = certificate(&admin, &me.org, &spec, pinned, days);
    client
        .put(&format!("/v1/targets/{}/certificate", seg(name)), &signed)
        .await
}

/// `sealrun runbook trust NAME`: certifies runbook `spec` (the definition
/// the admin reviewed: from their file, or shown and confirmed) with the
/// admin key at `key_file` (or the default).
pub async fn certify_runbook(
    client: &Client,
    spec: &RunbookSpec,
    days: u32,
    key_file: Option<PathBuf>,
) -> Result<RunbookView> {
    let admin = load_signing_key(&signing_key_path(key_file)?)?;
    certify_runbook_with(client, &admin, spec, days).await
}

/// Certifies the runbook definition `spec` with `admin`'s key: the control
/// plane stores it only on a latest version with exactly that definition
/// (`409` otherwise), so what is signed is what the admin read, never what
/// the control plane says the runbook is.
pub async fn certify_runbook_with(
    client: &Client,
    admin: &SigningKey,
    spec: &RunbookSpec,
    days: u32,
) -> Result<RunbookView> {
    let me: Whoami = client.get("/v1/whoami").await?;
    let now = output::now_ms();
    let signed = admin.sign(&RunbookCertificate {
        org: me.org,
        runbook: spec.clone(),
        issued_at_ms: now,
        expires_at_ms: now.saturating_add(validity_ms(days)),
    });
    client
        .put(
            &format!("/v1/runbooks/{}/certificate", seg(&spec.name)),
            &signed,
        )
        .await
}

/// After an admin changed targets `names`' declarations: certifies each
/// again with their key (`own_admin_key`) if it was certified, by an admin
/// this machine trusts, for the key it is still pinned to, so agents keep
/// running its runs under the new declaration. A key never certified is
/// not certified here: that needs `sealrun target trust`, which asks to
/// check the key id out of band. Without such a key, says that agents with
/// a trust file refuse runs of a changed declaration until it is.
pub async fn recertify_targets(client: &Client, declared: &[TargetSpec]) -> Result<()> {
    let admin = own_admin_key(client)?;
    let trusted = trusted_here(client)?;
    let mut stale = Vec::new();
    for spec in declared {
        let name = spec.name.as_str();
        let view: TargetView = client.get(&format!("/v1/targets/{}", seg(name))).await?;
        let Some(pinned) = &view.public_key else {
            continue;
        };
        let Some(old) = view
            .certificate
            .as_ref()
            .and_then(|c| c.verify(&trusted).ok())
        else {
            continue;
        };
        if old.spec == *spec {
            continue;
        }
        // The key and report key stay what was certified (checked byte for
        // byte against the pinned ones); only the declaration changes, to
        // the one the admin just applied.
        let same_key = old.public_key == pinned.key && old.key_id == pinned.key_id.0;
        let (Some(admin), true) = (&admin, same_key) else {
            stale.push(name);
            continue;
        };
        let key = PublicKeyView {
            key_id: pinned.key_id.clone(),
            key: old.public_key.clone(),
            report_key: old.report_key.clone(),
        };
        let signed = certificate(admin, &old.org, spec, &key, 365);
        let _: TargetView = client
            .put(&format!("/v1/targets/{}/certificate", seg(name)), &signed)
            .await?;
        eprintln!(
            "certified target {}'s new declaration with your admin key {}",
            safe(name),
            admin.public_key().fingerprint()
        );
    }
    if !stale.is_empty() {
        eprintln!(
            "not certified: the new declaration of {} (agents with a trust file refuse its runs until an admin runs `sealrun target trust NAME`)",
            safe(&stale.join(", "))
        );
    }
    Ok(())
}

/// This person's signing key if this machine trusts it as an admin key
/// (it is in the trust file): then what they declare, they certify.
pub fn own_admin_key(client: &Client) -> Result<Option<SigningKey>> {
    let Some(key) = own_signing_key()? else {
        return Ok(None);
    };
    let trusted = trusted_here(client)?;
    Ok(trusted.contains(&key.public_key()).then_some(key))
}

/// The admin keys trusted for what `client` reaches: the trust file's, and
/// those its profile pinned on `sealrun login`.
pub fn trusted_here(client: &Client) -> Result<Vec<SignerKey>> {
    trusted_with(&client.connection().pinned_admins)
}

/// The trust file's admin keys and the profile's `pins`.
fn trusted_with(pins: &[String]) -> Result<Vec<SignerKey>> {
    let mut keys = load_trust(&trust_path()?)?;
    for pinned in pins {
        let key = SignerKey::parse(pinned)
            .with_context(|| format!("a pinned admin key of your profile: {pinned}"))?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The admin keys trusted here without a control plane: the trust file's,
/// and those of the profile `client` names, if any.
pub fn trusted_offline(client: &crate::cli::ClientArgs) -> Result<Vec<SignerKey>> {
    // No control plane configured is fine offline: then the trust file only.
    match crate::client::Connection::resolve_with_profile(client) {
        Ok((conn, _)) => trusted_with(&conn.pinned_admins),
        Err(_) => trusted_with(&[]),
    }
}

/// What checking an audit trail's run outcomes against their agents'
/// signed reports found.
#[derive(Default)]
pub struct CheckedReports {
    /// Outcomes that match their agent's report.
    pub verified: u64,
    /// Outcomes with no report, or whose target has no report key certified
    /// by a trusted admin in the trail.
    pub unchecked: u64,
    /// Outcomes that differ from their agent's report, or reports not
    /// signed with the certified key: one line each.
    pub forged: Vec<String>,
}

impl CheckedReports {
    /// One line.
    pub fn summary(&self) -> String {
        if self.forged.is_empty() {
            format!(
                "run outcomes: {} match their agents' signed reports, {} not checkable (no report, or no certified report key)",
                self.verified, self.unchecked
            )
        } else {
            format!(
                "run outcomes: {} DO NOT MATCH what their agents signed ({} match, {} not checkable)",
                self.forged.len(),
                self.verified,
                self.unchecked
            )
        }
    }
}

/// Checks each `run.finished` entry of `entries` (in order) against the
/// report its agent signed, with the report key of the latest
/// `target.certified` entry before it whose certificate a key in `trusted`
/// signed.
pub fn check_reports(
    entries: &[sealrun_wire::audit::AuditEntry],
    trusted: &[SignerKey],
) -> CheckedReports {
    use sealrun_wire::report::RunReport;
    // Per target, the report key a trusted admin certified last; an entry
    // whose certificate does not verify changes nothing (else inserting one
    // would make the runs after it uncheckable).
    let mut keys: std::collections::HashMap<String, String> = Default::default();
    // Per run, its target (`run.started`).
    let mut targets: std::collections::HashMap<String, String> = Default::default();
    let mut out = CheckedReports::default();
    for e in entries {
        let Ok(detail) = serde_json::from_str::<serde_json::Value>(&e.detail) else {
            continue;
        };
        match e.action.as_str() {
            "target.certified" => {
                let cert = serde_json::from_value::<Signed<TargetCertificate>>(
                    detail["certificate"].clone(),
                )
                .ok()
                .and_then(|c| c.verify(trusted).ok());
                if let Some(cert) = cert {
                    if let Some(key) = cert.report_key {
                        keys.insert(cert.target, key);
                    }
                }
            }
            "run.started" => {
                if let Some(target) = detail["target"].as_str() {
                    targets.insert(e.subject.clone(), target.to_owned());
                }
            }
            // Ends an agent reports; the control plane's own (a run failed
            // before it was handed out) carry no report.
            "run.finished" if e.actor.starts_with("agent:") => {
                let target = targets.get(&e.subject);
                let key = target.and_then(|t| keys.get(t));
                let Ok(signed) =
                    serde_json::from_value::<Signed<RunReport>>(detail["report"].clone())
                else {
                    match (target, key) {
                        (Some(t), Some(_)) => out.forged.push(format!(
                            "entry {}: run {}: no report, though target {}'s agents sign theirs",
                            e.seq,
                            safe(&e.subject),
                            safe(t)
                        )),
                        _ => out.unchecked += 1,
                    }
                    continue;
                };
                let Some(key) = key else {
                    out.unchecked += 1;
                    continue;
                };
                let said = match signed.check_by(key) {
                    Ok(said) => said,
                    Err(_) => {
                        out.forged.push(format!(
                            "entry {}: run {}: not signed with its target's certified report key",
                            e.seq,
                            safe(&e.subject)
                        ));
                        continue;
                    }
                };
                let redactions = &detail["redactions"];
                let ended = Ended {
                    run_id: &e.subject,
                    // An entry whose run never started names no target:
                    // the report's own is then not what the trail says.
                    target: Some(target.map_or("", String::as_str)),
                    status: detail["status"].as_str().unwrap_or(""),
                    exit_code: detail["exit_code"].as_i64(),
                    redactions: redactions["stdout"]
                        .as_u64()
                        .zip(redactions["stderr"].as_u64()),
                };
                if said.differences(&ended).is_empty() {
                    out.verified += 1;
                } else {
                    out.forged.push(format!(
                        "entry {}: run {}: the entry says {} (exit code {}), its agent signed {} (exit code {})",
                        e.seq,
                        safe(&e.subject),
                        safe(detail["status"].as_str().unwrap_or("?")),
                        detail["exit_code"]
                            .as_i64()
                            .map_or("none".into(), |c| c.to_string()),
                        safe(&said.status),
                        said.exit_code.map_or("none".into(), |c| c.to_string()),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// What a run's signed report says of the record the control plane shows.
pub enum Report {
    /// Signed with the target's certified report key, and it matches.
    Verified(String),
    /// The agent signed something else: what differs.
    Forged(String),
    /// No report (why that can be).
    Absent(String),
    /// A report that cannot be checked here (why).
    Unchecked(String),
}

/// Checks run `r`'s report against its target's certificate, from admin
/// keys trusted here: the control plane stores and shows results, and
/// cannot sign one.
pub async fn check_report(client: &Client, r: &RunView) -> Result<Report> {
    let Some(signed) = &r.report else {
        return Ok(Report::Absent(if r.status.is_terminal() {
            "none signed (an agent that signs none, or an end no agent reported: canceled or expired while queued, lost)".into()
        } else {
            "- (the run has not ended)".into()
        }));
    };
    let trusted = trusted_here(client)?;
    if trusted.is_empty() {
        return Ok(Report::Unchecked(
            "signed by its agent, not checked: no admin key is trusted here".into(),
        ));
    }
    let view: TargetView = client
        .get(&format!("/v1/targets/{}", seg(&r.target)))
        .await?;
    let cert = match view.certificate.as_ref().map(|c| c.verify(&trusted)) {
        Some(Ok(cert)) => cert,
        Some(Err(e)) => {
            return Ok(Report::Unchecked(format!(
                "signed by its agent, not checked: target {}'s certificate does not hold here ({e})",
                safe(&r.target)
            )));
        }
        None => {
            return Ok(Report::Unchecked(format!(
                "signed by its agent, not checked: target {} is not certified",
                safe(&r.target)
            )));
        }
    };
    let Some(key) = &cert.report_key else {
        return Ok(Report::Unchecked(format!(
            "signed by its agent, not checked: target {}'s certificate names no report key (certify it again: sealrun target trust {})",
            safe(&r.target),
            safe(&r.target)
        )));
    };
    let said = match signed.check_by(key) {
        Ok(said) => said,
        Err(e) => {
            return Ok(Report::Forged(format!(
                "not signed with the report key target {}'s certificate names now ({e}; if the target was re-keyed since the run, check the exported trail: `sealrun audit verify --file`)",
                safe(&r.target)
            )));
        }
    };
    let differs: Vec<String> = said
        .differences(&Ended {
            run_id: &r.id,
            target: Some(&r.target),
            status: r.status.as_str(),
            exit_code: r.exit_code,
            redactions: r.redactions.map(|n| (n.stdout, n.stderr)),
        })
        .into_iter()
        .map(|(what, signed, shown)| {
            format!("{what} {} signed, {} shown", safe(&signed), safe(&shown))
        })
        .collect();
    if !differs.is_empty() {
        return Ok(Report::Forged(differs.join("; ")));
    }
    let opened = if said.secrets.is_empty() {
        "no secret".to_owned()
    } else {
        format!("secrets {}", safe(&said.secrets.join(", ")))
    };
    Ok(Report::Verified(format!(
        "verified: signed by target {}'s agent with its certified report key {} ({opened} opened)",
        safe(&r.target),
        SignerKey::parse(key).map_or_else(|_| key.clone(), |k| k.fingerprint())
    )))
}

/// The public key of target `target` to seal to, only if an admin this
/// machine trusts certified it, for this org and target, unexpired: a
/// control plane that offers a key of its own gets nothing sealed to it.
pub async fn certified_key(client: &Client, target: &str) -> Result<(PublicKey, KeyId)> {
    let path = trust_path()?;
    let trusted = trusted_here(client)?;
    if trusted.is_empty() {
        bail!(
            "no admin key is trusted on this machine ({} is empty or missing, and your profile pins none): check your admin's key fingerprint with them, then `sealrun login --trust-admin FINGERPRINT` or `sealrun trust add <key>`; secrets are sealed only to target keys an admin certified",
            path.display()
        );
    }
    let me: Whoami = client.get("/v1/whoami").await?;
    let view: TargetView = client.get(&format!("/v1/targets/{}", seg(target))).await?;
    let Some(offered) = &view.public_key else {
        bail!(
            "target {} has no key yet: an agent serving it must connect first",
            safe(target)
        );
    };
    let Some(signed) = &view.certificate else {
        bail!(
            "target {}'s key {} is not certified by an admin: an admin runs `sealrun target trust {}` (nothing was sealed)",
            safe(target),
            offered.key_id,
            safe(target)
        );
    };
    let c = signed
        .verify(&trusted)
        .and_then(|c| c.check(&me.org, target, output::now_ms()).map(|()| c))
        .map_err(|e| {
            anyhow::anyhow!(
                "refusing to seal to target {}'s key: {e} (nothing was sealed)",
                safe(target)
            )
        })?;
    if c.public_key != offered.key || c.key_id != offered.key_id.0 {
        bail!(
            "refusing to seal: the control plane offers key {} for target {}, but the admin certified key {} (nothing was sealed; if the target was re-keyed on purpose, an admin runs `sealrun target trust {}` again)",
            offered.key_id,
            safe(target),
            safe(&c.key_id),
            safe(target)
        );
    }
    let public_key = PublicKey::from_base64(&c.public_key).map_err(|e| {
        anyhow::anyhow!(
            "the certified key of target {} is invalid: {e}",
            safe(target)
        )
    })?;
    if public_key.key_id().0 != c.key_id {
        bail!(
            "the certified key's bytes are key {}, not {}: refusing to seal",
            public_key.key_id(),
            safe(&c.key_id)
        );
    }
    let id = public_key.key_id();
    Ok((public_key, id))
}
