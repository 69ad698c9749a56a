//! The networks: parameters in a fixed order, seeded initialisation and the forward pass.

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::{Architecture, Input, ModelSpec};

/// Kernel side of every convolution of the `cnn` model (padding keeps the spatial size).
pub(super) const KERNEL: usize = 3;

/// A network's parameters, in the order the forward pass uses them.
#[derive(Debug)]
pub(super) struct Net {
    spec: ModelSpec,
    params: Vec<(String, Var)>,
}

/// Where random numbers for dropout come from in one forward pass; `None` means evaluation mode.
pub(super) type DropoutRng<'a> = Option<&'a mut ChaCha8Rng>;

impl Net {
    /// Builds the network of `spec` with weights drawn from `rng`: uniform in `±1/sqrt(fan_in)`
    /// (PyTorch's default for linear and convolution layers), so the same seed gives the same
    /// weights on every machine.
    pub(super) fn init(spec: &ModelSpec, rng: &mut ChaCha8Rng) -> candle_core::Result<Self> {
        let mut params = Vec::new();
        for layer in layers(spec) {
            let bound = 1.0 / (layer.fan_in as f32).sqrt();
            for (suffix, shape) in [("weight", &layer.weight), ("bias", &layer.bias)] {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
                let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?;
                params.push((
                    format!("{}.{suffix}", layer.name),
                    Var::from_tensor(&tensor)?,
                ));
            }
        }
        Ok(Self {
            spec: spec.clone(),
            params,
        })
    }

    /// A copy with its own storage (cloning a `Var` would share it).
    pub(super) fn deep_copy(&self) -> candle_core::Result<Self> {
        let params = self
            .params
            .iter()
            .map(|(n, v)| Ok((n.clone(), Var::from_tensor(&v.as_tensor().copy()?)?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            spec: self.spec.clone(),
            params,
        })
    }

    pub(super) fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    pub(super) fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Weight matrices and kernels (not biases): what L2 regularisation applies to.
    pub(super) fn weights(&self) -> impl Iterator<Item = &Var> {
        self.params
            .iter()
            .filter(|(n, _)| n.ends_with(".weight"))
            .map(|(_, v)| v)
    }

    /// The shape of one input row.
    pub(super) fn input(&self) -> Input {
        self.spec.input
    }

    /// Logits for a batch `x` of shape `(n, input width)`. With `rng`, dropout is on (training or
    /// Monte Carlo dropout); without, the network is deterministic.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        mut rng: DropoutRng<'_>,
    ) -> candle_core::Result<Tensor> {
        let x = self.embed(x, rng.as_deref_mut())?;
        let dropout = match &self.spec.architecture {
            // The linear model's dropout is on its inputs, already applied by `embed`.
            Architecture::Linear { .. } => 0.0,
            Architecture::Mlp { .. } => 0.0,
            Architecture::Cnn { dropout, .. } => *dropout,
        };
        let x = dropout_mask(&x, dropout, rng)?;
        let [(_, w), (_, b)] = self
            .params
            .last_chunk::<2>()
            .expect("invariant: layers() always ends with the output layer (a weight and a bias)");
        affine(&x, (w.as_tensor(), b.as_tensor()))
    }

    /// What the output layer sees for a batch `x`: the input (`linear`), the last hidden layer
    /// (`mlp`) or the dense layer after the pooling, else the pooled channels (`cnn`). Samples the
    /// network finds alike are near each other here, whatever their pixels.
    pub(super) fn embed(&self, x: &Tensor, mut rng: DropoutRng<'_>) -> candle_core::Result<Tensor> {
        let mut params = self.params.iter().map(|(_, v)| v.as_tensor());
        let mut next = || {
            let w = params.next();
            let b = params.next();
            w.zip(b)
                .expect("invariant: layers() lists every parameter forward uses")
        };
        match &self.spec.architecture {
            Architecture::Linear { dropout } => dropout_mask(x, *dropout, rng),
            Architecture::Mlp { hidden, dropout } => {
                let mut x = x.clone();
                for _ in hidden {
                    x = affine(&x, next())?.relu()?;
                    x = dropout_mask(&x, *dropout, rng.as_deref_mut())?;
                }
                Ok(x)
            }
            Architecture::Cnn {
                channels,
                hidden,
                dropout,
                standardise,
            } => {
                let Input::Image {
                    channels: c,
                    height,
                    width,
                } = self.spec.input
                else {
                    candle_core::bail!("the cnn model needs an image input");
                };
                let n = x.dim(0)?;
                let mut x = x.reshape((n, c, height, width))?;
                if *standardise {
                    x = standardise_images(&x)?;
                }
                for _ in channels {
                    let (w, b) = next();
                    x = x.conv2d(w, KERNEL / 2, 1, 1, 1)?;
                    x = x
                        .broadcast_add(&b.reshape((1, (), 1, 1))?)?
                        .relu()?
                        .max_pool2d(2)?;
                }
                // Global average pooling: (n, c, h, w) -> (n, c).
                let mut x = x.flatten_from(2)?.mean(2)?;
                if *hidden > 0 {
                    x = dropout_mask(&x, *dropout, rng)?;
                    x = affine(&x, next())?.relu()?;
                }
                Ok(x)
            }
        }
    }
}

/// Each image of the batch `x` (`n x C x H x W`) shifted and scaled, channel by channel, to mean 0
/// and standard deviation 1 over its own pixels, so that brightness, contrast and background
/// colour do not matter. A flat channel becomes 0 (the `1e-4` floor on the variance keeps it
/// finite).
pub(super) fn standardise_images(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, height, width) = x.dims4()?;
    let flat = x.reshape((n, c, height * width))?;
    let mean = flat.mean_keepdim(2)?;
    let centred = flat.broadcast_sub(&mean)?;
    let std = (centred.sqr()?.mean_keepdim(2)? + 1e-4)?.sqrt()?;
    centred.broadcast_div(&std)?.reshape((n, c, height, width))
}

/// `x W^T + b` for a batch of rows.
fn affine(x: &Tensor, (w, b): (&Tensor, &Tensor)) -> candle_core::Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// Inverted dropout with a mask drawn from `rng` (candle's own dropout draws from the unseeded
/// device generator, so runs would not reproduce).
fn dropout_mask(x: &Tensor, p: f32, rng: DropoutRng<'_>) -> candle_core::Result<Tensor> {
    let Some(rng) = rng else { return Ok(x.clone()) };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(DType::F32)?;
    x.mul(&mask)
}

struct Layer {
    name: String,
    weight: Vec<usize>,
    bias: Vec<usize>,
    fan_in: usize,
}

fn dense(name: String, inputs: usize, outputs: usize) -> Layer {
    Layer {
        name,
        weight: vec![outputs, inputs],
        bias: vec![outputs],
        fan_in: inputs,
    }
}

/// The number of weights and biases of `spec`, or `None` past `u64`. Call only on a spec whose
/// sizes are bounded (`ModelSpec::validate` checks them first).
pub(super) fn parameter_count(spec: &ModelSpec) -> Option<u64> {
    layers(spec).iter().try_fold(0u64, |sum, layer| {
        let count = |shape: &[usize]| {
            shape
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
        };
        sum.checked_add(count(&layer.weight)?)?
            .checked_add(count(&layer.bias)?)
    })
}

/// The layers of `spec`, in forward order. `ModelSpec::validate` guarantees the sizes are
/// consistent (for example that the image side survives the pooling).
fn layers(spec: &ModelSpec) -> Vec<Layer> {
    let classes = spec.classes;
    match &spec.architecture {
        Architecture::Linear { .. } => vec![dense("linear".into(), spec.input.width(), classes)],
        Architecture::Mlp { hidden, .. } => {
            let mut out = Vec::new();
            let mut inputs = spec.input.width();
            for (i, &h) in hidden.iter().enumerate() {
                out.push(dense(format!("hidden{i}"), inputs, h));
                inputs = h;
            }
            out.push(dense("output".into(), inputs, classes));
            out
        }
        Architecture::Cnn {
            channels, hidden, ..
        } => {
            let mut c = match spec.input {
                Input::Image { channels, .. } => channels,
                Input::Vector { .. } => 1,
            };
            let mut out = Vec::new();
            for (i, &next) in channels.iter().enumerate() {
                out.push(Layer {
                    name: format!("conv{i}"),
                    weight: vec![next, c, KERNEL, KERNEL],
                    bias: vec![next],
                    fan_in: c * KERNEL * KERNEL,
                });
                c = next;
            }
            // Global average pooling leaves one value per channel of the last convolution.
            if *hidden > 0 {
                out.push(dense("dense".into(), c, *hidden));
                out.push(dense("output".into(), *hidden, classes));
            } else {
                out.push(dense("output".into(), c, classes));
            }
            out
        }
    }
}
