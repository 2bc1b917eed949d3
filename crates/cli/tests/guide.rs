//! Runs every command in `docs/GUIDE.md`, so the teaching guide cannot rot.
//!
//! # What counts as a command
//!
//! Every fenced block tagged ```` ```sh ```` in the guide; other blocks (```` ```text ````
//! for output) are prose. In a block, each line is one command (a trailing `\`
//! continues it; `# ...` after whitespace is a comment). A block is a session:
//!
//! - A line that runs `socklab serve` starts a server in the background (the
//!   reader's "terminal 1"). It may be wrapped (`strace ... socklab serve ...`).
//!   When the block ends the test sends SIGTERM to the pid the server announced
//!   (the reader's Ctrl-C) and waits for it: it must exit 0.
//! - Every other line runs in the foreground with `bash` (pipes work) from the
//!   repository root, and must exit 0.
//! - `cargo build ...` and `export PATH=...` lines are the reader's setup; the
//!   test provides the same thing itself (`socklab` on `PATH` is the test binary).
//!
//! Output containing "panicked" fails the run, whatever the exit status.
//!
//! # How commands are made small
//!
//! The guide is written at the reader's scale; the test rewrites each command:
//!
//! - `target/release/socklab` and `socklab` run this build's binary (a symlink on
//!   `PATH`); `scripts/compare.sh ARGS` runs `socklab compare ARGS` (the script
//!   would build in release mode first).
//! - Every `/tmp/` path moves into a private directory, and every
//!   `127.0.0.1:PORT` (or `127.0.0.1 PORT`) of a block gets a free port, so
//!   runs do not collide.
//! - `socklab compare` gets `--repeats 1 --cell 100ms --no-counted` (and
//!   `--conns 1,10` where it names `--conns`); it must name `--scenarios` and an
//!   `--out` under `/tmp/`. The loopback floor (`sockperf`, 2 s) is skipped by
//!   shadowing `sockperf` on `PATH`.
//! - `socklab load` gets `--duration 300ms --warmup 100ms` where it names
//!   `--duration`, and at most `--requests 500`; it must name one of the two.
//!
//! Set `SOCKLAB_GUIDE_FULL=1` to run every command at the guide's own scale
//! (with `--release` and `--nocapture` this prints the numbers the guide quotes).
//!
//! A block that needs a program that is not installed (`strace`, `python3`) is
//! skipped with a message, and so is every later block that reads a `/tmp/`
//! file the skipped one would have written.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest one foreground command may run before it counts as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a server may take to print its announce line.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a server may take to exit after SIGTERM: the default grace period
/// (5 s), the supervisor's margin (1 s), and room for strace.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Durations of `socklab load --duration` runs in the test.
const LOAD_DURATION: &str = "300ms";
const LOAD_WARMUP: &str = "100ms";
/// Most requests (or churn connections) a counted `socklab load` makes in the test.
const MAX_REQUESTS: u64 = 500;
/// The models (no variants), in teaching order: the guide's sections follow the
/// model table's order.
fn models() -> Vec<&'static str> {
    socklab_models::defaults().map(|m| m.name).collect()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn guide_text() -> String {
    let path = repo_root().join("docs/GUIDE.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One ```sh block: where it starts in GUIDE.md, and its commands.
#[derive(Debug)]
struct Block {
    line: usize,
    commands: Vec<String>,
}

/// The ```sh blocks of a Markdown text, each as logical command lines.
fn sh_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, bool, Vec<&str>)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```") => {
                let tag = fence.trim_start_matches('`').trim();
                open = Some((i + 1, tag == "sh", Vec::new()));
            }
            None => {}
            Some(_) if fence.starts_with("```") => {
                let (line, is_sh, body) = open.take().unwrap();
                if is_sh {
                    blocks.push(Block {
                        line,
                        commands: logical_lines(&body),
                    });
                }
            }
            Some((_, _, body)) => body.push(line),
        }
    }
    assert!(open.is_none(), "GUIDE.md ends inside a fenced block");
    blocks
}

/// Joins `\` continuations, drops comments and blank lines.
fn logical_lines(body: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in body {
        let line = strip_comment(raw).trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head.trim());
            pending.push(' ');
            continue;
        }
        pending.push_str(line.trim());
        let command = std::mem::take(&mut pending).trim().to_string();
        if !command.is_empty() {
            out.push(command);
        }
    }
    if !pending.trim().is_empty() {
        out.push(pending.trim().to_string());
    }
    out
}

/// The line up to a `#` that starts a shell comment (at the start or after
/// whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The program each pipeline segment of `line` runs (split on `|`, `&&`, `;`
/// outside quotes), so a missing tool can be detected before a block runs.
fn programs(line: &str) -> Vec<String> {
    let mut segments = vec![String::new()];
    let (mut single, mut double) = (false, false);
    for c in line.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '|' | '&' | ';' if !single && !double => {
                segments.push(String::new());
                continue;
            }
            _ => {}
        }
        segments.last_mut().unwrap().push(c);
    }
    segments
        .iter()
        .filter_map(|s| s.split_whitespace().next())
        .filter(|w| !w.contains('='))
        .map(str::to_string)
        .collect()
}

/// What a command line is to the test.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// The reader's setup (`cargo build`, `export PATH=`): provided by the test.
    Setup,
    /// `socklab serve ...`, possibly wrapped: a background server.
    Server,
    /// Anything else: run to completion.
    Foreground,
}

fn kind(line: &str) -> Kind {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first() == Some(&"cargo") || line.starts_with("export PATH=") {
        return Kind::Setup;
    }
    let serves = words
        .windows(2)
        .any(|w| is_socklab(w[0]) && w[1] == "serve");
    if serves {
        Kind::Server
    } else {
        Kind::Foreground
    }
}

fn is_socklab(word: &str) -> bool {
    word == "socklab" || word.ends_with("/socklab")
}

/// The `127.0.0.1` ports a block names (`127.0.0.1:7788` or `127.0.0.1 7788`).
fn ports(text: &str) -> Vec<u16> {
    const HOST: &str = "127.0.0.1";
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        rest = &rest[at + HOST.len()..];
        let Some(after) = rest.strip_prefix(':').or_else(|| rest.strip_prefix(' ')) else {
            continue;
        };
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(port) = digits.parse::<u16>() {
            if port != 0 && !found.contains(&port) {
                found.push(port);
            }
        }
    }
    found
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Turns a command as the guide writes it into the one the test runs.
struct Rewriter {
    tmp: PathBuf,
    full: bool,
}

impl Rewriter {
    fn rewrite(&self, line: &str, ports: &BTreeMap<u16, u16>) -> Result<String, String> {
        let mut line = line
            .replace("target/release/socklab", "socklab")
            .replace("scripts/compare.sh", "socklab compare")
            .replace("/tmp/", &format!("{}/", self.tmp.display()));
        for (from, to) in ports {
            for sep in [':', ' '] {
                line = replace_port(&line, &format!("127.0.0.1{sep}{from}"), *to, sep);
            }
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let sub = words
            .windows(2)
            .find(|w| w[0] == "socklab" && (w[1] == "load" || w[1] == "compare"))
            .map(|w| w[1].clone());
        let Some(sub) = sub else { return Ok(line) };
        if words[0] != "socklab" || words[1] != sub {
            return Err(format!(
                "write `socklab {sub}` at the start of its line, so the test can scale it: {line}"
            ));
        }
        match sub.as_str() {
            "compare" => self.compare(words),
            _ => self.load(words),
        }
    }

    fn compare(&self, mut w: Vec<String>) -> Result<String, String> {
        let out = value(&w, "--out").ok_or("a guide `socklab compare` must name --out /tmp/...")?;
        if !Path::new(&out).starts_with(&self.tmp) {
            return Err(format!("compare --out {out} is not under /tmp/"));
        }
        if value(&w, "--scenarios").is_none() {
            return Err("a guide `socklab compare` must name --scenarios (keep it small)".into());
        }
        if self.full {
            return Ok(w.join(" "));
        }
        w.retain(|a| a != "--full" && a != "--callgrind");
        set(&mut w, "--repeats", "1");
        set(&mut w, "--cell", "100ms");
        if value(&w, "--conns").is_some() {
            set(&mut w, "--conns", "1,10");
        }
        if !w.iter().any(|a| a == "--no-counted") {
            w.push("--no-counted".into());
        }
        Ok(w.join(" "))
    }

    fn load(&self, mut w: Vec<String>) -> Result<String, String> {
        let requests = value(&w, "--requests");
        let duration = value(&w, "--duration");
        if requests.is_none() && duration.is_none() {
            return Err(format!(
                "a guide `socklab load` must name --requests or --duration: {}",
                w.join(" ")
            ));
        }
        if self.full {
            return Ok(w.join(" "));
        }
        if duration.is_some() {
            set(&mut w, "--duration", LOAD_DURATION);
            set(&mut w, "--warmup", LOAD_WARMUP);
        }
        if let Some(n) = requests.and_then(|n| n.parse::<u64>().ok()) {
            set(&mut w, "--requests", &n.min(MAX_REQUESTS).to_string());
        }
        Ok(w.join(" "))
    }
}

/// Replaces `host_port` (e.g. `127.0.0.1:7788`) where no further digit follows.
fn replace_port(line: &str, host_port: &str, to: u16, sep: char) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(host_port) {
        let end = at + host_port.len();
        out.push_str(&rest[..at]);
        if rest[end..].starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(host_port);
        } else {
            out.push_str(&format!("127.0.0.1{sep}{to}"));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn value(words: &[String], flag: &str) -> Option<String> {
    let at = words.iter().position(|w| w == flag)?;
    words.get(at + 1).cloned()
}

/// Sets `flag`'s value, replacing it if present (clap refuses a flag twice).
fn set(words: &mut Vec<String>, flag: &str, v: &str) {
    match words.iter().position(|w| w == flag) {
        Some(at) if at + 1 < words.len() => words[at + 1] = v.to_string(),
        _ => {
            words.push(flag.to_string());
            words.push(v.to_string());
        }
    }
}

/// Where commands run: the private directory, and a `PATH` whose `socklab` is this
/// build's binary.
struct Sandbox {
    tmp: PathBuf,
    path: String,
    full: bool,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = std::env::temp_dir().join(format!("socklab-guide-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let bin = tmp.join("bin");
        std::fs::create_dir_all(&bin).expect("create the test's directory");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_socklab"), bin.join("socklab"))
            .expect("link socklab");
        let full = std::env::var_os("SOCKLAB_GUIDE_FULL").is_some_and(|v| v == "1");
        if !full {
            // `socklab compare` measures the loopback floor for 2 s when sockperf
            // answers `--version`; a sockperf that prints nothing skips it.
            let fake = bin.join("sockperf");
            std::fs::write(&fake, "#!/bin/sh\nexit 1\n").expect("write sockperf stand-in");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Sandbox { tmp, path, full }
    }

    fn rewriter(&self) -> Rewriter {
        Rewriter {
            tmp: self.tmp.clone(),
            full: self.full,
        }
    }

    fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(script)
            .current_dir(repo_root())
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .process_group(0);
        c
    }

    /// Whether `program` is installed and, for strace, allowed to trace here (a
    /// container without `CAP_SYS_PTRACE` has strace but cannot use it).
    fn has_program(&self, program: &str) -> bool {
        let probe = match program {
            "strace" => "strace -f -o /dev/null true".to_string(),
            _ => format!("command -v {program}"),
        };
        let mut check = self.bash(&probe);
        check.stdout(Stdio::null()).stderr(Stdio::null());
        check.status().is_ok_and(|s| s.success())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// What one foreground command did.
struct Outcome {
    status: Option<ExitStatus>,
    output: String,
}

/// Runs `line` with bash, collecting stdout and stderr, killed after `COMMAND_TIMEOUT`.
fn run_foreground(sandbox: &Sandbox, line: &str) -> Outcome {
    let mut child = sandbox
        .bash(&format!("set -o pipefail\n{line}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let status = wait_until(&mut child, COMMAND_TIMEOUT);
    if status.is_none() {
        kill_group(&child, libc::SIGKILL);
        let _ = child.wait();
    }
    let output = format!(
        "{}{}",
        out.recv().unwrap_or_default(),
        err.recv().unwrap_or_default()
    );
    Outcome { status, output }
}

/// Reads a pipe to EOF on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Waits for `child` to exit, for at most `limit`.
fn wait_until(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Signals the child's whole process group (bash, strace, socklab and its children).
fn kill_group(child: &Child, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions; the group is our child's.
    unsafe { libc::killpg(child.id() as libc::pid_t, signal) };
}

/// A background `socklab serve`, possibly under strace.
struct Server {
    line: String,
    child: Child,
    /// socklab's own pid, from its announce line (under strace, not the child).
    pid: libc::pid_t,
    stderr: PathBuf,
}

impl Server {
    /// Starts the server and waits for its announce line.
    fn start(sandbox: &Sandbox, line: &str, n: usize) -> Result<Server, String> {
        let stderr = sandbox.tmp.join(format!("server-{n}.stderr"));
        let file = std::fs::File::create(&stderr).expect("create server stderr file");
        let mut child = sandbox
            .bash(&format!("exec {line}"))
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("spawn bash");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            // Keep the pipe open (and drained) for as long as the server lives.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let announced = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let pid = socklab_models::Announce::parse(&announced).map(|a| a.pid);
        match pid {
            Some(pid) => Ok(Server {
                line: line.to_string(),
                child,
                pid,
                stderr,
            }),
            None => {
                kill_group(&child, libc::SIGKILL);
                let _ = child.wait();
                Err(std::fs::read_to_string(&stderr).unwrap_or_default())
            }
        }
    }

    /// The reader's Ctrl-C: SIGTERM to socklab, then wait for the whole command.
    /// Returns its exit status (None: it did not exit in time) and its stderr.
    fn stop(mut self) -> (Option<ExitStatus>, String) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let status = wait_until(&mut self.child, STOP_TIMEOUT);
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_group(&self.child, libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs the blocks in order, recording what ran, what was skipped and what failed.
struct Runner<'a> {
    sandbox: &'a Sandbox,
    rewriter: Rewriter,
    /// `/tmp/` paths that skipped blocks would have written.
    missing_files: HashSet<String>,
    commands_run: usize,
    servers_run: Vec<String>,
    failures: Vec<String>,
}

impl Runner<'_> {
    fn run(&mut self, block: &Block) {
        let text = block.commands.join("\n");
        if let Some(why) = self.reason_to_skip(&text, &block.commands) {
            println!("\n# GUIDE.md line {}: skipped: {why}", block.line);
            self.missing_files.extend(tmp_paths(&text));
            return;
        }
        println!("\n# GUIDE.md line {}", block.line);
        let ports: BTreeMap<u16, u16> =
            ports(&text).into_iter().map(|p| (p, free_port())).collect();
        let mut servers = Vec::new();
        for command in &block.commands {
            match kind(command) {
                Kind::Setup => println!("$ {command}    # setup: provided by the test"),
                Kind::Server => match self.start_server(block, command, &ports) {
                    Some(server) => servers.push(server),
                    None => break,
                },
                Kind::Foreground => {
                    if !self.foreground(block, command, &ports) {
                        break;
                    }
                }
            }
        }
        for server in servers.into_iter().rev() {
            self.stop_server(block, server);
        }
    }

    fn reason_to_skip(&self, text: &str, commands: &[String]) -> Option<String> {
        if let Some(path) = tmp_paths(text)
            .into_iter()
            .find(|p| self.missing_files.contains(p))
        {
            return Some(format!("reads {path}, which a skipped block writes"));
        }
        let missing: Vec<String> = commands
            .iter()
            .flat_map(|c| programs(c))
            .filter(|p| !is_socklab(p) && p != "cargo" && p != "export")
            .filter(|p| !self.sandbox.has_program(p))
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "needs {}: not installed, or not usable here",
                missing.join(", ")
            )
        })
    }

    /// Starts a server; `None` stops the block (it failed, or io_uring is
    /// unavailable here and the block is skipped).
    fn start_server(
        &mut self,
        block: &Block,
        command: &str,
        ports: &BTreeMap<u16, u16>,
    ) -> Option<Server> {
        let line = match self.rewriter.rewrite(command, ports) {
            Ok(line) => line,
            Err(why) => {
                self.fail(block, command, &why);
                return None;
            }
        };
        println!("$ {line} &");
        match Server::start(self.sandbox, &line, self.servers_run.len()) {
            Ok(server) => {
                self.servers_run.push(line);
                Some(server)
            }
            Err(stderr) if stderr.contains("io_uring") => {
                println!(
                    "  skipped: io_uring is not available here: {}",
                    stderr.trim()
                );
                None
            }
            Err(stderr) => {
                self.fail(block, command, &format!("did not start: {stderr}"));
                None
            }
        }
    }

    fn stop_server(&mut self, block: &Block, server: Server) {
        let line = server.line.clone();
        let (status, stderr) = server.stop();
        println!("  (Ctrl-C) {line}");
        print_tail(&stderr, if self.sandbox.full { usize::MAX } else { 6 });
        match status {
            Some(s) if s.success() && !stderr.contains("panicked") => {}
            Some(s) => self.fail(block, &line, &format!("server exited with {s}:\n{stderr}")),
            None => self.fail(block, &line, "server did not exit after SIGTERM"),
        }
    }

    /// Runs one foreground command; false if it failed (the rest of the block is
    /// skipped: it would only fail for the same reason).
    fn foreground(&mut self, block: &Block, command: &str, ports: &BTreeMap<u16, u16>) -> bool {
        let line = match self.rewriter.rewrite(command, ports) {
            Ok(line) => line,
            Err(why) => {
                self.fail(block, command, &why);
                return false;
            }
        };
        println!("$ {line}");
        let started = Instant::now();
        let outcome = run_foreground(self.sandbox, &line);
        self.commands_run += 1;
        print_tail(
            &outcome.output,
            if self.sandbox.full { usize::MAX } else { 12 },
        );
        println!("  ({:.1} s)", started.elapsed().as_secs_f64());
        match outcome.status {
            Some(s) if s.success() && !outcome.output.contains("panicked") => true,
            Some(s) => {
                let why = if s.success() {
                    format!("printed \"panicked\":\n{}", outcome.output)
                } else {
                    format!("exited with {s}:\n{}", outcome.output)
                };
                self.fail(block, &line, &why);
                false
            }
            None => {
                self.fail(block, &line, "timed out");
                false
            }
        }
    }

    fn fail(&mut self, block: &Block, command: &str, why: &str) {
        self.failures
            .push(format!("GUIDE.md line {}: `{command}`: {why}", block.line));
    }
}

/// Words that are paths under `/tmp/`.
fn tmp_paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .filter(|w| w.starts_with("/tmp/"))
        .map(str::to_string)
        .collect()
}

fn print_tail(text: &str, lines: usize) {
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        println!("  | {line}");
    }
}

/// Every command in GUIDE.md runs and exits 0, with no panic, at a small scale.
#[test]
fn every_guide_command_runs() {
    let started = Instant::now();
    let blocks = sh_blocks(&guide_text());
    let sandbox = Sandbox::new();
    let mut runner = Runner {
        sandbox: &sandbox,
        rewriter: sandbox.rewriter(),
        missing_files: HashSet::new(),
        commands_run: 0,
        servers_run: Vec::new(),
        failures: Vec::new(),
    };
    for block in &blocks {
        runner.run(block);
    }
    println!(
        "\n{} blocks, {} commands and {} servers run in {:.1} s",
        blocks.len(),
        runner.commands_run,
        runner.servers_run.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        runner.failures.is_empty(),
        "{} guide command(s) failed:\n\n{}",
        runner.failures.len(),
        runner.failures.join("\n\n")
    );
    assert!(
        runner.commands_run >= 20 && !runner.servers_run.is_empty(),
        "only {} commands and {} servers ran: is GUIDE.md's ```sh tagging intact?",
        runner.commands_run,
        runner.servers_run.len()
    );
}

/// Every model has a `socklab serve` command in the guide, and the models'
/// sections come in teaching order.
#[test]
fn guide_covers_every_model_in_teaching_order() {
    let text = guide_text();
    let served: HashSet<String> = sh_blocks(&text)
        .iter()
        .flat_map(|b| b.commands.iter())
        .filter(|c| kind(c) == Kind::Server)
        .filter_map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "serve")?;
            words.get(at + 1).map(|m| m.to_string())
        })
        .collect();
    let models = models();
    for &model in &models {
        assert!(
            served.contains(model),
            "no `socklab serve {model}` in GUIDE.md"
        );
    }
    let headings: Vec<usize> = models
        .iter()
        .map(|m| {
            text.find(&format!("\n### {m}:"))
                .unwrap_or_else(|| panic!("GUIDE.md has no `### {m}:` section"))
        })
        .collect();
    assert!(
        headings.windows(2).all(|w| w[0] < w[1]),
        "model sections are not in teaching order {models:?}"
    );
}

/// Every relative link in GUIDE.md reaches a file, every `#anchor` into a Markdown
/// file names one of its headings, and the README links to the guide.
#[test]
fn guide_links_resolve() {
    let root = repo_root();
    let text = guide_text();
    let own: Vec<String> = headings(&text);
    let mut checked = 0;
    for target in link_targets(&text) {
        if target.starts_with("http") {
            continue;
        }
        if let Some(anchor) = target.strip_prefix('#') {
            assert!(
                own.iter().any(|s| s == anchor),
                "GUIDE.md links to {target}: no such heading in GUIDE.md"
            );
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (target.as_str(), None),
        };
        let path = root.join("docs").join(file);
        assert!(path.exists(), "GUIDE.md links to {target}: no such file");
        if let Some(anchor) = anchor {
            let doc = std::fs::read_to_string(&path).unwrap();
            assert!(
                headings(&doc).iter().any(|s| s == anchor),
                "GUIDE.md links to {target}: no heading with that anchor in {file}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} relative links found in GUIDE.md"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("(docs/GUIDE.md)"),
        "README.md does not link to docs/GUIDE.md"
    );
}

/// The `(target)` of every `[text](target)` link.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

/// The anchors of a Markdown text's headings (outside fenced blocks).
fn headings(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The test's rewriting keeps the guide's commands small and private: compare and
/// load are scaled down, ports and /tmp paths are replaced, bad forms are refused.
#[test]
fn commands_are_scaled_down_and_sandboxed() {
    let r = Rewriter {
        tmp: PathBuf::from("/x"),
        full: false,
    };
    let map = BTreeMap::from([(7788, 40001)]);
    assert_eq!(
        r.rewrite(
            "scripts/compare.sh --models fork,thread --scenarios churn --repeats 3 --cell 500ms --out /tmp/churn",
            &map
        )
        .unwrap(),
        "socklab compare --models fork,thread --scenarios churn --repeats 1 --cell 100ms --out /x/churn --no-counted"
    );
    assert_eq!(
        r.rewrite("socklab load 127.0.0.1:7788 --conns 3 --duration 2s", &map)
            .unwrap(),
        "socklab load 127.0.0.1:40001 --conns 3 --duration 300ms --warmup 100ms"
    );
    assert_eq!(
        r.rewrite(
            "target/release/socklab load 127.0.0.1:7788 --requests 2000",
            &map
        )
        .unwrap(),
        "socklab load 127.0.0.1:40001 --requests 500"
    );
    assert_eq!(
        r.rewrite("python3 client.py 127.0.0.1 7788", &map).unwrap(),
        "python3 client.py 127.0.0.1 40001"
    );
    assert_eq!(
        r.rewrite("socklab serve fork --tcp 127.0.0.1:77881", &map)
            .unwrap(),
        "socklab serve fork --tcp 127.0.0.1:77881",
        "a longer port is another port"
    );
    assert!(r.rewrite("socklab load 127.0.0.1:7788", &map).is_err());
    assert!(r
        .rewrite("socklab compare --scenarios churn --out results/x", &map)
        .is_err());
    assert!(r.rewrite("socklab compare --out /tmp/x", &map).is_err());
    assert!(r
        .rewrite("echo | socklab load x --requests 1", &map)
        .is_err());

    assert_eq!(
        kind("strace -f -c -o /tmp/x socklab serve fork --tcp 127.0.0.1:1"),
        Kind::Server
    );
    assert_eq!(kind("cargo build --release --bin socklab"), Kind::Setup);
    assert_eq!(
        kind("socklab load 127.0.0.1:1 --requests 1"),
        Kind::Foreground
    );
    assert_eq!(
        programs("printf 'a|b' | socklab client --tcp x || echo 'no; really'"),
        ["printf", "socklab", "echo"]
    );
    assert_eq!(
        strip_comment("socklab models   # list them"),
        "socklab models   "
    );
    assert_eq!(
        strip_comment("grep '# not a comment' f"),
        "grep '# not a comment' f"
    );
    assert_eq!(
        ports("a 127.0.0.1:7788 b 127.0.0.1 8080 c 127.0.0.1:0"),
        [7788, 8080]
    );
    assert_eq!(slug(" Scenario: churn"), "scenario-churn");
}
