//! Figures -> SVG, with plotters' SVG backend.
//!
//! plotters is built without its `ttf` feature, so no font files or fontconfig
//! are needed: it estimates text sizes for layout and the SVG backend writes
//! `<text>` elements that the viewer renders with its own sans-serif font.
//!
//! Every chart has a title, axis labels with units, a legend naming the models
//! (outside the plot, so it never hides data) and min–max whiskers over the
//! repeats. A model keeps its colour in every chart of a report. A model that
//! left clients unserved is drawn hollow, labelled `served 4/1,000`, so it never
//! looks like the best at the bottom of a latency chart; a value the load
//! generator may have limited carries a `†`.

use std::error::Error;

use plotters::coord::combinators::LogCoord;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::aggregate::Range;
use crate::figures::{Figure, Mark, Plot, XAxis};
use crate::format;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;
const LEGEND_WIDTH: u32 = 180;
const FONT: &str = "sans-serif";
/// Half the width of a bar, in category units (a category is 1.0 wide).
const BAR_HALF_WIDTH: f64 = 0.35;
/// Room left above the highest value on a linear axis.
const HEADROOM: f64 = 1.12;
/// Room left beyond the extremes on a log axis (a factor).
const LOG_PAD: f64 = 1.6;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

/// Colours for models the model table does not know, taken in order. A known
/// model keeps its table colour (`socklab_models::Model::colour`) in every report.
const SPARE_COLOURS: &[RGBColor] = &[
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0x17, 0xBE, 0xCF),
    RGBColor(0x7F, 0x7F, 0x7F),
    RGBColor(0x1F, 0x3A, 0x93),
    RGBColor(0x8C, 0x56, 0x4B),
    RGBColor(0x2C, 0xA0, 0x2C),
    RGBColor(0xD6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xBD),
];

/// One colour per model, the same in every chart of a report.
pub struct Palette {
    colours: Vec<(String, RGBColor)>,
}

impl Palette {
    pub fn new(models: &[String]) -> Palette {
        let mut spare = SPARE_COLOURS.iter().cycle();
        let colours = models
            .iter()
            .map(|m| {
                let known = socklab_models::find(m).map(|r| {
                    let (red, green, blue) = r.colour;
                    RGBColor(red, green, blue)
                });
                (
                    m.clone(),
                    known.unwrap_or_else(|| *spare.next().expect("cycle")),
                )
            })
            .collect();
        Palette { colours }
    }

    pub fn colour(&self, model: &str) -> RGBColor {
        self.colours
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, c)| *c)
            .unwrap_or(BLACK)
    }
}

/// The figure as an SVG document.
pub fn render(fig: &Figure, palette: &Palette) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, fig, palette).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw(svg: &mut String, fig: &Figure, palette: &Palette) -> DrawResult {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let titled = root.titled(&fig.title, (FONT, 22))?;
    let (plot, legend) = titled.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (ranges, log_y): (Vec<&Range>, bool) = match &fig.plot {
        Plot::Lines { series, log_y, .. } => (
            series
                .iter()
                .flat_map(|s| s.points.iter().map(|(_, r)| r))
                .collect(),
            *log_y,
        ),
        Plot::Bars { bars, log_y } => (bars.iter().map(|b| &b.range).collect(), *log_y),
    };
    let y = Axis::fit_y(&ranges, log_y);
    let (x, names): (Axis, Vec<String>) = match &fig.plot {
        Plot::Lines {
            x: XAxis::Conns(conns),
            ..
        } => (Axis::conns(conns), Vec::new()),
        Plot::Lines {
            x: XAxis::Categories(names),
            ..
        } => (Axis::categories(names.len()), names.clone()),
        Plot::Lines {
            x: XAxis::Rate,
            series,
            ..
        } => (
            Axis::rates(series.iter().flat_map(|s| s.points.iter().map(|(x, _)| *x))),
            Vec::new(),
        ),
        Plot::Bars { bars, .. } => (
            Axis::categories(bars.len()),
            bars.iter().map(|b| b.model.clone()).collect(),
        ),
    };
    let x_fmt = |v: &f64| {
        if names.is_empty() {
            format::tick(*v)
        } else {
            category(&names, *v)
        }
    };
    let marks: Vec<&Mark> = match &fig.plot {
        Plot::Lines { series, .. } => series.iter().flat_map(|s| &s.marks).collect(),
        Plot::Bars { bars, .. } => bars.iter().map(|b| &b.mark).collect(),
    };
    let notes = LegendNotes {
        whiskers: ranges.iter().any(|r| r.min < r.max),
        hollow: marks.iter().any(|m| m.unserved.is_some()),
        busy: marks.iter().any(|m| m.busy),
    };
    plot_on(&plot, fig, x, y, &x_fmt, palette)?;
    draw_legend(&legend, &fig.models(), palette, notes)?;
    root.present()?;
    Ok(())
}

fn category(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// A linear or logarithmic axis with ticks exactly where the report wants them:
/// at each measured connection count, each category, or round numbers.
///
/// plotters' own `with_key_points` loses the numeric label formatter, so the
/// mesh could not be drawn; this small coordinate type keeps it.
struct Axis {
    scale: Scale,
    ticks: Vec<f64>,
}

enum Scale {
    Linear(RangedCoordf64),
    Log(LogCoord<f64>),
}

impl Axis {
    fn linear(lo: f64, hi: f64, ticks: Vec<f64>) -> Axis {
        Axis {
            scale: Scale::Linear((lo..hi).into()),
            ticks,
        }
    }

    fn log(lo: f64, hi: f64, ticks: Vec<f64>) -> Axis {
        Axis {
            scale: Scale::Log((lo..hi).log_scale().into()),
            ticks,
        }
    }

    /// Connection counts on a log axis, a tick at each.
    fn conns(conns: &[usize]) -> Axis {
        let ticks: Vec<f64> = conns.iter().map(|&c| (c as f64).max(1.0)).collect();
        let lo = ticks.first().copied().unwrap_or(1.0);
        let hi = ticks.last().copied().unwrap_or(1.0).max(lo);
        Axis::log(lo / LOG_PAD, hi * LOG_PAD, ticks)
    }

    /// Rates on a log axis spanning `xs`, a tick per decade and at 2× and 5×.
    fn rates(xs: impl Iterator<Item = f64>) -> Axis {
        let (lo, hi) = xs
            .filter(|x| *x > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            });
        let (lo, hi) = if lo.is_finite() {
            (lo / 1.3, hi * 1.3)
        } else {
            (1.0, 10.0)
        };
        Axis::log(lo, hi, log_ticks(lo, hi))
    }

    /// Categories 0, 1, 2, ... on a linear axis, each a unit wide.
    fn categories(n: usize) -> Axis {
        Axis::linear(-0.6, n as f64 - 0.4, (0..n).map(|i| i as f64).collect())
    }

    /// A y axis for these ranges: linear from zero, or logarithmic (when asked and
    /// every value is positive) with a tick per decade, and at 2× and 5× when the
    /// data spans few decades.
    fn fit_y(ranges: &[&Range], log: bool) -> Axis {
        let hi = ranges.iter().map(|r| r.max).fold(0.0f64, f64::max);
        let lo = ranges
            .iter()
            .map(|r| r.min)
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min);
        if log && lo.is_finite() && hi > 0.0 {
            let (lo, hi) = (lo / LOG_PAD, hi * LOG_PAD);
            Axis::log(lo, hi, log_ticks(lo, hi))
        } else {
            let hi = if hi > 0.0 { hi * HEADROOM } else { 1.0 };
            Axis::linear(0.0, hi, linear_ticks(hi))
        }
    }

    fn lo(&self) -> f64 {
        self.range().start
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        match &self.scale {
            Scale::Linear(s) => s.map(value, limit),
            Scale::Log(s) => s.map(value, limit),
        }
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        match &self.scale {
            Scale::Linear(s) => s.range(),
            Scale::Log(s) => s.range(),
        }
    }
}

/// 1, 2 or 5 × 10^k steps, about six of them up to `hi`.
fn linear_ticks(hi: f64) -> Vec<f64> {
    let raw = hi / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|v| *v <= hi)
        .collect()
}

fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let steps: &[f64] = if last - first <= 3 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    (first..=last)
        .flat_map(|e| steps.iter().map(move |s| s * 10f64.powi(e)))
        .filter(|v| *v >= lo && *v <= hi)
        .collect()
}

fn plot_on(
    area: &Area,
    fig: &Figure,
    x: Axis,
    y: Axis,
    x_fmt: &dyn Fn(&f64) -> String,
    palette: &Palette,
) -> DrawResult {
    let y_lo = y.lo();
    // Values below the axis (0 on a log axis) are drawn at its bottom.
    let clamp = |v: f64| v.max(y_lo);
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(x, y)?;
    let y_fmt = |v: &f64| format::tick(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(fig.x_label.as_str())
        .y_desc(fig.y_label.as_str())
        .x_label_formatter(x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()?;
    let mut labels = Labels::default();
    match &fig.plot {
        Plot::Lines { series, .. } => {
            for s in series {
                let colour = palette.colour(&s.model);
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .map(|(x, r)| (*x, clamp(r.median)))
                    .collect();
                chart.draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))?;
                for (p, mark) in pts.iter().zip(&s.marks) {
                    let style = if mark.unserved.is_some() {
                        WHITE.filled()
                    } else {
                        colour.filled()
                    };
                    chart.draw_series([
                        Circle::new(*p, 5, style),
                        Circle::new(*p, 5, colour.stroke_width(2)),
                    ])?;
                    labels.add(chart.backend_coord(p), mark_text(mark));
                }
                chart.draw_series(s.points.iter().filter(|(_, r)| r.min < r.max).map(
                    |(x, r)| {
                        ErrorBar::new_vertical(
                            *x,
                            clamp(r.min),
                            clamp(r.median),
                            clamp(r.max),
                            colour.stroke_width(1),
                            8,
                        )
                    },
                ))?;
            }
        }
        Plot::Bars { bars, .. } => {
            for (i, b) in bars.iter().enumerate() {
                let (x, colour) = (i as f64, palette.colour(&b.model));
                let top = clamp(b.range.median);
                let corners = [(x - BAR_HALF_WIDTH, y_lo), (x + BAR_HALF_WIDTH, top)];
                if b.mark.unserved.is_some() {
                    chart.draw_series([
                        Rectangle::new(corners, WHITE.filled()),
                        Rectangle::new(corners, colour.stroke_width(3)),
                    ])?;
                } else {
                    chart.draw_series(std::iter::once(Rectangle::new(corners, colour.filled())))?;
                }
                let above = clamp(b.range.max.max(b.range.median));
                let (px, py) = chart.backend_coord(&(x - BAR_HALF_WIDTH, above));
                labels.add((px, py - 6), mark_text(&b.mark));
                if b.range.min < b.range.max {
                    chart.draw_series(std::iter::once(ErrorBar::new_vertical(
                        x,
                        clamp(b.range.min),
                        top,
                        clamp(b.range.max),
                        BLACK.stroke_width(1),
                        12,
                    )))?;
                }
            }
        }
    }
    labels.draw(area)?;
    Ok(())
}

/// Text labels beside points and above bars, nudged apart so that none covers
/// another, and kept inside the plot.
#[derive(Default)]
struct Labels {
    /// Top-left corner (backend pixels) and text of each label placed.
    placed: Vec<(i32, i32, String)>,
}

/// Height of a label line, and the width estimated per character (12 px font).
const LABEL_HEIGHT: i32 = 14;
const LABEL_CHAR_WIDTH: i32 = 7;

impl Labels {
    /// A label for the mark at backend pixel `at` (none when `text` is empty).
    fn add(&mut self, at: (i32, i32), text: String) {
        if text.is_empty() {
            return;
        }
        let width = LABEL_CHAR_WIDTH * text.chars().count() as i32;
        let (x, mut y) = (at.0 + 8, at.1 - LABEL_HEIGHT - 2);
        let overlaps = |y: i32, placed: &[(i32, i32, String)]| {
            placed.iter().any(|(px, py, pt)| {
                let pw = LABEL_CHAR_WIDTH * pt.chars().count() as i32;
                (y - py).abs() < LABEL_HEIGHT && x < px + pw && *px < x + width
            })
        };
        while overlaps(y, &self.placed) {
            y += LABEL_HEIGHT;
        }
        self.placed.push((x, y, text));
    }

    /// Draws the labels on `area`, moving one that would run past its right edge
    /// to the left of its mark.
    fn draw(&self, area: &Area) -> DrawResult {
        let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
        let (base_x, base_y) = area.get_base_pixel();
        let right = area.dim_in_pixel().0 as i32;
        for (x, y, text) in &self.placed {
            let width = LABEL_CHAR_WIDTH * text.chars().count() as i32;
            let mut x = x - base_x;
            if x + width > right {
                x -= width + 16;
            }
            area.draw(&Text::new(text.clone(), (x, y - base_y), style.clone()))?;
        }
        Ok(())
    }
}

/// The words beside a point or above a bar: `served 4/1,000`, `†`, both, or none.
fn mark_text(mark: &Mark) -> String {
    let mut parts = Vec::new();
    if let Some(s) = mark.unserved.as_ref().filter(|s| !s.is_empty()) {
        parts.push(s.clone());
    }
    if mark.busy {
        parts.push("†".to_string());
    }
    parts.join(" ")
}

/// What the legend explains besides the colours.
struct LegendNotes {
    whiskers: bool,
    hollow: bool,
    busy: bool,
}

/// The models in their colours, and how to read the marks the chart uses.
fn draw_legend(area: &Area, models: &[&str], palette: &Palette, notes: LegendNotes) -> DrawResult {
    let left = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let note = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    area.draw(&Text::new("model", (12, 30), left.clone()))?;
    let mut y = 56;
    for m in models {
        let colour = palette.colour(m);
        area.draw(&Rectangle::new([(12, y - 6), (34, y + 6)], colour.filled()))?;
        area.draw(&Text::new(m.to_string(), (42, y), left.clone()))?;
        y += 24;
    }
    y += 10;
    let mut lines: Vec<&str> = Vec::new();
    if notes.whiskers {
        lines.extend(["marks: median", "whiskers: min–max", "over the repeats"]);
    }
    if notes.hollow {
        lines.extend([
            "hollow: left clients",
            "unserved (latency = their",
            "wait, a lower bound)",
        ]);
    }
    if notes.busy {
        lines.extend(["†: load generator busy", "or behind: may be its limit"]);
    }
    for line in lines {
        area.draw(&Text::new(line, (12, y), note.clone()))?;
        y += 16;
    }
    Ok(())
}
