//! report.html: report.md as one self-contained page.
//!
//! The Markdown is the report; this only renders it, so the two never say
//! different things. pulldown-cmark parses it as GitHub does (tables, raw
//! `<details>` blocks), and three things are done on the way to HTML:
//!
//! - every chart (`![title](charts/x.svg)`) is replaced by the SVG itself, so
//!   the page needs no other file to show its figures and fetches nothing;
//! - every heading gets GitHub's anchor (`## Scenario: scaling` ->
//!   `#scenario-scaling`), so the links the Markdown makes work here too;
//! - a small stylesheet goes in `<style>`: wide tables scroll inside their own
//!   box instead of widening the page.
//!
//! Links to raw data (`hdr/*.hlog`, `results.json`) stay relative: opened from
//! the run directory, they work without a server.

use std::collections::{BTreeMap, HashSet};

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Chart path as the Markdown links it (`charts/x.svg`) -> the SVG text.
pub type Charts = BTreeMap<String, String>;

const STYLE: &str = "
body { font: 16px/1.5 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #1f2328; }
h1, h2, h3 { line-height: 1.25; }
h2 { border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; margin-top: 2em; }
table { border-collapse: collapse; display: block; overflow-x: auto; max-width: 100%; font-size: 14px; margin: 1em 0; }
th, td { border: 1px solid #d1d9e0; padding: 4px 8px; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
td:nth-child(2) { white-space: normal; min-width: 8em; }
tr:nth-child(2n) { background: #f6f8fa; }
code, pre { font: 13px ui-monospace, monospace; background: #f6f8fa; }
pre { padding: 1em; overflow-x: auto; }
figure.chart { margin: 1em 0; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
details { margin: 1em 0; }
summary { cursor: pointer; }
";

/// The whole page: `<!doctype html>` to `</html>`.
pub fn render(title: &str, markdown: &str, charts: &Charts) -> String {
    let events = inline_charts(
        with_anchors(Parser::new_ext(markdown, Options::ENABLE_TABLES).collect()),
        charts,
    );
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, events.into_iter());
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// Gives each heading the id GitHub gives it, so `[x](#scenario-scaling)` lands.
fn with_anchors(events: Vec<Event<'_>>) -> Vec<Event<'_>> {
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(events.len());
    let mut open: Option<usize> = None;
    let mut text = String::new();
    for event in events {
        match &event {
            Event::Start(Tag::Heading { .. }) => {
                open = Some(out.len());
                text.clear();
            }
            Event::Text(t) | Event::Code(t) if open.is_some() => text.push_str(t),
            Event::End(TagEnd::Heading(_)) => {
                if let Some(Event::Start(Tag::Heading { id, .. })) =
                    open.take().map(|at| &mut out[at])
                {
                    *id = Some(CowStr::from(unique(&mut used, github_anchor(&text))));
                }
            }
            _ => {}
        }
        out.push(event);
    }
    out
}

/// GitHub's rule: lower case, drop punctuation but `-` and `_`, spaces to `-`.
pub fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The second heading with the same anchor gets `-1`, the third `-2`, as on GitHub.
fn unique(used: &mut HashSet<String>, anchor: String) -> String {
    let mut candidate = anchor.clone();
    let mut n = 0;
    while !used.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{anchor}-{n}");
    }
    candidate
}

/// Replaces each image whose target is a known chart by that chart's SVG.
fn inline_charts<'a>(events: Vec<Event<'a>>, charts: &Charts) -> Vec<Event<'a>> {
    let mut out = Vec::with_capacity(events.len());
    let mut inside: Option<(&str, String)> = None;
    for event in events {
        if let Some((svg, alt)) = &mut inside {
            match event {
                Event::End(TagEnd::Image) => {
                    out.push(Event::InlineHtml(CowStr::from(format!(
                        "<figure class=\"chart\" role=\"img\" aria-label=\"{}\">{}</figure>",
                        escape(alt),
                        svg.trim()
                    ))));
                    inside = None;
                }
                Event::Text(t) | Event::Code(t) => alt.push_str(&t),
                _ => {}
            }
            continue;
        }
        if let Event::Start(Tag::Image { dest_url, .. }) = &event {
            if let Some(svg) = charts.get(dest_url.as_ref()) {
                inside = Some((svg.as_str(), String::new()));
                continue;
            }
        }
        out.push(event);
    }
    out
}

/// HTML-escapes text for an attribute or the title, as pulldown-cmark does its own.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Writing into a String cannot fail.
    let _ = pulldown_cmark_escape::escape_html(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_githubs() {
        assert_eq!(github_anchor("Scenario: scaling"), "scenario-scaling");
        assert_eq!(
            github_anchor("Appendix A: the load generator's CPU"),
            "appendix-a-the-load-generators-cpu"
        );
        let html = render("t", "## Soak\n\n## Soak\n", &Charts::new());
        assert!(html.contains("<h2 id=\"soak\">"), "{html}");
        assert!(html.contains("<h2 id=\"soak-1\">"), "{html}");
    }

    #[test]
    fn charts_are_inlined_and_other_images_kept() {
        let mut charts = Charts::new();
        charts.insert(
            "charts/a.svg".into(),
            "<svg viewBox=\"0 0 1 1\"></svg>\n".into(),
        );
        let md = "![a & b](charts/a.svg)\n\n![c](charts/missing.svg)\n";
        let html = render("t", md, &charts);
        assert!(
            html.contains("aria-label=\"a &amp; b\"><svg viewBox"),
            "{html}"
        );
        assert!(html.contains("<img src=\"charts/missing.svg\""), "{html}");
    }

    #[test]
    fn tables_and_details_pass_through() {
        let md = "| a | b |\n|---|---|\n| 1 | 2 |\n\n<details><summary>s</summary>\n\n| x |\n|---|\n| 3 |\n\n</details>\n";
        let html = render("t", md, &Charts::new());
        assert_eq!(html.matches("<table>").count(), 2, "{html}");
        assert!(html.contains("<details><summary>s</summary>"), "{html}");
    }
}
