//! `sealrun`: one binary for the control plane (`server`), the agent
//! (`agent`), a local all-in-one setup (`dev`) and every client command.
//!
//! Errors are one line on stderr and a non-zero exit; never a panic or a
//! backtrace for a user's mistake.
//!
//! A closed stdout (`sealrun runs list | head`) ends any command quietly
//! with exit 141, as a process killed by SIGPIPE would (128 + 13): nothing
//! on stderr, and a script can tell it from success. Output goes through
//! `output::outln!` and other writes that return `EPIPE` as an error rather
//! than `println!`, which panics; the error is recognised here, in the one
//! place errors are printed (`run` and `runs logs --follow` do the same).

// The doc comments of `cli.rs` are clap's --help text, written for a terminal
// (bare URLs, `[[target]]`), not rustdoc markup.
#![allow(rustdoc::bare_urls, rustdoc::broken_intra_doc_links)]

mod cli;
mod client;
mod cmd;
mod config;
mod input;
mod logging;
mod output;
mod profile;
mod signal;

use clap::Parser as _;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sealrun: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::from(cmd::run::EXIT_SIGPIPE),
        Err(e) => {
            // The context chain on one line, "a: b: c", each cause once
            // (`error_line`). It may quote what others wrote (a run's error,
            // a name): `safe` keeps their control characters from acting on
            // the terminal.
            eprintln!("sealrun: {}", output::safe(&output::error_line(&e)));
            ExitCode::FAILURE
        }
    }
}

/// `sealrun completions SHELL`: the script clap_complete derives from the
/// command line definition, written with `outln!`'s error handling (clap's
/// own writer panics on a closed stdout).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    use std::io::Write as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sealrun", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Server(a) => ok(cmd::server::run(a).await),
        Command::Agent(a) => ok(cmd::agent::run(a).await),
        Command::Dev(a) => ok(cmd::dev::run(a).await),
        Command::Login(a) => ok(cmd::session::login(a).await),
        Command::Logout(a) => ok(cmd::session::logout(a).await),
        Command::Whoami(a) => ok(cmd::session::whoami(a).await),
        Command::Target(c) => ok(cmd::target::run(c).await),
        Command::Secret(c) => ok(cmd::secret::run(c).await),
        Command::Run(a) => cmd::run::run(a).await,
        Command::Runs(c) => cmd::runs::run(c).await,
        Command::Approvals(c) => ok(cmd::approvals::run(c).await),
        Command::Runbook(c) => ok(cmd::runbook::run(c).await),
        Command::Token(c) => ok(cmd::token::run(c).await),
        Command::User(c) => ok(cmd::people::user(c).await),
        Command::Group(c) => ok(cmd::people::group(c).await),
        Command::AgentPool(c) => ok(cmd::pool::run(c).await),
        Command::Agents(c) => ok(cmd::pool::run_agents(c).await),
        Command::Audit(c) => cmd::audit::run(c).await,
        Command::Slack(c) => ok(cmd::slack::run(c).await),
        Command::Keys(c) => ok(cmd::trust::keys(c).await),
        Command::Trust(c) => ok(cmd::trust::trust(c).await),
        Command::Completions { shell } => ok(completions(shell)),
    }
}
