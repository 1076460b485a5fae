//! `sealrun login`, `sealrun logout` and `sealrun whoami`.

use crate::cli::{ClientArgs, ClientOnly, LoginArgs, LogoutArgs};
use crate::client::{Client, Connection};
use crate::output::{self, outln, safe};
use crate::profile::{self, Profile, Profiles};
use anyhow::{Context as _, Result, anyhow, bail};
use sealrun_wire::admin::Whoami;
use sealrun_wire::trust::SignerKey;
use std::io::{IsTerminal as _, Read as _};
use zeroize::Zeroizing;

/// The profile named by `--profile` / `SEALRUN_PROFILE`, else `default`.
fn profile_name(client: &ClientArgs) -> Result<String> {
    let name = client.profile.as_deref().unwrap_or(profile::DEFAULT);
    profile::check_name(name)?;
    Ok(name.to_owned())
}

/// The token to save: `--token`/`SEALRUN_TOKEN`, else stdin when it is not a
/// terminal, else a hidden prompt.
fn token_to_save(a: &LoginArgs, url: &str) -> Result<String> {
    if let Some(token) = &a.client.token {
        if std::env::var("SEALRUN_TOKEN").ok().as_deref() != Some(token.as_str()) {
            eprintln!(
                "warning: a token given with --token is kept in your shell history and shown \
                 by `ps`; pipe it on stdin or let `sealrun login` prompt for it"
            );
        }
        return Ok(token.clone());
    }
    let token = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("API token for {url} (hidden): "))
                .context("cannot read the token from the terminal")?,
        )
    } else {
        let mut read = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_to_string(&mut read)
            .context("cannot read the token from stdin")?;
        read
    };
    let token = token.trim();
    if token.is_empty() {
        bail!(
            "no token: pipe it on stdin, set SEALRUN_TOKEN, or run `sealrun login` on a terminal to be prompted"
        );
    }
    Ok(token.to_owned())
}

pub async fn login(a: LoginArgs) -> Result<()> {
    let name = profile_name(&a.client)?;
    let url = a
        .client
        .url
        .clone()
        .ok_or_else(|| anyhow!("--url (or SEALRUN_URL) is required"))?;
    let ca_cert = match &a.client.ca_cert {
        Some(p) => Some(
            std::fs::canonicalize(p).map_err(|e| anyhow!("cannot read {}: {e}", p.display()))?,
        ),
        None => None,
    };
    // Refuse an unreadable or loose file before asking for anything.
    let mut profiles = Profiles::load()?;
    let url = url.trim_end_matches('/').to_owned();
    let token = token_to_save(&a, &url)?;
    let conn = Connection {
        url,
        token,
        ca_cert,
        pinned_admins: Vec::new(),
    };
    // Check before saving: a profile that does not work is worse than none.
    let me: Whoami = Client::new(conn.clone())?.get("/v1/whoami").await?;
    // Pins already made for this control plane stay.
    let kept = profiles
        .get(&name)
        .filter(|p| p.url == conn.url)
        .map(|p| p.trusted_admins.clone())
        .unwrap_or_default();
    let trusted_admins = pin_admins(kept, &me.certifiers, &a.trust_admin)?;
    profiles.insert(
        &name,
        Profile {
            url: conn.url,
            token: conn.token,
            ca_cert: conn.ca_cert,
            trusted_admins,
        },
    );
    let path = profiles.save()?;
    eprintln!(
        "logged in to org {} as {} ({}); saved as profile {name} in {}",
        safe(&me.org),
        safe(me.user.as_deref().unwrap_or(&me.name)),
        me.role,
        path.display()
    );
    Ok(())
}

/// The admin keys to pin: those `kept`, each `--trust-admin` (a key, or
/// the fingerprint of one the control plane offers), and, on a terminal,
/// each offered key the person confirms after comparing its fingerprint
/// with their admin. The control plane's offer alone pins nothing: it
/// could offer its own key.
fn pin_admins(kept: Vec<String>, offered: &[String], flags: &[String]) -> Result<Vec<String>> {
    let mut pinned = kept;
    let offered: Vec<SignerKey> = offered
        .iter()
        .filter_map(|k| SignerKey::parse(k).ok())
        .collect();
    for flag in flags {
        let key = match SignerKey::parse(flag) {
            Ok(key) => key,
            Err(_) => offered
                .iter()
                .find(|k| k.fingerprint() == flag.trim())
                .cloned()
                .ok_or_else(|| {
                    anyhow!(
                        "--trust-admin {}: no admin key with this fingerprint signed this org's certificates (pass the key itself, ed25519:..., to pin it anyway)",
                        safe(flag)
                    )
                })?,
        };
        pin(&mut pinned, &key);
    }
    let unpinned: Vec<&SignerKey> = offered
        .iter()
        .filter(|k| !pinned.contains(&k.to_string()))
        .collect();
    if unpinned.is_empty() || !flags.is_empty() {
        return Ok(pinned);
    }
    if !std::io::stdin().is_terminal() {
        let shown: Vec<String> = unpinned.iter().map(|k| k.fingerprint()).collect();
        eprintln!(
            "not pinned: admin key(s) {} signed this org's certificates; check a fingerprint with your admin, then `sealrun login --trust-admin FINGERPRINT` (until then `secret set` trusts only your trust file)",
            shown.join(", ")
        );
        return Ok(pinned);
    }
    for key in unpinned {
        eprint!(
            "The control plane says admin key {} certifies this org's targets and people.
Compare it with your admin's (`sealrun keys show` on their machine). Trust it for this profile? [y/N] ",
            key.fingerprint()
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            pin(&mut pinned, key);
        }
    }
    Ok(pinned)
}

fn pin(pinned: &mut Vec<String>, key: &SignerKey) {
    let text = key.to_string();
    if !pinned.contains(&text) {
        eprintln!("pinned admin key {}", key.fingerprint());
        pinned.push(text);
    }
}

pub async fn logout(a: LogoutArgs) -> Result<()> {
    let name = profile_name(&a.client)?;
    let mut profiles = Profiles::load()?;
    let path = Profiles::path().context("no HOME to find the profile under")?;
    match profiles.remove(&name) {
        Some(removed) => {
            profiles.save()?;
            eprintln!(
                "removed profile {name} ({}) from {}; the token stays valid until revoked \
                 (`sealrun token revoke`)",
                safe(&removed.url),
                path.display()
            );
        }
        None => eprintln!(
            "no profile {name} saved in {}: nothing to remove",
            path.display()
        ),
    }
    if std::env::var_os("SEALRUN_TOKEN").is_some() {
        eprintln!("note: SEALRUN_TOKEN is still set in this environment");
    }
    Ok(())
}

pub async fn whoami(a: ClientOnly) -> Result<()> {
    let (conn, profile) = Connection::resolve_with_profile(&a.client)?;
    let client = Client::new(conn)?;
    let me: Whoami = client.get("/v1/whoami").await?;
    if a.client.json {
        let mut value = serde_json::to_value(&me)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("profile".to_owned(), serde_json::json!(profile));
        }
        return output::json(&value);
    }
    outln!("org:  {}", safe(&me.org))?;
    if let Some(user) = &me.user {
        outln!("user: {}", safe(user))?;
    }
    outln!("name: {}\nrole: {}", safe(&me.name), me.role)?;
    outln!("url:  {}", client.connection().url)?;
    match profile {
        Some(name) => outln!("profile: {name}")?,
        None => outln!("profile: none (flags and environment)")?,
    }
    Ok(())
}
