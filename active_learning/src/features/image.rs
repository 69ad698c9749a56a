//! Images: decoded, resized to a configured size, grey or RGB, scaled to `[0, 1]`.

use image::imageops::FilterType;

use super::{Extractor, FeatureError};

/// Colour channels kept from an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Colour {
    /// One luminance channel.
    Grey,
    /// Red, green and blue channels.
    Rgb,
}

impl Colour {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            Colour::Grey => 1,
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

    fn extract(&self, id: &str, bytes: &[u8]) -> Result<Vec<f32>, FeatureError> {
        let img = image::load_from_memory(bytes).map_err(|e| FeatureError::Undecodable {
            id: id.to_owned(),
            reason: e.to_string(),
        })?;
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
    fn undecodable_bytes_and_zero_size_are_errors() {
        let f = ImageFeatures::new(8, 8, Colour::Grey).unwrap();
        assert!(
            matches!(f.extract("bad-7", b"not an image"), Err(FeatureError::Undecodable { id, .. }) if id == "bad-7")
        );
        assert!(ImageFeatures::new(0, 8, Colour::Rgb).is_err());
    }
}
