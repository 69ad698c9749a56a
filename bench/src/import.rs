//! `import`: dataset import throughput against a plain copy of the same files made durable.
//!
//! Generates `files` PNG images of about `file-kib` KiB (random noise, so they do not compress),
//! then in one run measures: hashing alone; a plain copy into a fresh directory followed by one
//! sync (the disk's limit for this job); and `swarmlabel dataset create` on the folder until the
//! dataset is listed and durable.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_formats::import::{self, Format, Options};
use swarmlabel_store::Home;
use swarmlabel_store::progress::NoProgress;
use swarmlabel_store::store::sync_filesystem;

/// Flags of `swarmlabel-bench import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Number of files.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Approximate size of each file in KiB.
    #[arg(long, default_value_t = 100)]
    file_kib: usize,
    /// Directory to work in (default: the system temp directory). Results depend on its disk.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let work = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("cannot create a working directory")?;
    let source = work.path().join("source");
    eprintln!(
        "generating {} files of ~{} KiB in {}",
        args.files,
        args.file_kib,
        source.display()
    );
    let paths = generate(&source, args.files, args.file_kib)?;
    sync_filesystem(work.path())?;
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let mb = bytes as f64 / 1e6;

    eprintln!("hashing");
    let start = Instant::now();
    for p in &paths {
        let data = std::fs::read(p)?;
        std::hint::black_box(blake3::hash(&data));
    }
    let blake3_s = start.elapsed().as_secs_f64();

    eprintln!("copying");
    let copy_dir = work.path().join("copy");
    std::fs::create_dir(&copy_dir)?;
    let start = Instant::now();
    for (i, p) in paths.iter().enumerate() {
        std::fs::copy(p, copy_dir.join(format!("{i}.png")))?;
    }
    sync_filesystem(&copy_dir)?;
    let copy_s = start.elapsed().as_secs_f64();

    eprintln!("importing");
    let home_dir = work.path().join("home");
    let (home, identity) = Home::init(&home_dir, false)?;
    sync_filesystem(&home_dir)?;
    let mut opts = Options::new("bench", vec!["noise".into()]);
    opts.format = Format::Images;
    let start = Instant::now();
    let report = import::import(&home, &identity, &source, &opts, &NoProgress)?;
    let import_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.root.root().sample_count == args.files as u64,
        "the import listed {} samples, expected {}",
        report.root.root().sample_count,
        args.files
    );

    let import_mb_s = mb / import_s;
    let copy_mb_s = mb / copy_s;
    Ok(serde_json::json!({
        "bench": "import",
        "files": args.files,
        "bytes": bytes,
        "import_mb_s": round(import_mb_s),
        "copy_mb_s": round(copy_mb_s),
        "blake3_mb_s": round(mb / blake3_s),
        "ratio": round(import_mb_s / copy_mb_s),
        "peak_rss_mb": round(crate::rss::peak_rss_mb()),
        "import_s": round(import_s),
        "copy_s": round(copy_s),
    }))
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes `n` noise PNGs of about `kib` KiB each; returns their paths in order.
pub(crate) fn generate(dir: &Path, n: usize, kib: usize) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // RGB noise does not compress: the PNG is about width*height*3 bytes.
    let side = ((kib * 1024) as f64 / 3.0).sqrt().max(1.0) as u32;
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let mut img = image::RgbImage::new(side, side);
        rng.fill(&mut *img);
        let mut png = Vec::new();
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            &mut png,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::NoFilter,
        );
        img.write_with_encoder(encoder)?;
        let path = dir.join(format!("{i:06}.png"));
        std::fs::write(&path, png)?;
        paths.push(path);
    }
    Ok(paths)
}
