//! `sealrun user ...` and `sealrun group ...`.

use super::seg;
use crate::cli::{GroupCommand, UserCommand};
use crate::client::Client;
use crate::output::{self, Table, outln, safe};
use anyhow::Result;
use reqwest::Method;
use sealrun_wire::people::{
    GroupCreate, GroupList, GroupMembers, GroupView, UserCreate, UserDisabled, UserList, UserView,
};

pub async fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create { name, role, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view: UserView = client
                .post(
                    "/v1/users",
                    &UserCreate {
                        name,
                        role: role.role(),
                    },
                )
                .await?;
            if json {
                return output::json(&view);
            }
            eprintln!(
                "user {} created (role {}); issue it a token with: sealrun token create --user {}",
                safe(&view.name),
                view.role,
                safe(&view.name)
            );
            Ok(())
        }
        UserCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: UserList = client.get("/v1/users").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&[
                "NAME",
                "ROLE",
                "TOKENS",
                "CREATED",
                "CERTIFIED UNTIL",
                "DISABLED",
            ]);
            for u in list.users {
                let certified = u
                    .certificate
                    .as_ref()
                    .and_then(|c| c.open().ok())
                    .map_or_else(|| "-".to_owned(), |(c, _)| output::time(c.expires_at_ms));
                t.row(vec![
                    u.name,
                    u.role.to_string(),
                    u.tokens.to_string(),
                    output::time(u.created_at_ms),
                    certified,
                    output::opt_time(u.disabled_at_ms),
                ]);
            }
            t.print()
        }
        UserCommand::Certify {
            name,
            key,
            passkeys,
            drop_passkeys,
            days,
            key_file,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let chosen = if drop_passkeys {
                super::trust::Passkeys::None
            } else if passkeys.is_empty() {
                super::trust::Passkeys::Keep
            } else {
                super::trust::Passkeys::These(passkeys)
            };
            let view =
                super::trust::certify_user(&client, &name, &key, chosen, days, key_file).await?;
            if json {
                return output::json(&view);
            }
            eprintln!(
                "user {} certified (role {}, groups [{}]) for {days} days: their signed runs and approvals count with agents that trust your key",
                safe(&view.name),
                view.role,
                safe(&view.groups.join(", "))
            );
            Ok(())
        }
        UserCommand::Disable { name, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let done: UserDisabled = client
                .post(
                    &format!("/v1/users/{}/disable", seg(&name)),
                    &serde_json::json!({}),
                )
                .await?;
            if json {
                return output::json(&done);
            }
            eprintln!(
                "user {} disabled; {} token(s) revoked",
                safe(&done.user.name),
                done.tokens_revoked
            );
            Ok(())
        }
    }
}

/// Prints `group` (name, then one member a line), or its JSON.
fn show(group: &GroupView, json: bool) -> Result<()> {
    if json {
        return output::json(group);
    }
    outln!("group:   {}", safe(&group.name))?;
    if group.members.is_empty() {
        outln!("members: none")?;
    } else {
        outln!("members:")?;
        for m in &group.members {
            outln!("  {}", safe(m))?;
        }
    }
    Ok(())
}

pub async fn group(cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::Create {
            name,
            members,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view: GroupView = client
                .post("/v1/groups", &GroupCreate { name, members })
                .await?;
            show(&view, json)
        }
        GroupCommand::List(a) => {
            let client = Client::from_args(&a.client)?;
            let list: GroupList = client.get("/v1/groups").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&["NAME", "MEMBERS", "CREATED"]);
            for g in list.groups {
                t.row(vec![
                    g.name,
                    g.members.join(","),
                    output::time(g.created_at_ms),
                ]);
            }
            t.print()
        }
        GroupCommand::Show { name, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view: GroupView = client.get(&format!("/v1/groups/{}", seg(&name))).await?;
            show(&view, json)
        }
        GroupCommand::Add {
            name,
            users,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view: GroupView = client
                .post(
                    &format!("/v1/groups/{}/add", seg(&name)),
                    &GroupMembers { users },
                )
                .await?;
            show(&view, json)
        }
        GroupCommand::Remove {
            name,
            users,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view: GroupView = client
                .post(
                    &format!("/v1/groups/{}/remove", seg(&name)),
                    &GroupMembers { users },
                )
                .await?;
            show(&view, json)
        }
        GroupCommand::Delete { name, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(Method::DELETE, &format!("/v1/groups/{}", seg(&name)), None)
                .await?;
            eprintln!("group {} deleted", safe(&name));
            Ok(())
        }
    }
}
