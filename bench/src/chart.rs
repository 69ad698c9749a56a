//! `chart`: draws the learning curves of several `al` results (one JSON file each) into one PNG,
//! mean accuracy against labels with a bar of one standard deviation, and optionally reference
//! curves as dashed lines. A `sim` result gives two curves: the network's mean accuracy and the
//! centralised learner's of the same run.
//!
//! Text needs a TrueType font read at run time (default: DejaVu Sans from the Debian package
//! `fonts-dejavu-core`); the PNG is what gets committed, never the font.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use serde_json::{Value, json};

/// Flags of `swarmlabel-bench chart`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// JSON outputs of `swarmlabel-bench al` or `sim`, one object per file.
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "Active learning")]
    title: String,
    /// JSON file with a list of reference curves `{"label", "strategy", "budgets",
    /// "accuracy_mean"}`, drawn dashed in the colour of the result of the same strategy.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// TrueType font for the text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
    /// Label of the horizontal axis.
    #[arg(long, default_value = "labelled samples")]
    x_label: String,
    /// Width and height in pixels.
    #[arg(long, value_delimiter = ',', default_value = "1000,650")]
    size: Vec<u32>,
}

struct Curve {
    label: String,
    /// Strategy name: a reference curve takes the colour of the result of the same strategy.
    strategy: String,
    budgets: Vec<f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Value> {
    let font = std::fs::read(&args.font).with_context(|| {
        format!(
            "cannot read the font {} (apt-get install fonts-dejavu-core, or pass --font)",
            args.font.display()
        )
    })?;
    // plotters keeps registered fonts for the life of the process.
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow::anyhow!("{} is not a usable TrueType font", args.font.display()))?;
    let curves = args
        .results
        .iter()
        .map(|p| read_curves(p))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let references = match &args.reference {
        Some(p) => read_references(p)?,
        None => Vec::new(),
    };
    let (w, h) = match args.size.as_slice() {
        [w, h] => (*w, *h),
        _ => anyhow::bail!("--size takes WIDTH,HEIGHT"),
    };
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    draw(
        &mut pixels,
        (w, h),
        (&args.title, &args.x_label),
        &curves,
        &references,
    )?;
    let img = image::RgbImage::from_raw(w, h, pixels).context("invariant: buffer is w*h*3")?;
    img.save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(json!({
        "bench": "chart",
        "out": args.out.display().to_string(),
        "curves": curves.iter().map(|c| c.label.clone()).collect::<Vec<_>>(),
        "references": references.iter().map(|c| c.label.clone()).collect::<Vec<_>>(),
    }))
}

/// Distinct colours that stay readable on white (no yellow).
const COLOURS: [RGBColor; 8] = [
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

fn draw(
    pixels: &mut [u8],
    size: (u32, u32),
    (title, x_label): (&str, &str),
    curves: &[Curve],
    references: &[Curve],
) -> anyhow::Result<()> {
    let all = curves.iter().chain(references);
    let x_max = all
        .clone()
        .flat_map(|c| c.budgets.iter().copied())
        .fold(0.0, f64::max);
    let y_min = all
        .clone()
        .flat_map(|c| {
            c.mean
                .iter()
                .zip(c.std.iter().chain(std::iter::repeat(&0.0)))
                .map(|(m, s)| m - s)
        })
        .fold(1.0, f64::min);
    let y_min = ((y_min - 0.02) * 20.0).floor() / 20.0;
    let root = BitMapBackend::with_buffer(pixels, size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max * 1.03, y_min.max(0.0)..1.0)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("test accuracy")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()?;
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()].to_rgba();
        let points: Vec<(f64, f64)> = c
            .budgets
            .iter()
            .copied()
            .zip(c.mean.iter().copied())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(&c.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        chart.draw_series(
            c.budgets
                .iter()
                .zip(&c.mean)
                .zip(&c.std)
                .map(|((&x, &m), &s)| {
                    ErrorBar::new_vertical(x, m - s, m, m + s, colour.stroke_width(1), 6)
                }),
        )?;
    }
    for (i, c) in references.iter().enumerate() {
        let same = curves.iter().position(|r| r.strategy == c.strategy);
        let colour = COLOURS[same.unwrap_or(curves.len() + i) % COLOURS.len()].to_rgba();
        let points: Vec<(f64, f64)> = c
            .budgets
            .iter()
            .copied()
            .zip(c.mean.iter().copied())
            .collect();
        chart
            .draw_series(DashedLineSeries::new(points, 6, 4, colour.stroke_width(2)))?
            .label(&c.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn numbers(v: &Value, key: &str, path: &Path) -> anyhow::Result<Vec<f64>> {
    v.get(key)
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
        .with_context(|| format!("{}: no numeric list {key:?}", path.display()))
}

fn read_curves(path: &Path) -> anyhow::Result<Vec<Curve>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // The file may hold stderr lines too; the result is the last line that parses as JSON.
    let v: Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("{} holds no JSON object", path.display()))?;
    ensure!(
        v["bench"] == "al" || v["bench"] == "sim",
        "{} is not the output of `swarmlabel-bench al` or `sim`",
        path.display()
    );
    let mut strategy = v["strategy"].as_str().unwrap_or("?").to_owned();
    if let Some(p) = v["explore_percent"].as_u64().filter(|&p| p > 0) {
        strategy = format!("{strategy}, {p} % random");
    }
    if v["bench"] == "sim" {
        let conditions = format!(
            "noise {}, redundancy {}",
            v["noise"].as_f64().unwrap_or(0.0),
            v["redundancy"].as_u64().unwrap_or(1)
        );
        let budgets = numbers(&v, "budgets", path)?;
        // Each curve its own colour key: the strategy is the same for both.
        return Ok(vec![
            Curve {
                label: format!(
                    "network of {} nodes, {strategy} ({conditions})",
                    v["nodes"].as_u64().unwrap_or(0)
                ),
                strategy: format!("network {conditions}"),
                budgets: budgets.clone(),
                mean: numbers(&v, "accuracy_mean", path)?,
                std: Vec::new(),
            },
            Curve {
                label: format!("centralised learner, {strategy} ({conditions})"),
                strategy: format!("centralised {conditions}"),
                budgets,
                mean: numbers(&v, "centralized_accuracy", path)?,
                std: Vec::new(),
            },
        ]);
    }
    let label = format!("{strategy} ({})", v["model"].as_str().unwrap_or("?"));
    Ok(vec![Curve {
        label,
        strategy,
        budgets: numbers(&v, "budgets", path)?,
        mean: numbers(&v, "accuracy_mean", path)?,
        std: numbers(&v, "accuracy_std", path)?,
    }])
}

fn read_references(path: &Path) -> anyhow::Result<Vec<Curve>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Vec<Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON list", path.display()))?;
    v.iter()
        .map(|r| {
            Ok(Curve {
                label: r["label"].as_str().unwrap_or("reference").to_owned(),
                strategy: r["strategy"].as_str().unwrap_or("").to_owned(),
                budgets: numbers(r, "budgets", path)?,
                mean: numbers(r, "accuracy_mean", path)?,
                std: Vec::new(),
            })
        })
        .collect()
}
