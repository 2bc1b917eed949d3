//! report.html as a reader sees it: headless Chromium opens the page built from
//! the fixture run, lays it out, and says what it drew. The test fails if any
//! chart the report wrote is not on the page with a size, if a table is missing,
//! or if the page would fetch anything. A screenshot of the first screen is kept
//! beside it (`target/tmp/socklab-browser/report.png`) to look at.
//!
//! Chromium comes from the Debian package (`.ci/run` installs it). Where it is
//! not installed the test says so and passes, except under CI (`CI` set), where
//! a missing browser is a failure: the check must not silently not run.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use socklab_report::{load, write_all};

/// Long enough for a cold Chromium on a busy 2-CPU machine; it takes ~2 s here.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// Reads the laid-out page and writes what it finds into `<pre id="probe">`,
/// which `--dump-dom` prints. Only the probe copy of the page carries it.
const PROBE: &str = r#"<script>
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("figure.chart > svg")].map(svg => {
    const r = svg.getBoundingClientRect();
    return [Math.round(r.width), Math.round(r.height), svg.querySelectorAll("*").length];
  });
  const tables = [...document.querySelectorAll("table")].map(t => t.rows.length);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    charts, tables,
    images: document.images.length,
    links: document.querySelectorAll("a[href^='#']").length,
    anchors_missing: [...document.querySelectorAll("a[href^='#']")]
      .map(a => a.getAttribute("href").slice(1))
      .filter(id => !document.getElementById(id)),
    page_width: document.documentElement.scrollWidth,
  });
  document.body.appendChild(probe);
});
</script>"#;

#[derive(serde::Deserialize, Debug)]
struct Probe {
    charts: Vec<(u32, u32, usize)>,
    tables: Vec<usize>,
    images: usize,
    links: usize,
    anchors_missing: Vec<String>,
    page_width: u32,
}

#[test]
fn chromium_draws_every_chart_and_table() {
    let Some(chromium) = browser() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser check: install the Debian package chromium"
        );
        eprintln!("chromium not installed: report.html not checked in a browser");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("socklab-browser");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let fixture = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")).unwrap();
    let written = write_all(&fixture, &dir).unwrap();
    let html = fs::read_to_string(&written.html).unwrap();
    let md = fs::read_to_string(&written.report).unwrap();

    // Self-contained: no chart left as a link, nothing fetched from the network.
    assert!(
        !html.contains("src=\"http"),
        "report.html fetches from the network"
    );
    assert!(!html.contains("<link"), "report.html loads a stylesheet");

    let probe_page = dir.join("probe.html");
    fs::write(
        &probe_page,
        html.replace("</body>", &format!("{PROBE}</body>")),
    )
    .unwrap();
    let dom = run(&chromium, &dir, &["--dump-dom"], &probe_page);
    let json = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("the page never finished loading:\n{dom}"))
        .replace("&quot;", "\"");
    let probe: Probe = serde_json::from_str(&json).unwrap();

    assert_eq!(
        probe.charts.len(),
        written.charts.len(),
        "every chart the report wrote is on the page"
    );
    for (i, &(width, height, elements)) in probe.charts.iter().enumerate() {
        assert!(
            width >= 400 && height >= 200 && elements > 20,
            "chart {} ({}) drawn {width}x{height} with {elements} elements",
            i,
            written.charts[i].display()
        );
    }
    assert_eq!(probe.images, 0, "every chart inlined, no <img> left");
    let md_tables = md
        .lines()
        .filter(|l| l.starts_with("|-") || l.starts_with("|:"))
        .count();
    assert_eq!(
        probe.tables.len(),
        md_tables,
        "every Markdown table is a table"
    );
    assert!(
        probe.tables.iter().all(|&rows| rows >= 2),
        "a table without rows: {:?}",
        probe.tables
    );
    assert!(probe.links > 10, "the report links its sections");
    assert!(
        probe.anchors_missing.is_empty(),
        "links to no heading: {:?}",
        probe.anchors_missing
    );
    // Wide tables scroll inside themselves; the page keeps the window's width.
    assert!(
        probe.page_width <= 1280,
        "page {} px wide",
        probe.page_width
    );

    let shot = dir.join("report.png");
    run(
        &chromium,
        &dir,
        &[&format!("--screenshot={}", shot.display())],
        &written.html,
    );
    let png = fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot {} is {} bytes",
        shot.display(),
        png.len()
    );
}

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `page` and returns its stdout. Its own profile
/// directory, a 1280x1600 window; killed (its whole process group) at the timeout.
fn run(chromium: &Path, dir: &Path, args: &[&str], page: &Path) -> String {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox", // root in CI: Chromium's sandbox refuses to run as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    // Read stdout while it runs: the dumped DOM is larger than a pipe holds.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            return reader.join().unwrap().unwrap();
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let group = Pid::from_raw(child.id() as i32);
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            panic!("chromium took longer than {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
