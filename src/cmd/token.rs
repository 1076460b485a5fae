//! `sealrun token ...`

use super::seg;
use crate::cli::{RoleArg, TokenCommand};
use crate::client::Client;
use crate::output::{self, Table, outln, safe};
use anyhow::Result;
use reqwest::Method;
use sealrun_wire::admin::{TokenCreate, TokenCreated, TokenList};

pub async fn run(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            user,
            role,
            name,
            expires_in,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let created: TokenCreated = client
                .post(
                    "/v1/tokens",
                    &TokenCreate {
                        name: name.unwrap_or_default(),
                        user,
                        role: role.map(RoleArg::role),
                        expires_in_secs: expires_in,
                    },
                )
                .await?;
            if json {
                return output::json(&created);
            }
            let until = created
                .view
                .expires_at_ms
                .map(|at| format!(", valid until {}", output::time(at)))
                .unwrap_or_default();
            eprintln!(
                "token {} ({}, user {}, role {}{until}) created; it is shown only this once:",
                created.view.id,
                safe(&created.view.name),
                safe(&created.view.user),
                created.view.role
            );
            outln!("{}", created.token)?;
            Ok(())
        }
        TokenCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: TokenList = client.get("/v1/tokens").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&[
                "ID", "NAME", "USER", "ROLE", "CREATED", "EXPIRES", "REVOKED",
            ]);
            for v in list.tokens {
                t.row(vec![
                    v.id,
                    v.name,
                    v.user,
                    v.role.to_string(),
                    output::time(v.created_at_ms),
                    output::opt_time(v.expires_at_ms),
                    output::opt_time(v.revoked_at_ms),
                ]);
            }
            t.print()
        }
        TokenCommand::Revoke { id, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(Method::DELETE, &format!("/v1/tokens/{}", seg(&id)), None)
                .await?;
            eprintln!("token {id} revoked");
            Ok(())
        }
    }
}
