//! `sealrun agent-pool ...` and `sealrun agents ...`

use super::seg;
use crate::cli::{AgentsCommand, PoolCommand};
use crate::client::Client;
use crate::output::{self, Table, outln, safe};
use anyhow::Result;
use reqwest::Method;
use sealrun_wire::admin::{
    AgentList, EnrollmentToken, EnrollmentTokenCreate, PoolCreate, PoolList, PoolView,
};

pub async fn run(cmd: PoolCommand) -> Result<()> {
    match cmd {
        PoolCommand::Create { name, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let v: PoolView = client.post("/v1/pools", &PoolCreate { name }).await?;
            if json {
                return output::json(&v);
            }
            eprintln!("pool {} created", safe(&v.name));
            Ok(())
        }
        PoolCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: PoolList = client.get("/v1/pools").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&["NAME", "CREATED"]);
            for p in list.pools {
                t.row(vec![p.name, output::time(p.created_at_ms)]);
            }
            t.print()
        }
        PoolCommand::EnrollToken {
            pool,
            max_agents,
            unlimited,
            ttl,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let tok: EnrollmentToken = client
                .post(
                    &format!("/v1/pools/{}/enrollment-tokens", seg(&pool)),
                    &EnrollmentTokenCreate {
                        ttl_secs: ttl,
                        max_agents,
                        unlimited,
                    },
                )
                .await?;
            if json {
                return output::json(&tok);
            }
            let agents = match tok.max_agents {
                Some(1) => "one agent".to_owned(),
                Some(n) => format!("up to {n} agents"),
                None => "any number of agents".to_owned(),
            };
            eprintln!(
                "enrollment token for pool {} ({agents}, until {}; shown only this once):",
                safe(&tok.pool),
                output::time(tok.expires_at_ms)
            );
            outln!("{}", tok.token)?;
            Ok(())
        }
    }
}

pub async fn run_agents(cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: AgentList = client.get("/v1/agents").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&[
                "ID",
                "NAME",
                "POOL",
                "TARGETS",
                "CONNECTED",
                "LAST SEEN",
                "VERSION",
            ]);
            for v in list.agents {
                t.row(vec![
                    v.id,
                    v.name,
                    v.pool,
                    v.targets.join(","),
                    if v.connected { "yes" } else { "no" }.to_owned(),
                    output::opt_time(v.last_seen_ms),
                    v.version.unwrap_or_else(|| "-".into()),
                ]);
            }
            t.print()
        }
        AgentsCommand::Revoke { id, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(Method::DELETE, &format!("/v1/agents/{}", seg(&id)), None)
                .await?;
            eprintln!("agent {id} revoked");
            Ok(())
        }
    }
}
