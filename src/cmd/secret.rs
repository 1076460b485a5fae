//! `sealrun secret ...`: secrets are sealed here, on the operator's machine;
//! only ciphertext leaves it.

use super::seg;
use crate::cli::SecretCommand;
use crate::client::Client;
use crate::output::{self, Table, safe};
use anyhow::{Context as _, Result, anyhow, bail};
use reqwest::Method;
use sealrun_wire::admin::{SecretList, SecretView};
use std::io::{IsTerminal as _, Read as _};
use zeroize::Zeroizing;

pub async fn run(cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Set {
            target,
            name,
            client,
        } => {
            check_name(&name)?;
            let json = client.json;
            let client = Client::from_args(&client)?;
            let value = read_value(&name)?;
            // Refuse what the redactor would refuse, before anything is sent:
            // a secret too short to mask safely would mask ordinary words.
            sealrun_redactor::Redactor::new([value.as_slice()])
                .map_err(|e| anyhow!("secret {name} refused: {e}"))?;
            // Only to a key an admin this machine trusts certified.
            let (public_key, key_id) = super::trust::certified_key(&client, &target).await?;
            let sealed = sealrun_vault::seal(&public_key, &name, &target, &value)
                .map_err(|e| anyhow!("cannot seal {name}: {e}"))?;
            drop(value);
            let view: SecretView = client
                .put(
                    &format!("/v1/targets/{}/secrets/{}", seg(&target), seg(&name)),
                    &sealed,
                )
                .await?;
            if json {
                return output::json(&view);
            }
            // Said once it is stored: a refused write (a role that may read
            // the target's key but not set secrets) is then one line.
            eprintln!(
                "secret {} set (version {}), sealed for target {} with certified key {key_id}",
                safe(&view.name),
                view.version,
                safe(&target)
            );
            Ok(())
        }
        SecretCommand::List { target, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let list: SecretList = client
                .get(&format!("/v1/targets/{}/secrets", seg(&target)))
                .await?;
            if json {
                return output::json(&list);
            }
            let mut t = Table::new(&["NAME", "VERSION", "KEY ID", "UPDATED", "BY"]);
            for s in list.secrets {
                t.row(vec![
                    s.name,
                    s.version.to_string(),
                    s.key_id.to_string(),
                    output::time(s.updated_at_ms),
                    s.updated_by,
                ]);
            }
            t.print()
        }
        SecretCommand::Rm {
            target,
            name,
            client,
        } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(
                    Method::DELETE,
                    &format!("/v1/targets/{}/secrets/{}", seg(&target), seg(&name)),
                    None,
                )
                .await?;
            eprintln!("secret {name} deleted from {target}");
            Ok(())
        }
    }
}

/// Secret names become environment variable names: the rule the control plane
/// and the agent apply too, checked here before the value is read.
fn check_name(name: &str) -> Result<()> {
    sealrun_wire::names::env_var(name)
        .with_context(|| format!("`{name}` is not a valid secret name (it becomes an env var)"))
}

/// Reads the value from stdin, or a hidden prompt on a terminal. One trailing
/// newline is dropped, so `echo "$PW" | sealrun secret set` does what it says.
fn read_value(name: &str) -> Result<Zeroizing<Vec<u8>>> {
    // Reserved up front so that reading does not reallocate and leave
    // copies of the value behind in freed memory.
    let mut value = Zeroizing::new(Vec::with_capacity(64 * 1024));
    if std::io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(format!("value of {name} (hidden): "))
                .context("cannot read the secret from the terminal")?,
        );
        value.extend_from_slice(typed.as_bytes());
    } else {
        std::io::stdin()
            .lock()
            .read_to_end(&mut value)
            .context("cannot read the secret from stdin")?;
        let newline = if value.ends_with(b"\r\n") {
            2
        } else {
            usize::from(value.ends_with(b"\n"))
        };
        let len = value.len() - newline;
        value.truncate(len);
    }
    if value.is_empty() {
        bail!("secret {name} is empty: pipe the value on stdin");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names_must_be_env_var_names() {
        assert!(super::check_name("DB_PASSWORD").is_ok());
        assert!(super::check_name("_x1").is_ok());
        assert!(super::check_name("1X").is_err());
        assert!(super::check_name("A-B").is_err());
        assert!(super::check_name("").is_err());
    }
}
