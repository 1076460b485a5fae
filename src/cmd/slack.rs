//! `sealrun slack ...`: linking Slack workspaces and users (admin).

use super::seg;
use crate::cli::{RoleArg, SlackCommand};
use crate::client::Client;
use crate::output::{self, Table, safe};
use anyhow::{Context as _, Result, bail};
use reqwest::Method;
use sealrun_wire::slack::{
    ApprovalsChannel, UserLink, UserList, UserView, WorkspaceLink, WorkspaceList, WorkspaceView,
};
use std::io::{IsTerminal as _, Read as _};
use zeroize::Zeroizing;

pub async fn run(cmd: SlackCommand) -> Result<()> {
    match cmd {
        SlackCommand::LinkWorkspace { team_id, client } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let link = WorkspaceLink {
                signing_secret: read_credential("signing secret")?.to_string(),
            };
            let view: WorkspaceView = client
                .put(
                    &format!("/v1/integrations/slack/workspaces/{}", seg(&team_id)),
                    &link,
                )
                .await?;
            drop(link);
            if json {
                return output::json(&view);
            }
            eprintln!(
                "Slack workspace {} linked; now link its users with `sealrun slack link-user`",
                safe(&view.team_id)
            );
            Ok(())
        }
        SlackCommand::SetApprovals {
            team_id,
            channel,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let req = ApprovalsChannel {
                channel,
                bot_token: read_credential("bot token")?.to_string(),
            };
            let view: WorkspaceView = client
                .put(
                    &format!(
                        "/v1/integrations/slack/workspaces/{}/approvals",
                        seg(&team_id)
                    ),
                    &req,
                )
                .await?;
            drop(req);
            if json {
                return output::json(&view);
            }
            eprintln!(
                "approval requests of this org are now posted to channel {} of Slack workspace {}",
                safe(view.approvals_channel.as_deref().unwrap_or("-")),
                safe(&view.team_id)
            );
            Ok(())
        }
        SlackCommand::ClearApprovals { team_id, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(
                    Method::DELETE,
                    &format!(
                        "/v1/integrations/slack/workspaces/{}/approvals",
                        seg(&team_id)
                    ),
                    None,
                )
                .await?;
            eprintln!(
                "approval requests are no longer posted to Slack workspace {}",
                safe(&team_id)
            );
            Ok(())
        }
        SlackCommand::Workspaces(a) => {
            let client = Client::from_args(&a.client)?;
            let list: WorkspaceList = client.get("/v1/integrations/slack/workspaces").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&["TEAM", "LINKED", "SECRET SET", "APPROVALS CHANNEL"]);
            for w in list.workspaces {
                t.row(vec![
                    w.team_id,
                    output::time(w.linked_at_ms),
                    output::time(w.updated_at_ms),
                    w.approvals_channel.unwrap_or_else(|| "-".to_owned()),
                ]);
            }
            t.print()
        }
        SlackCommand::UnlinkWorkspace { team_id, client } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(
                    Method::DELETE,
                    &format!("/v1/integrations/slack/workspaces/{}", seg(&team_id)),
                    None,
                )
                .await?;
            eprintln!("Slack workspace {team_id} unlinked (with its users)");
            Ok(())
        }
        SlackCommand::LinkUser {
            team_id,
            user,
            as_user,
            name,
            role,
            client,
        } => {
            let json = client.json;
            let client = Client::from_args(&client)?;
            let view: UserView = client
                .put(
                    &format!(
                        "/v1/integrations/slack/users/{}/{}",
                        seg(&team_id),
                        seg(&user)
                    ),
                    &UserLink {
                        user: as_user,
                        name,
                        role: role.map(RoleArg::role),
                    },
                )
                .await?;
            if json {
                return output::json(&view);
            }
            eprintln!(
                "Slack user {} of {} linked as {} (role {})",
                safe(&view.user_id),
                safe(&view.team_id),
                safe(&view.name),
                view.role
            );
            Ok(())
        }
        SlackCommand::Users(a) => {
            let client = Client::from_args(&a.client)?;
            let list: UserList = client.get("/v1/integrations/slack/users").await?;
            if a.client.json {
                return output::json(&list);
            }
            let mut t = Table::new(&["TEAM", "USER", "NAME", "ROLE", "UPDATED", "DISABLED"]);
            for u in list.users {
                t.row(vec![
                    u.team_id,
                    u.user_id,
                    u.name,
                    u.role.to_string(),
                    output::time(u.updated_at_ms),
                    if u.disabled { "yes" } else { "-" }.to_owned(),
                ]);
            }
            t.print()
        }
        SlackCommand::UnlinkUser {
            team_id,
            user,
            client,
        } => {
            let client = Client::from_args(&client)?;
            client
                .send::<()>(
                    Method::DELETE,
                    &format!(
                        "/v1/integrations/slack/users/{}/{}",
                        seg(&team_id),
                        seg(&user)
                    ),
                    None,
                )
                .await?;
            eprintln!("Slack user {user} of {team_id} unlinked");
            Ok(())
        }
    }
}

/// Reads a credential (`what`: "signing secret", "bot token") from stdin,
/// or a hidden prompt on a terminal; surrounding whitespace (a trailing
/// newline) is dropped.
fn read_credential(what: &str) -> Result<Zeroizing<String>> {
    let mut value = Zeroizing::new(String::with_capacity(1024));
    if std::io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(format!("Slack {what} (hidden): "))
                .with_context(|| format!("cannot read the {what} from the terminal"))?,
        );
        value.push_str(&typed);
    } else {
        std::io::stdin()
            .lock()
            .read_to_string(&mut value)
            .with_context(|| format!("cannot read the {what} from stdin"))?;
    }
    let trimmed = Zeroizing::new(value.trim().to_owned());
    if trimmed.is_empty() {
        bail!("the {what} is empty: pipe it on stdin");
    }
    Ok(trimmed)
}
