//! Every example in the documentation works as written on a fresh
//! `sealrun dev`, found where it is written, so an example is tested the day
//! it is written:
//!
//! - the ```` ```sh ````, ```` ```bash ````, ```` ```shell ```` and
//!   ```` ```console ```` blocks of README.md (in a `console` block, the
//!   lines after a `$ ` prompt);
//! - the `Examples:` section of `sealrun --help` and of every subcommand's
//!   `--help`, found by walking the `Commands:` sections (the binary is the
//!   only way to the clap definition from here);
//! - the files in `examples/` that `sealrun target apply` takes, after the
//!   commands their comments say to run first (comment lines `#   sealrun ...`).
//!
//! Each document (README.md, a help page, an applied file) runs in one
//! `bash` (`-o pipefail`), line after line as a reader types them, so
//! `id=$(sealrun run --detach ...)` serves the next line. All help pages run
//! against one dev in the order `--help` lists them, so a page may rely on
//! an earlier one (`logout` after `login`, `slack unlink-workspace` last).
//! Each line gets an empty stdin unless it pipes one, and at most [`WAIT`];
//! it must exit 0, or the code its comment documents (`# exits 124`). The
//! shell has the dev's `dev.env` settings, the `sealrun` under test first on
//! `PATH`, a working directory with `examples/`, and the variables the
//! examples expect a reader to have ([`READER_ENV`]). One placeholder is
//! filled in ([`fill`]): `<token-id>`, for an id a reader copies from
//! `sealrun token list`. The password never comes back in any output.
//!
//! A line that cannot run against a dev (a daemon, a script, a production
//! URL) is named in [`EXEMPT`] with the reason; an exemption that no longer
//! names a line fails, so the list stays true.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sealrun_testkit::{Cli, DevProcess, WAIT, require_docker, sealrun_bin, text, workspace_root};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

/// Lines that are not run against the test's dev, each with why: the
/// document they are in, the start of the line(s) (after any `$ `), and a
/// one-line reason.
const EXEMPT: &[(&str, &str, &str)] = &[
    (
        "README.md",
        "./scripts/demo.sh",
        "provisions Docker, builds sealrun and starts a dev of its own",
    ),
    (
        "README.md",
        "./scripts/test.sh",
        "the whole suite, this test included",
    ),
    (
        "README.md",
        "sealrun dev --data-dir /tmp/sr &",
        "the dev every other line runs against: the test kit starts it",
    ),
    (
        "README.md",
        "source /tmp/sr/dev.env",
        "the shell is given that dev's dev.env settings",
    ),
    (
        "README.md",
        "cargo ",
        "builds and runs the tests and benchmarks",
    ),
    (
        "README.md",
        "./scripts/build-init.sh",
        "builds the shim (the test kit has already built it)",
    ),
    (
        "sealrun --help",
        "sealrun dev",
        "the dev every other line runs against: the test kit starts it",
    ),
    (
        "sealrun --help",
        "source .sealrun-dev/dev.env",
        "the shell is given that dev's dev.env settings",
    ),
    (
        "sealrun server --help",
        "sealrun server ",
        "a control plane of its own, in /var/lib/sealrun or a config file",
    ),
    (
        "sealrun server create-org --help",
        "sealrun server create-org --data-dir /var/lib/sealrun ",
        "a production server's data directory",
    ),
    (
        "sealrun server migrate-store --help",
        "SEALRUN_DATABASE_URL=postgres://",
        "a production PostgreSQL database and a stopped server's SQLite file",
    ),
    (
        "sealrun agent --help",
        "sealrun agent ",
        "an agent of a production control plane, configured in /etc",
    ),
    (
        "sealrun dev --help",
        "sealrun dev",
        "a second dev: the test kit starts the one the examples run against",
    ),
    (
        "sealrun login --help",
        "sealrun login --url https://sealrun.example:8443",
        "a production control plane",
    ),
    (
        "sealrun login --help",
        "pass show sealrun | ",
        "a production control plane, and a password store",
    ),
    (
        "sealrun secret set --help",
        "sealrun secret set --target demo DB_PASSWORD     # prompts",
        "prompts on a terminal",
    ),
    (
        "sealrun run --help",
        "sealrun run --target prod-db ",
        "a PostgreSQL target served by an agent in its network",
    ),
    (
        "sealrun approvals approve --help",
        "sealrun approvals approve run_",
        "needs a run waiting for approval and a second person its rule names (README's Approvals section runs it)",
    ),
    (
        "sealrun approvals reject --help",
        "sealrun approvals reject run_",
        "needs a run waiting for approval and a second person its rule names (README's Approvals section runs it)",
    ),
    (
        "sealrun agents revoke --help",
        "sealrun agents revoke ",
        "the dev has one agent, and `sealrun dev` stops when it is revoked",
    ),
    (
        "sealrun target trust --help",
        "sealrun target trust demo --key-id k1_0123456789abcdef0123456789abcdef --report-key ak1_0123456789abcdef -f examples/targets.toml",
        "a key id the reader reads from `sealrun target show` and checks on the agent's host; `sealrun dev` certified demo's key already",
    ),
    (
        "sealrun keys init --help",
        "sealrun keys init --admin",
        "the dev made this machine's signing key already (dev.env names it); a second `init` refuses to replace it",
    ),
    (
        "sealrun trust remove --help",
        "sealrun trust remove ",
        "an example key this machine does not trust",
    ),
    (
        "sealrun slack link-workspace --help",
        "sealrun slack link-workspace --team-id T0123ABCD     # prompts",
        "prompts on a terminal",
    ),
];

/// What the examples expect a reader to have in their shell.
const READER_ENV: &[(&str, &str)] = &[
    ("PW", "correct-horse-battery-staple"),
    ("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5"),
    (
        "SLACK_BOT_TOKEN",
        "xoxb-0123456789-0123456789-abcdefghijklmnopqrstuvwx",
    ),
];

/// The files of `examples/` that `sealrun target apply -f` takes.
const APPLIED: &[&str] = &["targets.toml"];

/// The other TOML files of `examples/`, each with why it is not applied.
const NOT_APPLIED: &[(&str, &str)] = &[
    (
        "server.toml",
        "`sealrun server --config`'s file (parsed by the unit tests)",
    ),
    (
        "agent.toml",
        "`sealrun agent --config`'s file (parsed by the unit tests)",
    ),
    (
        "runbooks.toml",
        "`sealrun runbook apply -f`'s file: applied by `sealrun runbook apply --help`'s example (and parsed by the unit tests)",
    ),
];

/// One logical line of a document (`\` continuations joined).
#[derive(Debug, Clone)]
struct Example {
    /// `README.md`, `sealrun runs logs --help`, `examples/targets.toml`.
    source: String,
    line: String,
}

impl Example {
    fn exemption(&self) -> Option<&'static (&'static str, &'static str, &'static str)> {
        EXEMPT
            .iter()
            .find(|(source, start, _)| *source == self.source && self.line.starts_with(start))
    }
}

/// Joins `\`-continued lines and drops blank and comment-only ones.
fn logical_lines<'a>(source: &str, lines: impl IntoIterator<Item = &'a str>) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut pending = String::new();
    for line in lines {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                examples.push(Example {
                    source: source.to_owned(),
                    line: std::mem::take(&mut pending),
                });
            }
        }
    }
    assert!(pending.is_empty(), "{source} ends in a `\\` continuation");
    examples
}

/// The shell lines of README.md's code blocks, in document order.
fn readme_examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut lines = Vec::new();
    let mut block: Option<&str> = None;
    for line in readme.lines() {
        let fence = line.trim_start();
        match (block, fence.strip_prefix("```")) {
            (None, Some(info)) => block = Some(info.trim()),
            (Some(_), Some(_)) => block = None,
            (Some("sh" | "bash" | "shell"), None) => lines.push(line),
            (Some("console"), None) => lines.extend(fence.strip_prefix("$ ")),
            _ => {}
        }
    }
    assert!(block.is_none(), "README.md has an unclosed code block");
    logical_lines("README.md", lines)
}

/// `sealrun ARGS --help`, as a reader's pager shows it.
fn help(args: &[String]) -> String {
    let out = Command::new(sealrun_bin())
        .args(args)
        .arg("--help")
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(out.status.success(), "sealrun {args:?} --help failed");
    text(&out.stdout)
}

/// The lines of a help text's section `title` that are indented by two
/// spaces (deeper ones are continuations), up to the first other line.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| l.trim_end() != title)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}

/// A page of the command tree: `sealrun runs logs` and its `--help`.
struct Page {
    command: Vec<String>,
    help: String,
}

impl Page {
    fn name(&self) -> String {
        let mut words = vec!["sealrun".to_owned()];
        words.extend(self.command.iter().cloned());
        words.push("--help".to_owned());
        words.join(" ")
    }

    /// The names of its subcommands, from its `Commands:` section.
    fn subcommands(&self) -> Vec<String> {
        section(&self.help, "Commands:")
            .iter()
            .filter(|l| !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_owned)
            .collect()
    }

    fn examples(&self) -> Vec<Example> {
        logical_lines(&self.name(), section(&self.help, "Examples:"))
    }
}

/// `sealrun --help` and every subcommand's, depth first in the order the
/// `Commands:` sections list them.
fn help_pages() -> Vec<Page> {
    fn walk(command: Vec<String>, pages: &mut Vec<Page>) {
        let page = Page {
            help: help(&command),
            command,
        };
        let subcommands = page.subcommands();
        let command = page.command.clone();
        pages.push(page);
        for sub in subcommands {
            let mut path = command.clone();
            path.push(sub);
            walk(path, pages);
        }
    }
    let mut pages = Vec::new();
    walk(Vec::new(), &mut pages);
    pages
}

/// The `#   sealrun ...` commands a file of `examples/` says to run before
/// using it.
fn file_prerequisites(file: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(workspace_root().join("examples").join(file)).unwrap();
    let commands = text
        .lines()
        .filter_map(|l| l.strip_prefix("#   ").filter(|c| c.starts_with("sealrun ")));
    logical_lines(&format!("examples/{file}"), commands)
}

/// Every example of every document.
fn all_examples() -> Vec<Example> {
    let mut all = readme_examples();
    for page in help_pages() {
        all.extend(page.examples());
    }
    for file in APPLIED {
        all.extend(file_prerequisites(file));
    }
    all
}

/// The exit code a line's comment documents (`# exits 124`), else 0.
fn documented_exit_code(line: &str) -> i32 {
    line.rsplit_once(" # ")
        .and_then(|(_, comment)| {
            let after = comment.split("exits ").nth(1)?;
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// The placeholders [`fill`] knows.
const PLACEHOLDERS: &[&str] = &["<token-id>"];

/// `line` with its placeholders replaced: `<token-id>` by the id of the
/// newest token that is not revoked (what a reader picks from
/// `sealrun token list` after creating one to revoke).
fn fill(line: &str, cli: &Cli) -> String {
    if !line.contains("<token-id>") {
        return line.to_owned();
    }
    let tokens = cli.json(&["token", "list"]);
    let newest = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["revoked_at_ms"].is_null())
        .max_by_key(|t| t["created_at_ms"].as_i64())
        .expect("a token to revoke");
    line.replace("<token-id>", newest["id"].as_str().unwrap())
}

/// `<word>` placeholders in `line` that [`fill`] does not know.
fn unknown_placeholders(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let placeholder = format!("<{word}>");
        if !word.is_empty()
            && rest[word.len()..].starts_with('>')
            && !PLACEHOLDERS.contains(&placeholder.as_str())
        {
            found.push(placeholder);
        }
    }
    found
}

/// A `bash` reading one document's lines as a reader's terminal would, in
/// a process group of its own (killed with everything it started on drop).
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    done: Receiver<String>,
    /// Each line's stdout and stderr (`N.out`, `N.err`) and the shell's own
    /// stderr (`shell.err`).
    outputs: tempfile::TempDir,
    lines: usize,
}

/// How a line ended.
struct Ended {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Shell {
    /// A shell with `cli`'s settings (those `dev.env` exports, and its
    /// `HOME`), the `sealrun` under test first on `PATH`, [`READER_ENV`],
    /// and `cwd` as its working directory.
    fn start(cli: &Cli, cwd: &Path) -> Shell {
        let outputs = tempfile::tempdir().unwrap();
        let reference = cli.command(&[]);
        let mut bash = Command::new("bash");
        for (name, value) in reference.get_envs() {
            match value {
                Some(value) => bash.env(name, value),
                None => bash.env_remove(name),
            };
        }
        let bin_dir = sealrun_bin().parent().unwrap().to_owned();
        let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )))
        .unwrap();
        let mut child = bash
            .args(["--noprofile", "--norc", "-o", "pipefail", "-s"])
            .envs(READER_ENV.iter().copied())
            .env("PATH", path)
            .env_remove("BASH_ENV")
            .env_remove("ENV")
            .current_dir(cwd)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(outputs.path().join("shell.err")).unwrap())
            .spawn()
            .expect("bash starts");
        let stdout = child.stdout.take().unwrap();
        let (send, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Shell {
            stdin: child.stdin.take(),
            child,
            done,
            outputs,
            lines: 0,
        }
    }

    /// Runs `line` (stdin empty unless it pipes one) and waits for it, up to
    /// [`WAIT`].
    fn run(&mut self, line: &str) -> Result<Ended, String> {
        self.lines += 1;
        let n = self.lines;
        let out = self.outputs.path().join(format!("{n}.out"));
        let err = self.outputs.path().join(format!("{n}.err"));
        let script = format!(
            "{{ {line}\n}} </dev/null >'{}' 2>'{}'; echo \"done {n} $?\"\n",
            out.display(),
            err.display()
        );
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(script.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("the shell stopped reading: {e}{}", self.shell_errors()))?;
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        let status = match self.done.recv_timeout(WAIT) {
            Ok(status) => status,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "still running after {WAIT:?}\nstdout:\n{}\nstderr:\n{}{}",
                    read(&out),
                    read(&err),
                    self.shell_errors()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("the shell exited{}", self.shell_errors()));
            }
        };
        let code = status
            .strip_prefix(&format!("done {n} "))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("the shell printed {status:?}, not line {n}'s status"));
        Ok(Ended {
            code,
            stdout: read(&out),
            stderr: read(&err),
        })
    }

    fn shell_errors(&self) -> String {
        let errors =
            std::fs::read_to_string(self.outputs.path().join("shell.err")).unwrap_or_default();
        if errors.is_empty() {
            String::new()
        } else {
            format!("\nthe shell said:\n{errors}")
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// A working directory as a reader's checkout: `examples/` in it.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        workspace_root().join("examples"),
        dir.path().join("examples"),
    )
    .unwrap();
    dir
}

/// Why `line` is not valid shell, if it is not (sent to a [`Shell`], it
/// would swallow the lines after it).
fn shell_syntax_error(line: &str) -> Option<String> {
    let check = Command::new("bash")
        .args(["-n", "-c", &format!("{{ {line}\n}}")])
        .output()
        .unwrap();
    (!check.status.success()).then(|| text(&check.stderr))
}

/// Runs every document's lines that are not exempted, each document in a
/// shell of its own and all against `dev`, in order; the failures, each
/// with what the line printed.
fn run_documents(dev: &DevProcess, documents: &[Vec<Example>]) -> Vec<String> {
    let cwd = checkout();
    let (_, password) = READER_ENV.iter().find(|(name, _)| *name == "PW").unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for document in documents {
        let mut shell = Shell::start(&dev.cli, cwd.path());
        for example in document.iter().filter(|e| e.exemption().is_none()) {
            let line = fill(&example.line, &dev.cli);
            if let Some(why) = shell_syntax_error(&line) {
                failures.push(format!(
                    "{}: `{line}` is not valid shell: {why}",
                    example.source
                ));
                continue;
            }
            ran += 1;
            let expected = documented_exit_code(&line);
            match shell.run(&line) {
                Err(why) => {
                    failures.push(format!(
                        "{}: `{line}`: {why}\n(the rest of {} was not run)",
                        example.source, example.source
                    ));
                    break;
                }
                Ok(ended) if ended.code != expected => failures.push(format!(
                    "{}: `{line}` exited {} (expected {expected})\nstdout:\n{}\nstderr:\n{}",
                    example.source, ended.code, ended.stdout, ended.stderr
                )),
                Ok(ended) if (ended.stdout.clone() + &ended.stderr).contains(password) => failures
                    .push(format!(
                        "{}: `{line}` printed the password $PW unmasked:\n{}{}",
                        example.source, ended.stdout, ended.stderr
                    )),
                Ok(_) => {}
            }
        }
    }
    assert!(ran > 0, "no example ran");
    failures
}

fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} example(s) fail as written on a fresh `sealrun dev`:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_readme_shell_example_works_on_a_fresh_dev() {
    if !require_docker() {
        return;
    }
    let examples = readme_examples();
    // Positive control: the extraction sees the README's first steps.
    assert!(
        examples
            .iter()
            .any(|e| e.line.starts_with("sealrun runs list")),
        "{examples:#?}"
    );
    let dev = DevProcess::start();
    assert_no_failures(&run_documents(&dev, &[examples]));
}

#[test]
fn every_help_example_works_on_a_fresh_dev() {
    if !require_docker() {
        return;
    }
    let pages: Vec<Vec<Example>> = help_pages().iter().map(Page::examples).collect();
    // Positive control: the walk reaches nested subcommands' examples.
    assert!(
        pages
            .iter()
            .flatten()
            .any(|e| e.source == "sealrun audit export --help"),
        "no examples found under `sealrun audit export --help`"
    );
    let dev = DevProcess::start();
    assert_no_failures(&run_documents(&dev, &pages));
}

#[test]
fn every_example_file_sealrun_can_apply_applies_to_a_fresh_dev() {
    if !require_docker() {
        return;
    }
    let dev = DevProcess::start();
    for file in APPLIED {
        // As its comments say: their commands first, then the file.
        let mut steps = file_prerequisites(file);
        steps.push(Example {
            source: format!("examples/{file}"),
            line: format!("sealrun target apply -f examples/{file}"),
        });
        assert_no_failures(&run_documents(&dev, &[steps]));

        let declared: toml::Value = toml::from_str(
            &std::fs::read_to_string(workspace_root().join("examples").join(file)).unwrap(),
        )
        .unwrap();
        let listed = dev.cli.json(&["target", "list"]).to_string();
        for target in declared["target"].as_array().expect("[[target]] tables") {
            let name = target["name"].as_str().unwrap();
            assert!(
                listed.contains(&format!("\"{name}\"")),
                "{file}'s target {name} is not listed: {listed}"
            );
        }
    }
}

#[test]
fn every_toml_file_in_examples_is_applied_or_says_why_not() {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    let examples = workspace_root().join("examples");
    let mut files = Vec::new();
    walk(&examples, &mut files);
    let listed: Vec<&str> = APPLIED
        .iter()
        .copied()
        .chain(NOT_APPLIED.iter().map(|(file, _)| *file))
        .collect();
    for file in &files {
        let name = file.strip_prefix(&examples).unwrap().to_str().unwrap();
        assert!(
            listed.contains(&name),
            "examples/{name} is neither in APPLIED nor in NOT_APPLIED (with why)"
        );
    }
    for name in listed {
        assert!(
            examples.join(name).is_file(),
            "examples/{name} is listed but does not exist"
        );
    }
}

#[test]
fn every_exemption_names_a_documented_line() {
    let examples = all_examples();
    // Positive control: an exemption that must match does.
    assert!(examples.iter().any(|e| {
        e.exemption()
            .is_some_and(|(_, start, _)| *start == "./scripts/demo.sh")
    }));
    for (source, start, why) in EXEMPT {
        assert!(
            examples
                .iter()
                .any(|e| e.source == *source && e.line.starts_with(start)),
            "the exemption of `{start}` in {source} ({why}) matches no line any more: remove it"
        );
    }
}

#[test]
fn every_example_that_runs_has_only_placeholders_the_test_fills() {
    let examples = all_examples();
    // Positive control: the detector sees a placeholder.
    assert_eq!(unknown_placeholders("sealrun runs logs <id> -f"), ["<id>"]);
    assert!(unknown_placeholders("source <(sealrun completions bash) < f").is_empty());
    let unfilled: Vec<String> = examples
        .iter()
        .filter(|e| e.exemption().is_none())
        .filter(|e| !unknown_placeholders(&e.line).is_empty())
        .map(|e| format!("{}: {}", e.source, e.line))
        .collect();
    assert!(
        unfilled.is_empty(),
        "placeholders the test cannot fill (make them concrete, e.g. \
         id=$(sealrun run --detach ...) then \"$id\"):\n{}",
        unfilled.join("\n")
    );
}

#[test]
fn every_command_has_examples_in_its_help() {
    let pages = help_pages();
    // Positive control: the walk reaches the leaves.
    assert!(pages.iter().any(|p| p.command == ["runs", "logs"]));
    let without: Vec<String> = pages
        .iter()
        .filter(|p| p.subcommands().is_empty() && p.examples().is_empty())
        .map(Page::name)
        .collect();
    assert!(
        without.is_empty(),
        "no Examples: section (README: every subcommand's --help lists examples):\n{}",
        without.join("\n")
    );
}
