//! What a user typed after `/sealrun`, parsed into a [`Command`].

use super::escape;
use sealrun_control::Action;
use sealrun_wire::shell;
use std::collections::BTreeMap;

/// A slash command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `run <target> [--secret NAME]... -- <command...>`
    Run {
        target: String,
        secrets: Vec<String>,
        argv: Vec<String>,
    },
    /// `run <runbook> [--target T] [name=value]...` (no `--`)
    Runbook {
        name: String,
        target: Option<String>,
        params: BTreeMap<String, String>,
    },
    /// `status <run-id>`
    Status(String),
    /// `logs <run-id>`
    Logs(String),
    /// `cancel <run-id>`
    Cancel(String),
    /// `help`, or nothing at all.
    Help,
}

impl Command {
    /// Whether it changes something (needs the operator or admin role).
    pub(crate) fn mutates(&self) -> bool {
        matches!(
            self,
            Command::Run { .. } | Command::Runbook { .. } | Command::Cancel(_)
        )
    }

    /// What it asks to do, in the terms of the permission table (`help`
    /// asks nothing).
    pub(crate) fn action(&self) -> Option<Action> {
        match self {
            Command::Run { .. } | Command::Runbook { .. } => Some(Action::SubmitRuns),
            Command::Cancel(_) => Some(Action::CancelRuns),
            Command::Status(_) => Some(Action::ReadRuns),
            Command::Logs(_) => Some(Action::ReadLogs),
            Command::Help => None,
        }
    }
}

/// Usage, as shown by `help` and after a mistake (Slack `mrkdwn`).
pub(crate) const USAGE: &str = "\
*sealrun* runs a command on a target, with its secrets masked in the output:
• `/sealrun run <target> [--secret NAME]... -- <command...>`: queue a run; the result is posted here when it ends
• `/sealrun run <runbook> [--target T] [name=value]...`: run a runbook (no `--`: the first word is a runbook); `--target` only if it has several
• `/sealrun status <run-id>`: where a run is
• `/sealrun logs <run-id>`: the end of its (redacted) output
• `/sealrun cancel <run-id>`: stop a run
• `/sealrun help`: this text
Example: `/sealrun run prod-db --secret PGPASSWORD -- psql -c 'select 1'`
Example: `/sealrun run restart-api service=web`
Words are split like a shell does (quotes, backslashes); nothing is expanded.";

/// Parses the text Slack sent (still entity-escaped). The error is a
/// message for the user, without any formatting of its own.
pub(crate) fn parse(text: &str) -> Result<Command, String> {
    let words = shell::split(&escape::unescape(text))
        .map_err(|e| format!("cannot read the command: {e}"))?;
    let Some((verb, rest)) = words.split_first() else {
        return Ok(Command::Help);
    };
    let one_id = |what: &str| -> Result<String, String> {
        match rest {
            [id] => Ok(id.clone()),
            _ => Err(format!(
                "`{what}` takes one run id, e.g. `{what} run_0123456789abcdef`"
            )),
        }
    };
    match verb.as_str() {
        "run" => parse_run(rest),
        "status" => one_id("status").map(Command::Status),
        "logs" => one_id("logs").map(Command::Logs),
        "cancel" => one_id("cancel").map(Command::Cancel),
        "help" if rest.is_empty() => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}; try `help`")),
    }
}

/// `run` with a `--` is an ad-hoc command (`run <target> ... -- <command>`);
/// without one, its first word is a runbook (`run <runbook> name=value...`).
/// The two cannot be confused: a runbook call never contains `--`.
fn parse_run(words: &[String]) -> Result<Command, String> {
    let usage = "usage: `run <target> [--secret NAME]... -- <command...>` or `run <runbook> [--target T] [name=value]...`";
    let Some(dashes) = words.iter().position(|w| w == "--") else {
        return parse_runbook(words, usage);
    };
    let (options, command) = (&words[..dashes], &words[dashes + 1..]);
    let mut target = None;
    let mut secrets = Vec::new();
    let mut it = options.iter();
    while let Some(w) = it.next() {
        if let Some(name) = w.strip_prefix("--secret=") {
            secrets.push(name.to_owned());
        } else if w == "--secret" {
            let name = it
                .next()
                .ok_or_else(|| format!("`--secret` needs a secret name; {usage}"))?;
            secrets.push(name.clone());
        } else if w.starts_with('-') {
            return Err(format!("unknown option {w:?}; {usage}"));
        } else if target.is_some() {
            return Err(format!("unexpected {w:?} before `--`; {usage}"));
        } else {
            target = Some(w.clone());
        }
    }
    let target = target.ok_or_else(|| format!("name a target; {usage}"))?;
    if command.is_empty() {
        return Err(format!("name a command after `--`; {usage}"));
    }
    Ok(Command::Run {
        target,
        secrets,
        argv: command.to_vec(),
    })
}

fn parse_runbook(words: &[String], usage: &str) -> Result<Command, String> {
    let Some((name, rest)) = words.split_first() else {
        return Err(format!("name a runbook or a target; {usage}"));
    };
    if name.starts_with('-') {
        return Err(format!(
            "name a runbook first, or put `--` before the command to run; {usage}"
        ));
    }
    let mut target = None;
    let mut params = BTreeMap::new();
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        let t = if let Some(t) = w.strip_prefix("--target=") {
            Some(t.to_owned())
        } else if w == "--target" {
            Some(
                it.next()
                    .ok_or_else(|| format!("`--target` needs a target name; {usage}"))?
                    .clone(),
            )
        } else {
            None
        };
        if let Some(t) = t {
            if target.replace(t).is_some() {
                return Err(format!("`--target` is given twice; {usage}"));
            }
            continue;
        }
        if w.starts_with('-') {
            return Err(format!(
                "unknown option {w:?} (to run a command, put `--` before the command); {usage}"
            ));
        }
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                if params.insert(k.to_owned(), v.to_owned()).is_some() {
                    return Err(format!("parameter {k} is given twice; {usage}"));
                }
            }
            _ => {
                return Err(format!(
                    "{w:?} is not a name=value parameter of a runbook (to run a command, put `--` before the command); {usage}"
                ));
            }
        }
    }
    Ok(Command::Runbook {
        name: name.clone(),
        target,
        params,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(target: &str, secrets: &[&str], argv: &[&str]) -> Command {
        Command::Run {
            target: target.into(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_run_names_its_target_secrets_and_command() {
        assert_eq!(
            parse("run db --secret A --secret=B -- sh -c 'echo $A; exit 3'").unwrap(),
            run("db", &["A", "B"], &["sh", "-c", "echo $A; exit 3"])
        );
        assert_eq!(
            parse("run --secret A db -- ls").unwrap(),
            run("db", &["A"], &["ls"])
        );
    }

    #[test]
    fn everything_after_the_first_double_dash_is_the_command() {
        assert_eq!(
            parse("run db -- grep -- --secret x").unwrap(),
            run("db", &[], &["grep", "--", "--secret", "x"])
        );
    }

    #[test]
    fn slack_entities_in_the_command_are_decoded() {
        assert_eq!(
            parse("run db -- sh -c 'a &amp;&amp; b &gt; /tmp/x &lt; /dev/null'").unwrap(),
            run("db", &[], &["sh", "-c", "a && b > /tmp/x < /dev/null"])
        );
    }

    #[test]
    fn typographic_quotes_from_slack_clients_work() {
        assert_eq!(
            parse("run db -- sh -c \u{2018}echo hi\u{2019}").unwrap(),
            run("db", &[], &["sh", "-c", "echo hi"])
        );
    }

    #[test]
    fn a_run_without_double_dash_target_or_command_is_refused_with_usage() {
        for bad in [
            "run db ls",
            "run --secret A db ls",
            "run -- ls",
            "run db --",
            "run db --secret",
            "run db --secret -- ls",
            "run db extra -- ls",
            "run db --image x -- ls",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("usage"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_run_without_double_dash_calls_a_runbook_with_its_params() {
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            parse("run restart-api service=web").unwrap(),
            Command::Runbook {
                name: "restart-api".into(),
                target: None,
                params: params(&[("service", "web")]),
            }
        );
        // A value keeps its spaces, `=` and shell syntax as one value.
        assert_eq!(
            parse("run q --target=db sql='a=b; rm -rf /' n=3").unwrap(),
            Command::Runbook {
                name: "q".into(),
                target: Some("db".into()),
                params: params(&[("sql", "a=b; rm -rf /"), ("n", "3")]),
            }
        );
        assert_eq!(
            parse("run q --target db").unwrap(),
            Command::Runbook {
                name: "q".into(),
                target: Some("db".into()),
                params: params(&[]),
            }
        );
        for bad in [
            "run q a=1 a=2",
            "run q --target",
            "run q --secret X",
            "run q =v",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("usage"), "{bad}: {e}");
        }
    }

    #[test]
    fn status_logs_and_cancel_take_exactly_one_run_id() {
        assert_eq!(
            parse("status run_1").unwrap(),
            Command::Status("run_1".into())
        );
        assert_eq!(
            parse(" logs  run_1 ").unwrap(),
            Command::Logs("run_1".into())
        );
        assert_eq!(
            parse("cancel run_1").unwrap(),
            Command::Cancel("run_1".into())
        );
        assert!(parse("status").is_err());
        assert!(parse("cancel a b").is_err());
    }

    #[test]
    fn nothing_or_help_is_help_and_anything_else_is_refused() {
        assert_eq!(parse("").unwrap(), Command::Help);
        assert_eq!(parse("help").unwrap(), Command::Help);
        assert!(
            parse("deploy everything")
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(
            parse("run db -- 'oops")
                .unwrap_err()
                .contains("never closed")
        );
    }

    #[test]
    fn only_run_and_cancel_change_anything() {
        assert!(parse("run db -- ls").unwrap().mutates());
        assert!(parse("cancel r").unwrap().mutates());
        assert!(!parse("status r").unwrap().mutates());
        assert!(!parse("logs r").unwrap().mutates());
        assert!(!parse("help").unwrap().mutates());
    }
}
