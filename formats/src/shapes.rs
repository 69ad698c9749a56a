//! A procedurally drawn image dataset: the embedded default of the demo and of tests.
//!
//! Each image shows one shape (the class) of random colour, size, position and rotation on a
//! random background, with pixel noise. Image `i` depends only on `(seed, i)`, so the same
//! arguments always give byte-identical files. Classes are balanced (`i % classes`).

use std::f64::consts::PI;
use std::fs;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

use swarmlabel_store::progress::Progress;

/// The shape classes, in label order.
pub const CLASSES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// Side of each image in pixels.
pub const SIDE: u32 = 32;

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShapesError {
    /// The output folder already has files.
    #[error("{} is not empty; choose a new folder (generate never overwrites files)", .0.display())]
    NotEmpty(PathBuf),
    /// The count is zero.
    #[error("--count must be at least 1")]
    ZeroCount,
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Writes `count` images to `out/<class>/<class>-<i>.png`.
pub fn generate(
    out: &Path,
    count: usize,
    seed: u64,
    progress: &dyn Progress,
) -> Result<(), ShapesError> {
    if count == 0 {
        return Err(ShapesError::ZeroCount);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ShapesError::Io { path, source }
    };
    if out.exists() && fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ShapesError::NotEmpty(out.to_owned()));
    }
    for class in CLASSES {
        let dir = out.join(class);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    progress.start("generating", Some(count as u64));
    for i in 0..count {
        let class = i % CLASSES.len();
        let png = encode_png(&draw(seed, i as u64, class));
        let path = out
            .join(CLASSES[class])
            .join(format!("{}-{i:06}.png", CLASSES[class]));
        fs::write(&path, png).map_err(io(&path))?;
        progress.advance(1);
    }
    progress.finish();
    Ok(())
}

/// Encodes an image as PNG.
pub fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("invariant: encoding an in-memory RGB image as PNG cannot fail");
    out.into_inner()
}

/// Draws image `index` of class `class` (an index into [`CLASSES`]) for `seed`.
pub fn draw(seed: u64, index: u64, class: usize) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let bg: [f64; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
    let mut fg: [f64; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
    for _ in 0..32 {
        if distance(&bg, &fg) >= 140.0 {
            break;
        }
        fg = std::array::from_fn(|_| rng.random_range(0.0..255.0));
    }
    let side = f64::from(SIDE);
    let r = rng.random_range(5.0..12.0);
    let cx = rng.random_range(r + 1.0..side - r - 1.0);
    let cy = rng.random_range(r + 1.0..side - r - 1.0);
    let angle = rng.random_range(0.0..2.0 * PI);
    let (sin, cos) = angle.sin_cos();
    let noise = rng.random_range(4.0..16.0);
    const SS: usize = 3;
    let mut img = RgbImage::new(SIDE, SIDE);
    for py in 0..SIDE {
        for px in 0..SIDE {
            let mut covered = 0usize;
            for sy in 0..SS {
                for sx in 0..SS {
                    let x = f64::from(px) + (sx as f64 + 0.5) / SS as f64 - cx;
                    let y = f64::from(py) + (sy as f64 + 0.5) / SS as f64 - cy;
                    let (u, v) = (x * cos + y * sin, -x * sin + y * cos);
                    covered += usize::from(inside(class, u / r, v / r));
                }
            }
            let c = covered as f64 / (SS * SS) as f64;
            let pixel = std::array::from_fn(|k| {
                let value = bg[k] * (1.0 - c) + fg[k] * c + noise * gaussian(&mut rng);
                value.round().clamp(0.0, 255.0) as u8
            });
            img.put_pixel(px, py, Rgb(pixel));
        }
    }
    img
}

/// Whether the unit-size shape of `class` covers `(x, y)`.
fn inside(class: usize, x: f64, y: f64) -> bool {
    match class {
        0 => x * x + y * y <= 1.0,
        1 => x.abs() <= 0.8 && y.abs() <= 0.8,
        2 => {
            // Equilateral triangle with circumradius 1: three half-planes.
            (0..3).all(|k| {
                let a = -PI / 2.0 + f64::from(k) * 2.0 * PI / 3.0 + PI;
                x * a.cos() + y * a.sin() <= 0.5
            })
        }
        _ => (x.abs() <= 1.0 && y.abs() <= 0.3) || (x.abs() <= 0.3 && y.abs() <= 1.0),
    }
}

fn distance(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = encode_png(&draw(1, 5, 2));
        assert_eq!(a, encode_png(&draw(1, 5, 2)));
        assert_ne!(a, encode_png(&draw(2, 5, 2)));
    }

    #[test]
    fn every_class_draws_a_shape_that_covers_part_of_the_image() {
        for class in 0..CLASSES.len() {
            let covered = (0..100)
                .flat_map(|y| (0..100).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    inside(class, f64::from(x) / 50.0 - 1.0, f64::from(y) / 50.0 - 1.0)
                })
                .count();
            assert!(
                (1000..9000).contains(&covered),
                "class {class} covers {covered} of 10000"
            );
        }
    }
}
