//! `socklab`: run one server model, drive it, talk to it, compare them all.
//!
//! This binary only parses arguments and calls the libraries (mini-redis'
//! `src/bin/server.rs` habit): the models live in their own crates.

mod args;
mod client;
mod compare;
mod hold;
mod load_cmd;
mod serve;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "socklab",
    version,
    about = "One tiny service (uppercase echo) under every classic server concurrency model, measured.",
    after_help = "Examples:\n  socklab serve thread            # serve on 127.0.0.1:7788\n  socklab load 127.0.0.1:7788 -c 100 -d 10s\n  socklab compare                  # every model, every scenario (scripts/compare.sh)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one server model (prints its bound addresses on one line, then serves until SIGINT/SIGTERM).
    #[command(
        after_help = "Example: socklab serve nonblocking --tcp 127.0.0.1:7788 --udp 127.0.0.1:7789"
    )]
    Serve(serve::ServeArgs),
    /// List the server models, one line each.
    #[command(after_help = "Example: socklab models")]
    Models,
    /// Talk to a server by hand, like the Python tutorial's `>>>` client.
    #[command(after_help = "Example: socklab client --tcp 127.0.0.1:7788")]
    Client(client::ClientArgs),
    /// Drive a server with the load generator and print what it measured.
    #[command(
        after_help = "Example: socklab load 127.0.0.1:7788 --conns 100 --duration 2m --json load.json"
    )]
    Load(load_cmd::LoadArgs),
    /// Run every model through every scenario; write results/<date>-<host>/report.md.
    #[command(
        after_help = "Example: socklab compare --models thread,nonblocking --scenarios scaling"
    )]
    Compare(compare::CompareArgs),
    /// Run one server under a long mix of clients; fail if its descriptors, memory,
    /// threads or processes grow.
    #[command(after_help = "Example: socklab soak thread --duration 3m --json soak.json")]
    Soak(soak::SoakArgs),
    /// Rebuild report.md, report.html, results.csv and charts/ of a run from its results.json alone;
    /// with --baseline, also write baseline.md: what changed against an earlier run.
    #[command(after_help = REPORT_EXAMPLE)]
    Report {
        /// A run directory written by `socklab compare`.
        dir: std::path::PathBuf,
        /// An earlier run directory of the same matrix: write DIR/baseline.md, each
        /// model's figures in both runs and whether they moved beyond both runs'
        /// min–max ranges.
        #[arg(long, value_name = "OLD")]
        baseline: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Models => {
            print_models();
            Ok(())
        }
        Command::Client(args) => client::run(args),
        Command::Load(args) => load_cmd::run(args),
        Command::Compare(args) => match compare::run(args) {
            Ok(compare::Outcome::Interrupted) => {
                return ExitCode::from(compare::EXIT_INTERRUPTED);
            }
            other => other.map(|_| ()),
        },
        Command::Soak(args) => match soak::run(args) {
            Ok(false) => return ExitCode::FAILURE,
            other => other.map(|_| ()),
        },
        Command::Report { dir, baseline } => report(&dir, baseline.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socklab: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `socklab models`: every row of the model table, a line each.
fn print_models() {
    let rows = socklab_models::MODELS;
    let width = rows.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for m in rows {
        let udp = if m.udp { "tcp+udp" } else { "tcp    " };
        let run = m.serve.join(" ");
        let kind = if m.default { "       " } else { "variant" };
        println!(
            "{:width$}  {udp}  {kind}  {}  (socklab serve {run})",
            m.name, m.summary
        );
    }
}

const REPORT_EXAMPLE: &str = "Example: what a code change did to each model\n  \
    socklab compare --out /tmp/before       # on the old code\n  \
    socklab compare --out /tmp/after        # on the new code, same arguments\n  \
    socklab report /tmp/after --baseline /tmp/before   # writes /tmp/after/baseline.md";

/// `socklab report DIR [--baseline OLD]`: the report is a pure function of
/// results.json, the baseline page of the two runs' results.json.
fn report(dir: &std::path::Path, baseline: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // The report crate's errors already name the file. Both runs are read before
    // anything is written, so a bad OLD leaves NEW untouched.
    let results = socklab_report::load(dir)?;
    let old = baseline
        .map(|old| socklab_report::load(old).context("reading the --baseline run"))
        .transpose()?;
    socklab_report::write_all(&results, dir)
        .with_context(|| format!("writing the report in {}", dir.display()))?;
    println!("{}", dir.join(socklab_report::REPORT_FILE).display());
    if let Some(old) = old {
        let path = socklab_report::write_baseline(&old, &results, dir)
            .with_context(|| format!("writing the baseline comparison in {}", dir.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command a user can ask `--help` of ends with an example line.
    #[test]
    fn every_help_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_name() != "help" {
                let after = cmd.get_after_help().map(|s| s.to_string());
                if !after.is_some_and(|s| s.contains("Example")) {
                    missing.push(path.clone());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "no example line in --help of {missing:?}"
        );
    }

    /// Defaults are parsed like typed values: each must be valid syntax.
    #[test]
    fn every_default_parses() {
        for argv in [
            &["socklab", "soak", "thread"][..],
            &["socklab", "load", "127.0.0.1:7788"],
            &["socklab", "compare"],
            &["socklab", "serve", "thread"],
        ] {
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{argv:?}: {e}");
            }
        }
    }
}
