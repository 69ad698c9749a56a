//! Images: decoded, resized to a configured size, grey, principal colour or RGB, scaled to
//! `[0, 1]`.

use image::imageops::FilterType;
use std::fmt;

/// The largest side of an image decoded for features, in pixels.
const MAX_SIDE: u32 = 16_384;
/// The most memory decoding one image may take (a 64-megapixel RGBA image).
const MAX_DECODE_BYTES: u64 = 256 << 20;

use super::{Extractor, FeatureError};

/// Colour channels kept from an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Colour {
    /// One luminance channel.
    Grey,
    /// One channel: each pixel's colour projected on the image's own principal colour axis
    /// (the direction in RGB along which this image varies most). Unlike luminance, it keeps a
    /// shape visible when its colour and the background's differ in hue but not in brightness;
    /// prefer it to [`Colour::Grey`] when colours are arbitrary and only form matters.
    Principal,
    /// Red, green and blue channels.
    Rgb,
}

impl Colour {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            Colour::Grey | Colour::Principal => 1,
            Colour::Rgb => 3,
        }
    }
}

/// Decodes PNG or JPEG bytes, resizes to `width x height` (triangle filter, aspect ratio not
/// kept) and returns the pixels channel-major (`C x H x W`, the layout of the `cnn` model) scaled
/// to `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFeatures {
    width: u32,
    height: u32,
    colour: Colour,
}

impl ImageFeatures {
    /// An extractor producing `colour` images of `width x height` pixels; both must be non-zero.
    pub fn new(width: u32, height: u32, colour: Colour) -> Result<Self, FeatureError> {
        if width == 0 || height == 0 {
            return Err(FeatureError::Config(format!(
                "image size {width}x{height} must be at least 1x1"
            )));
        }
        Ok(Self {
            width,
            height,
            colour,
        })
    }

    /// `(channels, height, width)` of every extracted image.
    pub fn shape(&self) -> (usize, usize, usize) {
        (
            self.colour.channels(),
            self.height as usize,
            self.width as usize,
        )
    }
}

impl Extractor for ImageFeatures {
    fn width(&self) -> usize {
        let (c, h, w) = self.shape();
        c * h * w
    }

    fn extract(&self, id: impl fmt::Display, bytes: &[u8]) -> Result<Vec<f32>, FeatureError> {
        let undecodable = |e: &dyn std::fmt::Display| FeatureError::Undecodable {
            id: id.to_string(),
            reason: e.to_string(),
        };
        // A dataset's images come from its owner, who may be hostile: decoding is bounded (a
        // 64-megapixel photo fits; a decompression bomb is refused before it is decoded).
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| undecodable(&e))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let img = reader.decode().map_err(|e| undecodable(&e))?;
        let img = if img.width() == self.width && img.height() == self.height {
            img
        } else {
            img.resize_exact(self.width, self.height, FilterType::Triangle)
        };
        let plane = (self.width * self.height) as usize;
        let mut out = vec![0.0f32; self.width()];
        match self.colour {
            Colour::Grey => {
                for (i, p) in img.to_luma8().pixels().enumerate() {
                    out[i] = f32::from(p.0[0]) / 255.0;
                }
            }
            Colour::Principal => principal(&img.to_rgb8(), &mut out),
            Colour::Rgb => {
                for (i, p) in img.to_rgb8().pixels().enumerate() {
                    for (c, &v) in p.0.iter().enumerate() {
                        out[c * plane + i] = f32::from(v) / 255.0;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Luminance weights (ITU-R BT.709), which orient the principal axis.
const LUMA: [f64; 3] = [0.2126, 0.7152, 0.0722];

/// Writes `0.5 + ((p - mean) . axis) / (255 sqrt 3)` for every pixel `p` into `out`: the
/// projection on the unit principal axis of the image's colours, oriented so that brighter
/// means higher where the axis has any brightness in it. The bound `|p - mean| <= 255 sqrt 3`
/// keeps values in `[0, 1]` with one fixed scale for every image.
fn principal(img: &image::RgbImage, out: &mut [f32]) {
    let n = f64::from(img.width()) * f64::from(img.height());
    let mut mean = [0.0f64; 3];
    for p in img.pixels() {
        for (m, &v) in mean.iter_mut().zip(&p.0) {
            *m += f64::from(v) / n;
        }
    }
    let mut cov = [[0.0f64; 3]; 3];
    for p in img.pixels() {
        let d: [f64; 3] = std::array::from_fn(|k| f64::from(p.0[k]) - mean[k]);
        for (a, row) in cov.iter_mut().enumerate() {
            for (b, c) in row.iter_mut().enumerate() {
                *c += d[a] * d[b] / n;
            }
        }
    }
    let axis = principal_axis(&cov);
    let scale = 255.0 * 3f64.sqrt();
    for (o, p) in out.iter_mut().zip(img.pixels()) {
        let proj: f64 = (0..3)
            .map(|k| (f64::from(p.0[k]) - mean[k]) * axis[k])
            .sum();
        *o = (0.5 + proj / scale).clamp(0.0, 1.0) as f32;
    }
}

/// The unit eigenvector of the largest eigenvalue of a 3x3 covariance (power iteration from
/// the luminance direction), with a non-negative luminance component; the normalised luminance
/// direction when the image has no colour variance at all.
fn principal_axis(cov: &[[f64; 3]; 3]) -> [f64; 3] {
    let norm = |v: &[f64; 3]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let luma_norm = norm(&LUMA);
    let start: [f64; 3] = std::array::from_fn(|k| LUMA[k] / luma_norm);
    let mut v = start;
    for _ in 0..64 {
        let next: [f64; 3] = std::array::from_fn(|a| (0..3).map(|b| cov[a][b] * v[b]).sum());
        let len = norm(&next);
        if len <= f64::EPSILON {
            return start;
        }
        v = next.map(|x| x / len);
    }
    let brightness: f64 = (0..3).map(|k| v[k] * LUMA[k]).sum();
    if brightness < 0.0 {
        v = v.map(|x| -x);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn rgb_is_channel_major_in_unit_range_and_resized() {
        let mut img = RgbImage::from_pixel(4, 2, Rgb([255, 0, 51]));
        img.put_pixel(0, 0, Rgb([0, 255, 0]));
        let bytes = png(&img);
        let f = ImageFeatures::new(4, 2, Colour::Rgb).unwrap();
        let v = f.extract("a", &bytes).unwrap();
        assert_eq!(v.len(), 24);
        assert_eq!(&v[0..2], &[0.0, 1.0]); // red plane
        assert_eq!(&v[8..10], &[1.0, 0.0]); // green plane
        assert!((v[17] - 0.2).abs() < 1e-6); // blue plane, 51 / 255
        let small = ImageFeatures::new(2, 1, Colour::Grey).unwrap();
        let g = small.extract("a", &bytes).unwrap();
        assert_eq!(g.len(), 2);
        assert!(g.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn principal_colour_keeps_a_shape_that_luminance_loses() {
        // Red on a green of nearly the same luminance (0.2126 * 200 = 42.5, 0.7152 * 60 = 42.9).
        let mut img = RgbImage::from_pixel(8, 8, Rgb([0, 60, 0]));
        for x in 2..6 {
            for y in 2..6 {
                img.put_pixel(x, y, Rgb([200, 0, 0]));
            }
        }
        let bytes = png(&img);
        let spread = |colour| {
            let v = ImageFeatures::new(8, 8, colour)
                .unwrap()
                .extract("a", &bytes)
                .unwrap();
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
            v[2 * 8 + 2] - v[0]
        };
        assert!(
            spread(Colour::Grey).abs() < 0.01,
            "luminance sees the shape"
        );
        // The red-green difference is about 209 of a possible 255 sqrt 3 = 442 units.
        assert!(
            spread(Colour::Principal).abs() > 0.4,
            "the principal axis loses the shape"
        );
    }

    #[test]
    fn principal_colour_is_oriented_by_brightness_and_flat_images_are_mid_grey() {
        let mut img = RgbImage::from_pixel(4, 4, Rgb([10, 10, 10]));
        img.put_pixel(1, 1, Rgb([250, 250, 250]));
        let f = ImageFeatures::new(4, 4, Colour::Principal).unwrap();
        let v = f.extract("a", &png(&img)).unwrap();
        assert!(v[5] > v[0], "the bright pixel must be higher: {v:?}");
        let flat = f
            .extract("b", &png(&RgbImage::from_pixel(4, 4, Rgb([90, 20, 200]))))
            .unwrap();
        assert!(flat.iter().all(|&x| x == 0.5), "{flat:?}");
    }

    #[test]
    fn undecodable_bytes_and_zero_size_are_errors() {
        let f = ImageFeatures::new(8, 8, Colour::Grey).unwrap();
        assert!(
            matches!(f.extract("bad-7", b"not an image"), Err(FeatureError::Undecodable { id, .. }) if id == "bad-7")
        );
        assert!(ImageFeatures::new(0, 8, Colour::Rgb).is_err());
    }
}
