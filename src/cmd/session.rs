//! `sealrun login` and `sealrun whoami`.

use crate::cli::{ClientOnly, LoginArgs};
use crate::client::{Client, Connection};
use crate::output::{self, outln, safe};
use crate::profile::Profile;
use anyhow::{Result, anyhow};
use sealrun_wire::admin::Whoami;

pub async fn login(a: LoginArgs) -> Result<()> {
    let url = a
        .client
        .url
        .clone()
        .ok_or_else(|| anyhow!("--url (or SEALRUN_URL) is required"))?;
    let token =
        a.client.token.clone().ok_or_else(|| {
            anyhow!("set SEALRUN_TOKEN to the token to save (flags show up in `ps`)")
        })?;
    let ca_cert = match &a.client.ca_cert {
        Some(p) => Some(
            std::fs::canonicalize(p).map_err(|e| anyhow!("cannot read {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let conn = Connection {
        url: url.trim_end_matches('/').to_owned(),
        token,
        ca_cert,
    };
    // Check before saving: a profile that does not work is worse than none.
    let me: Whoami = Client::new(conn.clone())?.get("/v1/whoami").await?;
    let path = Profile {
        url: conn.url,
        token: conn.token,
        ca_cert: conn.ca_cert,
    }
    .save()?;
    eprintln!(
        "logged in to org {} as {} ({}); profile saved to {}",
        safe(&me.org),
        safe(&me.name),
        me.role,
        path.display()
    );
    Ok(())
}

pub async fn whoami(a: ClientOnly) -> Result<()> {
    let client = Client::from_args(&a.client)?;
    let me: Whoami = client.get("/v1/whoami").await?;
    if a.client.json {
        return output::json(&me);
    }
    outln!(
        "org:  {}\nname: {}\nrole: {}",
        safe(&me.org),
        safe(&me.name),
        me.role
    )?;
    outln!("url:  {}", client.connection().url)?;
    Ok(())
}
