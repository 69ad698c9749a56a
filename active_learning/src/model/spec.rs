//! What a model is: its layers, the shape of its input and its classes.

use super::ModelError;

/// Parameters a model may have at most: 16 Mi float32 values, 64 MiB of weights. A spec is
/// checked against this (and the bounds below) before any tensor exists, because specs arrive
/// from peers: a declared layer of a billion units must be an error, not an allocation.
pub const MAX_PARAMETERS: u64 = 16 << 20;
/// Values of one sample's input at most (a 2048 x 2048 RGB image is 12.6 Mi).
pub const MAX_INPUT_VALUES: usize = 16 << 20;
/// Hidden layers or convolutions at most.
pub const MAX_LAYERS: usize = 16;
/// Width of a layer, channels of a convolution or number of classes at most.
pub const MAX_WIDTH: usize = 1 << 16;
/// Values one sample's first convolution outputs at most (what a forward pass holds per sample).
pub const MAX_ACTIVATIONS: u64 = 64 << 20;

/// The layers of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Architecture {
    /// Softmax regression; `dropout` applies to the inputs (0 = none; BALD needs some).
    Linear {
        /// Probability of dropping an input value in training and Monte Carlo passes.
        dropout: f32,
    },
    /// Fully connected layers with ReLU, dropout after each hidden layer.
    Mlp {
        /// Width of each hidden layer, in order.
        hidden: Vec<usize>,
        /// Dropout probability after each hidden layer.
        dropout: f32,
    },
    /// 3x3 convolutions (same padding) each followed by ReLU and 2x2 max pooling, then global
    /// average pooling (so the position of a pattern does not matter and the dense part stays
    /// small whatever the image size), an optional dense layer and the output layer; dropout
    /// before each dense layer.
    Cnn {
        /// Output channels of each convolution, in order.
        channels: Vec<usize>,
        /// Width of the dense layer after the pooling (0 = none).
        hidden: usize,
        /// Dropout probability before each dense layer.
        dropout: f32,
        /// Whether each image is first standardised per channel (its own mean and standard
        /// deviation), so that brightness and background colour do not matter. Turn it off when
        /// the absolute colour is what tells classes apart.
        standardise: bool,
    },
}

/// The shape of one sample's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Input {
    /// A flat vector.
    Vector {
        /// Number of values.
        width: usize,
    },
    /// An image stored channel-major (`C x H x W`), as [`crate::ImageFeatures`] produces.
    Image {
        /// Channels (1 grey, 3 RGB).
        channels: usize,
        /// Rows of pixels.
        height: usize,
        /// Columns of pixels.
        width: usize,
    },
}

impl Input {
    /// Number of values per sample.
    pub fn width(&self) -> usize {
        match *self {
            Input::Vector { width } => width,
            Input::Image {
                channels,
                height,
                width,
            } => channels * height * width,
        }
    }
}

/// Everything needed to rebuild a model's layers: architecture, input shape, classes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    /// The layers.
    pub architecture: Architecture,
    /// Shape of one sample's features.
    pub input: Input,
    /// Number of classes (columns of the probability tables), at least 2.
    pub classes: usize,
}

impl ModelSpec {
    /// Softmax regression on `width` features.
    pub fn linear(width: usize, classes: usize) -> Self {
        Self {
            architecture: Architecture::Linear { dropout: 0.0 },
            input: Input::Vector { width },
            classes,
        }
    }

    /// A multilayer perceptron on `width` features.
    pub fn mlp(width: usize, hidden: Vec<usize>, dropout: f32, classes: usize) -> Self {
        Self {
            architecture: Architecture::Mlp { hidden, dropout },
            input: Input::Vector { width },
            classes,
        }
    }

    /// The default small CNN (convolutions of 8, 16 and 32 channels, a dense layer of 64,
    /// dropout 0.25, per-image standardisation) on `channels x height x width` images. The
    /// narrow convolutions train about twice as fast on CPU as 16, 32 and 64 channels, with the
    /// same accuracy on the shapes dataset at 200 labels (see the crate README).
    pub fn cnn(channels: usize, height: usize, width: usize, classes: usize) -> Self {
        Self {
            architecture: Architecture::Cnn {
                channels: vec![8, 16, 32],
                hidden: 64,
                dropout: 0.25,
                standardise: true,
            },
            input: Input::Image {
                channels,
                height,
                width,
            },
            classes,
        }
    }

    /// Whether forward passes differ with dropout on (what Monte Carlo dropout needs).
    pub fn has_dropout(&self) -> bool {
        match &self.architecture {
            Architecture::Linear { dropout } => *dropout > 0.0,
            Architecture::Mlp { hidden, dropout } => *dropout > 0.0 && !hidden.is_empty(),
            Architecture::Cnn { dropout, .. } => *dropout > 0.0,
        }
    }

    /// The number of weights and biases (what [`MAX_PARAMETERS`] bounds), for a spec that
    /// [`ModelSpec::validate`] accepts.
    pub fn parameter_count(&self) -> Result<u64, ModelError> {
        self.validate()?;
        super::net::parameter_count(self)
            .ok_or_else(|| ModelError::Spec("the parameter count overflows".into()))
    }

    /// Checks the sizes against the bounds of this module, with arithmetic that cannot overflow,
    /// before anything is computed from them.
    fn check_bounds(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Spec(m));
        let (widths, layers): (Vec<usize>, usize) = match &self.architecture {
            Architecture::Linear { .. } => (Vec::new(), 0),
            Architecture::Mlp { hidden, .. } => (hidden.clone(), hidden.len()),
            Architecture::Cnn {
                channels, hidden, ..
            } => {
                let mut w = channels.clone();
                w.push(*hidden);
                (w, channels.len() + 1)
            }
        };
        if layers > MAX_LAYERS {
            return bad(format!("{layers} layers; at most {MAX_LAYERS} are allowed"));
        }
        if let Some(w) = widths
            .iter()
            .chain([&self.classes])
            .find(|&&w| w > MAX_WIDTH)
        {
            return bad(format!(
                "a layer of width {w}; at most {MAX_WIDTH} is allowed"
            ));
        }
        let input = match self.input {
            Input::Vector { width } => Some(width),
            Input::Image {
                channels,
                height,
                width,
            } => channels
                .checked_mul(height)
                .and_then(|n| n.checked_mul(width)),
        };
        if input.is_none_or(|n| n > MAX_INPUT_VALUES) {
            return bad(format!(
                "the input has more than {MAX_INPUT_VALUES} values per sample"
            ));
        }
        if let (Architecture::Cnn { channels, .. }, Input::Image { height, width, .. }) =
            (&self.architecture, self.input)
        {
            let first = channels.first().copied().unwrap_or(0) as u64;
            if first * (height as u64) * (width as u64) > MAX_ACTIVATIONS {
                return bad(format!(
                    "the first convolution outputs more than {MAX_ACTIVATIONS} values per sample"
                ));
            }
        }
        Ok(())
    }

    /// Checks that the layers can be built within the bounds of this module (see
    /// [`MAX_PARAMETERS`]).
    pub fn validate(&self) -> Result<(), ModelError> {
        self.check_bounds()?;
        self.check_shapes()?;
        match super::net::parameter_count(self) {
            Some(n) if n <= MAX_PARAMETERS => Ok(()),
            _ => Err(ModelError::Spec(format!(
                "the model has more than {MAX_PARAMETERS} parameters"
            ))),
        }
    }

    fn check_shapes(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Spec(m));
        if self.classes < 2 {
            return bad(format!(
                "{} classes; a classifier needs at least 2",
                self.classes
            ));
        }
        if self.input.width() == 0 {
            return bad("the input has no values".into());
        }
        let dropout = match &self.architecture {
            Architecture::Linear { dropout } => *dropout,
            Architecture::Mlp { hidden, dropout } => {
                if hidden.contains(&0) {
                    return bad("an mlp hidden layer has width 0".into());
                }
                *dropout
            }
            Architecture::Cnn {
                channels, dropout, ..
            } => {
                let Input::Image { height, width, .. } = self.input else {
                    return bad(
                        "the cnn model needs an image input (channels, height, width)".into(),
                    );
                };
                let shrink = 1usize << channels.len().min(usize::BITS as usize - 1);
                if channels.is_empty() || channels.contains(&0) {
                    return bad("the cnn needs at least one convolution, each with channels".into());
                }
                if height < shrink || width < shrink {
                    return bad(format!(
                        "{height}x{width} images are too small for {} poolings",
                        channels.len()
                    ));
                }
                *dropout
            }
        };
        if !(0.0..1.0).contains(&dropout) {
            return bad(format!("dropout {dropout} is not in [0, 1)"));
        }
        Ok(())
    }
}
