//! Training-time image augmentation: each training image is shown in a random one of the
//! mirror images and quarter turns of itself, so a few labels teach the shape in every
//! orientation.

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::{Input, ModelError};

/// Label-preserving transformations applied to image inputs while training (never when
/// predicting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Augment {
    /// Train on the images as they are.
    #[default]
    Off,
    /// Each time an image enters a batch it is flipped and turned at random: one of the 8
    /// symmetries of the square (flips, quarter turns, transpositions), or of the 4 flips and half
    /// turn when the image is not square, each equally likely. Only right when orientation does
    /// not decide the class (shapes, cells, textures, aerial views; not digits or letters, where a
    /// turned 6 is a 9).
    FlipsAndTurns,
}

/// The pixel permutations of an augmentation for one input shape: `perms[k][j]` is the source
/// index of output value `j` under transformation `k` (channel-major `C x H x W` rows).
#[derive(Debug)]
pub(super) struct Transforms {
    perms: Vec<Vec<usize>>,
}

impl Transforms {
    /// The transformations of `augment` on `input`; `None` when `augment` is off.
    pub(super) fn new(augment: Augment, input: Input) -> Result<Option<Self>, ModelError> {
        if augment == Augment::Off {
            return Ok(None);
        }
        let Input::Image {
            channels,
            height,
            width,
        } = input
        else {
            return Err(ModelError::Spec(
                "flip and turn augmentation needs an image input; turn it off for vector features"
                    .into(),
            ));
        };
        let transposes: &[bool] = if height == width {
            &[false, true]
        } else {
            &[false]
        };
        let mut perms = Vec::with_capacity(8);
        for &transpose in transposes {
            for flip_y in [false, true] {
                for flip_x in [false, true] {
                    let mut perm = Vec::with_capacity(channels * height * width);
                    for c in 0..channels {
                        for y in 0..height {
                            for x in 0..width {
                                let (sy, sx) = if transpose { (x, y) } else { (y, x) };
                                let sy = if flip_y { height - 1 - sy } else { sy };
                                let sx = if flip_x { width - 1 - sx } else { sx };
                                perm.push((c * height + sy) * width + sx);
                            }
                        }
                    }
                    perms.push(perm);
                }
            }
        }
        Ok(Some(Self { perms }))
    }

    /// Number of distinct transformations (the identity included).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.perms.len()
    }

    /// `row` under transformation `k`.
    pub(super) fn apply(&self, k: usize, row: &[f32], out: &mut Vec<f32>) {
        out.extend(self.perms[k].iter().map(|&j| row[j]));
    }

    /// The rows `rows` of the flat row-major `data` (`cols` values a row), each under a
    /// transformation drawn from `rng`.
    pub(super) fn batch(
        &self,
        data: &[f32],
        cols: usize,
        rows: &[u32],
        rng: &mut ChaCha8Rng,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * cols);
        for &r in rows {
            let r = r as usize;
            let k = rng.random_range(0..self.perms.len());
            self.apply(k, &data[r * cols..(r + 1) * cols], &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn image(channels: usize, height: usize, width: usize) -> Input {
        Input::Image {
            channels,
            height,
            width,
        }
    }

    #[test]
    fn square_images_get_the_eight_symmetries_of_the_square() {
        // 2 channels of 2x2: values 0..8; channel 1 is channel 0 plus 4.
        let t = Transforms::new(Augment::FlipsAndTurns, image(2, 2, 2))
            .unwrap()
            .unwrap();
        assert_eq!(t.len(), 8);
        let row: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let mut seen = Vec::new();
        for k in 0..t.len() {
            let mut out = Vec::new();
            t.apply(k, &row, &mut out);
            // Channels move together and every value is kept.
            assert_eq!(
                out[4..].to_vec(),
                out[..4].iter().map(|v| v + 4.0).collect::<Vec<_>>()
            );
            let mut sorted = out.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, row);
            seen.push(out[..4].to_vec());
        }
        // Plane [[0, 1], [2, 3]]: the identity, a flip, a quarter turn and a transposition.
        for expected in [
            [0.0, 1.0, 2.0, 3.0],
            [1.0, 0.0, 3.0, 2.0],
            [2.0, 0.0, 3.0, 1.0],
            [0.0, 2.0, 1.0, 3.0],
        ] {
            assert!(seen.contains(&expected.to_vec()), "{expected:?} missing");
        }
        seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
        seen.dedup();
        assert_eq!(seen.len(), 8, "the 8 transformations are distinct");
    }

    #[test]
    fn non_square_images_are_only_flipped_and_vectors_are_an_error() {
        let t = Transforms::new(Augment::FlipsAndTurns, image(1, 1, 3))
            .unwrap()
            .unwrap();
        assert_eq!(t.len(), 4);
        let mut out = Vec::new();
        t.apply(1, &[1.0, 2.0, 3.0], &mut out);
        assert_eq!(out, vec![3.0, 2.0, 1.0]);
        assert!(
            Transforms::new(Augment::Off, image(1, 2, 2))
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            Transforms::new(Augment::FlipsAndTurns, Input::Vector { width: 4 }),
            Err(ModelError::Spec(_))
        ));
    }

    #[test]
    fn batches_draw_a_transformation_per_row_reproducibly() {
        let t = Transforms::new(Augment::FlipsAndTurns, image(1, 2, 2))
            .unwrap()
            .unwrap();
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let draw = |seed| t.batch(&data, 4, &[2, 0, 2], &mut ChaCha8Rng::seed_from_u64(seed));
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_eq!(a.len(), 12);
        let mut first = a[..4].to_vec();
        first.sort_by(f32::total_cmp);
        assert_eq!(first, vec![8.0, 9.0, 10.0, 11.0]);
        assert!(
            (0..20).any(|s| draw(s) != a),
            "transformations vary with the seed"
        );
    }
}
