//! The models peers train: softmax regression (`logreg`), the FedAvg "2NN" MLP (`mlp`) and the
//! FedAvg CNN (`cnn`), in candle on the CPU.
//!
//! Owns a model's parameters: one candle `Var` per named tensor, kept in canonical order
//! (sorted by name, the order of `murmur_protocol::Layout`), initialized from our own seeded
//! RNG so every peer given the same seed starts from the same weights (candle's CPU RNG
//! cannot be seeded). Exports to and imports from [`FlatParams`] in place (`Var::set`), so the
//! optimizer keeps its state across an averaging step. It does no training and no I/O.

mod conv;
mod init;

use candle_core::{DType, Device, Tensor, Var};
use murmur_protocol::{FlatParams, Layout, TensorSpec};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use conv::ConvImpl;

/// The FedAvg MLP's hidden sizes ("2NN": two hidden layers of 200).
pub const DEFAULT_MLP_HIDDEN: [usize; 2] = [200, 200];

/// Which model to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelKind {
    /// Softmax regression: one linear layer.
    LogReg,
    /// Fully connected layers with ReLU, of the given hidden sizes.
    Mlp { hidden: Vec<usize> },
    /// conv5x5-32, pool, conv5x5-64, pool, fc-512, fc-classes (FedAvg CNN).
    Cnn,
}

/// A model name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown model {got:?}: expected `logreg`, `mlp`, `mlp:<h1>-<h2>-...` (e.g. mlp:200-200) or `cnn`"
)]
pub struct ParseModelError {
    got: String,
}

impl FromStr for ModelKind {
    type Err = ParseModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseModelError { got: s.to_string() };
        match s {
            "logreg" => Ok(ModelKind::LogReg),
            "mlp" => Ok(ModelKind::Mlp {
                hidden: DEFAULT_MLP_HIDDEN.to_vec(),
            }),
            "cnn" => Ok(ModelKind::Cnn),
            _ => {
                let sizes = s.strip_prefix("mlp:").ok_or_else(err)?;
                let hidden = sizes
                    .split('-')
                    .map(|h| {
                        h.parse::<usize>()
                            .ok()
                            .filter(|&h| (1..=65_536).contains(&h))
                    })
                    .collect::<Option<Vec<_>>>()
                    .filter(|h| !h.is_empty() && h.len() <= 16)
                    .ok_or_else(err)?;
                Ok(ModelKind::Mlp { hidden })
            }
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelKind::LogReg => f.write_str("logreg"),
            ModelKind::Mlp { hidden } if hidden[..] == DEFAULT_MLP_HIDDEN => f.write_str("mlp"),
            ModelKind::Mlp { hidden } => {
                let sizes: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
                write!(f, "mlp:{}", sizes.join("-"))
            }
            ModelKind::Cnn => f.write_str("cnn"),
        }
    }
}

/// Errors building a model or moving weights in and out of it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the cnn needs images whose height and width are multiples of 4, got {height}x{width}")]
    CnnInput { height: usize, width: usize },
    #[error(
        "weights have layout of {got} values in {got_tensors} tensors; this model needs {expected} in {expected_tensors}"
    )]
    LayoutMismatch {
        expected: u64,
        expected_tensors: usize,
        got: u64,
        got_tensors: usize,
    },
    #[error("weights hold a non-finite value (NaN or infinity)")]
    NonFinite,
    #[error(transparent)]
    Layout(#[from] murmur_protocol::LayoutError),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One parameter to create: its name, shape and fan-in (for initialization).
#[derive(Debug, Clone)]
struct ParamSpec {
    name: String,
    shape: Vec<usize>,
    fan_in: usize,
}

fn linear(name: &str, inputs: usize, outputs: usize) -> [ParamSpec; 2] {
    [
        ParamSpec {
            name: format!("{name}.weight"),
            shape: vec![outputs, inputs],
            fan_in: inputs,
        },
        ParamSpec {
            name: format!("{name}.bias"),
            shape: vec![outputs],
            fan_in: inputs,
        },
    ]
}

fn conv(name: &str, cin: usize, cout: usize, k: usize) -> [ParamSpec; 2] {
    let fan_in = cin * k * k;
    [
        ParamSpec {
            name: format!("{name}.weight"),
            shape: vec![cout, cin, k, k],
            fan_in,
        },
        ParamSpec {
            name: format!("{name}.bias"),
            shape: vec![cout],
            fan_in,
        },
    ]
}

/// A model: its kind, input shape and parameters.
#[derive(Debug)]
pub struct Network {
    kind: ModelKind,
    /// Input shape: channels, height, width.
    input: [usize; 3],
    classes: usize,
    conv_impl: ConvImpl,
    /// Parameters by name; a BTreeMap iterates in canonical (sorted) order.
    params: BTreeMap<String, Var>,
    layout: Layout,
}

impl Network {
    /// Builds `kind` for inputs of shape `input` (channels, height, width) and `classes`
    /// outputs, with weights drawn from a ChaCha8 RNG seeded with `seed` (PyTorch's default
    /// scheme: uniform in ±1/sqrt(fan_in)).
    pub fn new(
        kind: ModelKind,
        input: [usize; 3],
        classes: usize,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let [c, h, w] = input;
        let features = c * h * w;
        let specs: Vec<ParamSpec> = match &kind {
            ModelKind::LogReg => linear("fc", features, classes).to_vec(),
            ModelKind::Mlp { hidden } => {
                let mut sizes = vec![features];
                sizes.extend(hidden);
                sizes.push(classes);
                sizes
                    .windows(2)
                    .enumerate()
                    .flat_map(|(i, io)| linear(&format!("fc{}", i + 1), io[0], io[1]))
                    .collect()
            }
            ModelKind::Cnn => {
                if h % 4 != 0 || w % 4 != 0 {
                    return Err(ModelError::CnnInput {
                        height: h,
                        width: w,
                    });
                }
                let mut v = conv("conv1", c, 32, 5).to_vec();
                v.extend(conv("conv2", 32, 64, 5));
                v.extend(linear("fc1", 64 * (h / 4) * (w / 4), 512));
                v.extend(linear("fc2", 512, classes));
                v
            }
        };
        let mut specs = specs;
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut rng = init::rng(seed);
        let mut params = BTreeMap::new();
        let mut tensors = Vec::with_capacity(specs.len());
        for spec in &specs {
            let values = init::uniform_fan_in(&mut rng, spec.shape.iter().product(), spec.fan_in);
            let tensor = Tensor::from_vec(values, spec.shape.as_slice(), &Device::Cpu)?;
            params.insert(spec.name.clone(), Var::from_tensor(&tensor)?);
            let shape: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
            tensors.push(TensorSpec::f32(spec.name.clone(), &shape));
        }
        let layout = Layout::from_sorted(tensors)?;
        Ok(Self {
            kind,
            input,
            classes,
            conv_impl: ConvImpl::default(),
            params,
            layout,
        })
    }

    /// Chooses how convolutions are computed (see [`ConvImpl`]).
    pub fn with_conv_impl(mut self, conv_impl: ConvImpl) -> Self {
        self.conv_impl = conv_impl;
        self
    }

    /// The model kind.
    pub fn kind(&self) -> &ModelKind {
        &self.kind
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The canonical layout of the parameters.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of parameters.
    pub fn param_count(&self) -> u64 {
        self.layout.numel()
    }

    /// The trainable variables, in canonical order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.values().cloned().collect()
    }

    fn p(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.params
            .get(name)
            .map(|v| v.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg(format!("model has no parameter {name}")))
    }

    fn dense(&self, name: &str, xs: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.p(&format!("{name}.weight"))?;
        let b = self.p(&format!("{name}.bias"))?;
        xs.matmul(&w.t()?)?.broadcast_add(b)
    }

    /// Logits for a batch: `xs` is `[batch, channels*height*width]`, the result
    /// `[batch, classes]`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match &self.kind {
            ModelKind::LogReg => self.dense("fc", xs),
            ModelKind::Mlp { hidden } => {
                let mut x = xs.clone();
                for i in 1..=hidden.len() {
                    x = self.dense(&format!("fc{i}"), &x)?.relu()?; // [batch, hidden[i-1]]
                }
                self.dense(&format!("fc{}", hidden.len() + 1), &x) // [batch, classes]
            }
            ModelKind::Cnn => {
                let [c, h, w] = self.input;
                let batch = xs.dim(0)?;
                let conv = |name: &str, x: &Tensor| {
                    conv::conv2d_same(
                        self.conv_impl,
                        x,
                        self.p(&format!("{name}.weight"))?,
                        self.p(&format!("{name}.bias"))?,
                    )
                };
                let x = conv::to_internal(self.conv_impl, &xs.reshape((batch, c, h, w))?)?;
                let x = conv::max_pool2(self.conv_impl, &conv("conv1", &x)?.relu()?)?; // 32 x h/2 x w/2
                let x = conv::max_pool2(self.conv_impl, &conv("conv2", &x)?.relu()?)?; // 64 x h/4 x w/4
                let x = conv::to_nchw(self.conv_impl, &x)?.flatten_from(1)?; // [batch, 64*h/4*w/4]
                let x = self.dense("fc1", &x)?.relu()?; // [batch, 512]
                self.dense("fc2", &x) // [batch, classes]
            }
        }
    }

    /// The current weights, flat, in canonical order.
    pub fn export(&self) -> Result<FlatParams, ModelError> {
        let mut values = Vec::with_capacity(self.layout.numel() as usize);
        for var in self.params.values() {
            values.extend(var.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(FlatParams::new(self.layout.clone(), values)?)
    }

    /// Overwrites the weights in place (the optimizer's state is kept). Refuses weights of
    /// another layout or with non-finite values, leaving the model unchanged.
    pub fn import(&self, params: &FlatParams) -> Result<(), ModelError> {
        if params.layout() != &self.layout {
            return Err(ModelError::LayoutMismatch {
                expected: self.layout.numel(),
                expected_tensors: self.layout.tensors().len(),
                got: params.layout().numel(),
                got_tensors: params.layout().tensors().len(),
            });
        }
        if !params.all_finite() {
            return Err(ModelError::NonFinite);
        }
        for ((spec, values), var) in params.tensors().zip(self.params.values()) {
            let t = Tensor::from_slice(values, var.shape(), &Device::Cpu)?;
            debug_assert_eq!(t.dtype(), DType::F32, "{}", spec.name);
            var.set(&t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_model_names() {
        for name in ["logreg", "mlp", "mlp:64-32", "cnn"] {
            assert_eq!(name.parse::<ModelKind>().unwrap().to_string(), name);
        }
        for bad in ["", "mlp:", "mlp:0", "mlp:a-b", "resnet"] {
            assert!(bad.parse::<ModelKind>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parameter_counts_match_the_fedavg_paper() {
        let mlp = Network::new("mlp".parse().unwrap(), [1, 28, 28], 10, 1).unwrap();
        assert_eq!(mlp.param_count(), 199_210);
        let cnn = Network::new(ModelKind::Cnn, [1, 28, 28], 10, 1).unwrap();
        assert_eq!(cnn.param_count(), 1_663_370);
    }

    #[test]
    fn same_seed_same_weights_and_round_trip() {
        let a = Network::new(ModelKind::LogReg, [1, 8, 8], 10, 7).unwrap();
        let b = Network::new(ModelKind::LogReg, [1, 8, 8], 10, 7).unwrap();
        let c = Network::new(ModelKind::LogReg, [1, 8, 8], 10, 8).unwrap();
        assert_eq!(a.export().unwrap(), b.export().unwrap());
        assert_ne!(a.export().unwrap(), c.export().unwrap());
        a.import(&c.export().unwrap()).unwrap();
        assert_eq!(a.export().unwrap(), c.export().unwrap());
        let names: Vec<_> = a
            .layout()
            .tensors()
            .iter()
            .map(|t| t.name.clone())
            .collect();
        assert_eq!(names, ["fc.bias", "fc.weight"]);
    }

    #[test]
    fn import_refuses_bad_weights_and_keeps_the_model() {
        let a = Network::new(ModelKind::LogReg, [1, 8, 8], 10, 7).unwrap();
        let before = a.export().unwrap();
        let mut nan = before.clone();
        nan.values_mut()[3] = f32::NAN;
        assert!(matches!(a.import(&nan), Err(ModelError::NonFinite)));
        let other = Network::new(ModelKind::LogReg, [1, 4, 4], 10, 7)
            .unwrap()
            .export()
            .unwrap();
        assert!(matches!(
            a.import(&other),
            Err(ModelError::LayoutMismatch { .. })
        ));
        assert_eq!(a.export().unwrap(), before);
    }

    #[test]
    fn conv_implementations_give_the_same_model() {
        let net = Network::new(ModelKind::Cnn, [1, 8, 8], 10, 3).unwrap();
        let xs: Vec<f32> = (0..2 * 64).map(|i| (i % 17) as f32 / 17.0).collect();
        let xs = Tensor::from_vec(xs, (2, 64), &Device::Cpu).unwrap();
        let a = net.forward(&xs).unwrap();
        let b = net.with_conv_impl(ConvImpl::Candle).forward(&xs).unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }
}
