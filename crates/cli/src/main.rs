//! `socklab`: run one server model, drive it, talk to it, compare them all.
//!
//! This binary only parses arguments and calls the libraries (mini-redis'
//! `src/bin/server.rs` habit): the models live in their own crates.

mod args;
mod client;
mod models;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "socklab",
    version,
    about = "One tiny service (uppercase echo) under every classic server concurrency model, measured."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one server model (prints its bound addresses on one line, then serves until SIGINT/SIGTERM).
    Serve(serve::ServeArgs),
    /// List the server models, one line each.
    Models,
    /// Talk to a server by hand, like the Python tutorial's `>>>` client.
    Client(client::ClientArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Models => {
            models::print_table();
            Ok(())
        }
        Command::Client(args) => client::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("socklab: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
