//! Model configuration: the raw `[model]` table of a TOML config (neuraloperator key names),
//! validated into a [`ModelSpec`] before anything reaches burn.

use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};
use crate::factorized::Factorization;

/// Probabilistic model families (DESIGN.md's model table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Deterministic FNO (zero spread).
    Fno,
    /// Deterministic DeepONet (zero spread).
    Deeponet,
    /// Dropout kept on at test time, trained with L2.
    McDropout,
    /// `n_members` independently seeded networks.
    Ensemble,
    /// Last-layer Laplace approximation on an L2-trained network.
    Laplace,
    /// Dropout PNO trained with the energy score.
    PnoD,
    /// Reparameterised PNO: mean and std heads, trained with the energy score.
    PnoR,
    /// Mean-field Gaussian posterior on the spectral weights, trained with the ELBO.
    ViPno,
}

impl Kind {
    /// All kinds, in documentation order.
    pub const ALL: [Kind; 8] = [
        Kind::Fno,
        Kind::Deeponet,
        Kind::McDropout,
        Kind::Ensemble,
        Kind::Laplace,
        Kind::PnoD,
        Kind::PnoR,
        Kind::ViPno,
    ];

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fno => "fno",
            Kind::Deeponet => "deeponet",
            Kind::McDropout => "mc_dropout",
            Kind::Ensemble => "ensemble",
            Kind::Laplace => "laplace",
            Kind::PnoD => "pno_d",
            Kind::PnoR => "pno_r",
            Kind::ViPno => "vi_pno",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                config_err(
                    "model.kind",
                    "one of fno, deeponet, mc_dropout, ensemble, laplace, pno_d, pno_r, vi_pno",
                    format!("{s:?}"),
                )
            })
    }
}

/// Spatial noise of PNO_R samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum NoiseKind {
    /// Independent N(0,1) at every point and channel (the PNO paper).
    White,
    /// Gaussian-correlated N(0,1) fields with this correlation length (domain length 1).
    Correlated {
        /// Correlation length.
        length: f64,
    },
}

/// The raw `[model]` table. Every key is optional; unknown keys are rejected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model family (`fno`, `deeponet`, `mc_dropout`, `ensemble`, `laplace`, `pno_d`, `pno_r`, `vi_pno`).
    pub kind: Option<String>,
    /// Network of `ensemble`/`laplace`/`mc_dropout`: `fno` (default) or `deeponet`.
    pub backbone: Option<String>,
    /// Width of the Fourier blocks (FNO) or of the branch/trunk layers (DeepONet).
    pub hidden_channels: Option<usize>,
    /// Number of Fourier blocks (FNO) or of hidden layers in branch and trunk (DeepONet).
    pub n_layers: Option<usize>,
    /// Fourier modes per spatial axis (neuraloperator convention).
    pub n_modes: Option<Vec<usize>>,
    /// Hidden width of the lifting MLP (0: one linear layer).
    pub lifting_channels: Option<usize>,
    /// Hidden width of the projection MLP (0: one linear layer).
    pub projection_channels: Option<usize>,
    /// `grid` (append coordinate channels) or `none`.
    pub positional_embedding: Option<String>,
    /// Fraction of each axis appended as zero padding before the Fourier blocks.
    pub domain_padding: Option<f64>,
    /// Spectral weights: `dense` (default), `tucker` (TFNO) or `cp` (neuraloperator's names).
    pub factorization: Option<String>,
    /// Parameter fraction of a factorised spectral weight, in (0, 1] (default 1, as
    /// neuraloperator's; its TFNO example uses 0.42).
    pub rank: Option<f64>,
    /// A channel MLP inside every Fourier block (neuraloperator's `use_mlp`): after the block's
    /// activation, `x ← mlp(x) + gate ⊙ x_in` with a soft-gating skip (default false).
    pub use_mlp: Option<bool>,
    /// Hidden width of the block MLPs as a fraction of `hidden_channels` (default 0.5, as
    /// neuraloperator's `mlp_expansion`).
    pub mlp_expansion: Option<f64>,
    /// Dropout probability in the block MLPs, after each of their two layers (default: `dropout`).
    pub mlp_dropout: Option<f64>,
    /// Dropout probability in the lifting/projection MLPs.
    pub dropout: Option<f64>,
    /// Fourier-coefficient dropout probability (defaults to `dropout` for `pno_d`/`mc_dropout`).
    pub fourier_dropout: Option<f64>,
    /// Ensemble size.
    pub n_members: Option<usize>,
    /// Ensemble members predict a std too (trained with Gaussian NLL).
    pub gaussian_head: Option<bool>,
    /// PNO_R noise: `white` or `correlated`.
    pub noise: Option<String>,
    /// Correlation length of `correlated` noise (domain length 1).
    pub noise_length: Option<f64>,
    /// Prior std of the variational spectral weights (default: the init scale √(2/(2·hidden))).
    pub prior_std: Option<f64>,
    /// Initial posterior std of the variational weights.
    pub init_sigma: Option<f64>,
    /// Samples per input in the training loss (default 3 for `pno_d`/`pno_r`, 1 otherwise).
    pub train_samples: Option<usize>,
    /// DeepONet basis size `p`.
    pub basis_size: Option<usize>,
}

/// Validated FNO architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FnoSpec {
    /// Input channels (from the data).
    pub in_channels: usize,
    /// Output channels (from the data).
    pub out_channels: usize,
    /// Block width.
    pub hidden_channels: usize,
    /// Number of Fourier blocks.
    pub n_layers: usize,
    /// Modes per axis.
    pub n_modes: Vec<usize>,
    /// Lifting hidden width.
    pub lifting_channels: usize,
    /// Projection hidden width.
    pub projection_channels: usize,
    /// Grid channels appended.
    pub positional_embedding: bool,
    /// Padding fraction.
    pub domain_padding: f64,
    /// MLP dropout.
    pub dropout: f64,
    /// Fourier dropout.
    pub fourier_dropout: f64,
    /// Build a std head.
    pub std_head: bool,
    /// Variational spectral weights with this initial posterior std.
    pub variational_sigma: Option<f64>,
    /// Factorised spectral weights (`None`: dense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factorization: Option<Factorization>,
    /// Channel MLP inside every Fourier block (`None`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_mlp: Option<BlockMlp>,
}

/// The channel MLP of a Fourier block (neuraloperator's `use_mlp`): `hidden → width → hidden`
/// with GELU between, dropout after both layers, and a soft-gating skip from the block input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BlockMlp {
    /// Hidden width (`round(hidden_channels · mlp_expansion)`).
    pub width: usize,
    /// Dropout probability after each layer (stochastic passes only).
    pub dropout: f64,
}

/// Validated DeepONet architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepOnetSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Sensor grid of the branch net (the training resolution).
    pub sensors: Vec<usize>,
    /// Hidden width of branch and trunk.
    pub hidden_channels: usize,
    /// Hidden layers of branch and trunk.
    pub n_layers: usize,
    /// Basis size p.
    pub basis_size: usize,
    /// MLP dropout (for `mc_dropout`).
    pub dropout: f64,
    /// Build a std output too.
    pub std_head: bool,
}

/// The network inside a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneSpec {
    /// FNO.
    Fno(FnoSpec),
    /// DeepONet.
    Deeponet(DeepOnetSpec),
}

/// A validated model: what [`crate::Model`] is built from, stored in every run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Family.
    pub kind: Kind,
    /// Network architecture (shared by all members).
    pub backbone: BackboneSpec,
    /// Number of networks (ensemble size; 1 otherwise).
    pub n_members: usize,
    /// PNO_R noise.
    pub noise: NoiseKind,
    /// Prior std of variational weights.
    pub prior_std: f64,
    /// Samples per input in the training loss.
    pub train_samples: usize,
    /// Training spatial grid.
    pub grid: Vec<usize>,
}

fn check_prob(key: &str, p: f64) -> Result<f64> {
    if p.is_finite() && (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(config_err(key, "a probability in [0, 1)", p))
    }
}

fn check_pos(key: &str, v: usize, max: usize) -> Result<usize> {
    if (1..=max).contains(&v) {
        Ok(v)
    } else {
        Err(config_err(key, format!("an integer in 1..={max}"), v))
    }
}

impl ModelConfig {
    /// Validate against the data: `in_channels`/`out_channels` and the spatial `grid`
    /// (1 or 2 axes) of the training fields.
    pub fn validate(
        &self,
        in_channels: usize,
        out_channels: usize,
        grid: &[usize],
    ) -> Result<ModelSpec> {
        let kind = Kind::parse(self.kind.as_deref().unwrap_or("fno"))?;
        if grid.is_empty() || grid.len() > 2 {
            return Err(config_err(
                "data",
                "fields with 1 or 2 spatial axes",
                format!("{} axes", grid.len()),
            ));
        }
        let backbone = match (kind, self.backbone.as_deref()) {
            (Kind::Deeponet, None | Some("deeponet")) => "deeponet",
            (Kind::Deeponet, Some(b)) => {
                return Err(config_err(
                    "model.backbone",
                    "deeponet for kind deeponet",
                    b,
                ));
            }
            (Kind::Ensemble | Kind::Laplace | Kind::McDropout, Some(b @ ("fno" | "deeponet"))) => b,
            (_, None | Some("fno")) => "fno",
            (_, Some(b)) => {
                return Err(config_err(
                    "model.backbone",
                    format!("fno for kind {}", kind.name()),
                    format!("{b:?}"),
                ));
            }
        };
        let dropout = check_prob(
            "model.dropout",
            self.dropout.unwrap_or(match kind {
                Kind::PnoD => 0.2,
                Kind::McDropout => 0.05,
                _ => 0.0,
            }),
        )?;
        let mlp_dropout = match self.mlp_dropout {
            Some(p) => check_prob("model.mlp_dropout", p)?,
            None => dropout,
        };
        if self.use_mlp != Some(true) {
            for (key, set) in [
                ("model.mlp_expansion", self.mlp_expansion.is_some()),
                ("model.mlp_dropout", self.mlp_dropout.is_some()),
            ] {
                if set {
                    return Err(config_err(key, "only with use_mlp = true", "a value"));
                }
            }
        }
        let block_dropout = if self.use_mlp == Some(true) {
            mlp_dropout
        } else {
            0.0
        };
        if matches!(kind, Kind::PnoD | Kind::McDropout)
            && dropout == 0.0
            && block_dropout == 0.0
            && self.fourier_dropout.unwrap_or(0.0) == 0.0
        {
            return Err(config_err(
                "model.dropout",
                format!("> 0 for kind {}", kind.name()),
                dropout,
            ));
        }
        let fourier_dropout = check_prob(
            "model.fourier_dropout",
            self.fourier_dropout
                .unwrap_or(if matches!(kind, Kind::PnoD | Kind::McDropout) {
                    dropout
                } else {
                    0.0
                }),
        )?;
        let n_members = match kind {
            Kind::Ensemble => check_pos("model.n_members", self.n_members.unwrap_or(5), 64)?,
            _ => match self.n_members {
                None | Some(1) => 1,
                Some(n) => {
                    return Err(config_err(
                        "model.n_members",
                        "1 (or kind = \"ensemble\")",
                        n,
                    ));
                }
            },
        };
        let gaussian_head = self.gaussian_head.unwrap_or(false);
        if gaussian_head && kind != Kind::Ensemble {
            return Err(config_err(
                "model.gaussian_head",
                "only with kind = \"ensemble\"",
                true,
            ));
        }
        let std_head = gaussian_head || matches!(kind, Kind::PnoR | Kind::ViPno);
        let hidden = check_pos(
            "model.hidden_channels",
            self.hidden_channels.unwrap_or(32),
            4096,
        )?;
        let n_layers = check_pos("model.n_layers", self.n_layers.unwrap_or(4), 64)?;
        let noise = match self.noise.as_deref().unwrap_or("white") {
            "white" => {
                if self.noise_length.is_some() {
                    return Err(config_err(
                        "model.noise_length",
                        "only with noise = \"correlated\"",
                        "a value",
                    ));
                }
                NoiseKind::White
            }
            "correlated" => {
                let length = self.noise_length.unwrap_or(0.1);
                if !(length.is_finite() && length > 0.0 && length <= 1.0) {
                    return Err(config_err(
                        "model.noise_length",
                        "a length in (0, 1]",
                        length,
                    ));
                }
                NoiseKind::Correlated { length }
            }
            other => {
                return Err(config_err(
                    "model.noise",
                    "\"white\" or \"correlated\"",
                    format!("{other:?}"),
                ));
            }
        };
        if self.noise.is_some() && kind != Kind::PnoR {
            return Err(config_err(
                "model.noise",
                "only with kind = \"pno_r\"",
                self.noise.as_deref().unwrap_or(""),
            ));
        }
        let train_samples = check_pos(
            "model.train_samples",
            self.train_samples
                .unwrap_or(if matches!(kind, Kind::PnoD | Kind::PnoR) {
                    3
                } else {
                    1
                }),
            64,
        )?;
        if matches!(kind, Kind::PnoD | Kind::PnoR) && train_samples < 2 {
            return Err(config_err(
                "model.train_samples",
                "at least 2 (the energy score needs pairs)",
                train_samples,
            ));
        }
        let prior_std = self.prior_std.unwrap_or((1.0 / hidden as f64).sqrt());
        if !(prior_std.is_finite() && prior_std > 0.0) {
            return Err(config_err(
                "model.prior_std",
                "a positive number",
                prior_std,
            ));
        }
        let init_sigma = self.init_sigma.unwrap_or(1e-3);
        if !(init_sigma.is_finite() && init_sigma > 0.0) {
            return Err(config_err(
                "model.init_sigma",
                "a positive number",
                init_sigma,
            ));
        }
        if kind != Kind::ViPno && (self.prior_std.is_some() || self.init_sigma.is_some()) {
            return Err(config_err(
                "model.prior_std",
                "only with kind = \"vi_pno\"",
                "a value",
            ));
        }
        let backbone = if backbone == "fno" {
            if self.basis_size.is_some() {
                return Err(config_err(
                    "model.basis_size",
                    "only with a deeponet backbone",
                    "a value",
                ));
            }
            let n_modes = self.n_modes.clone().unwrap_or_else(|| vec![16; grid.len()]);
            if n_modes.len() != grid.len() {
                return Err(config_err(
                    "model.n_modes",
                    format!("{} entries (one per spatial axis of the data)", grid.len()),
                    format!("{n_modes:?}"),
                ));
            }
            for (&m, &n) in n_modes.iter().zip(grid) {
                if m == 0 || m > n {
                    return Err(config_err(
                        "model.n_modes",
                        format!("modes in 1..={n} (the training resolution)"),
                        m,
                    ));
                }
            }
            let domain_padding = self.domain_padding.unwrap_or(0.0);
            if !(domain_padding.is_finite() && (0.0..=1.0).contains(&domain_padding)) {
                return Err(config_err(
                    "model.domain_padding",
                    "a fraction in [0, 1]",
                    domain_padding,
                ));
            }
            let positional_embedding = match self.positional_embedding.as_deref().unwrap_or("grid")
            {
                "grid" => true,
                "none" => false,
                other => {
                    return Err(config_err(
                        "model.positional_embedding",
                        "\"grid\" or \"none\"",
                        format!("{other:?}"),
                    ));
                }
            };
            let factorization = match (self.factorization.as_deref(), self.rank) {
                (None | Some("dense"), None) => None,
                (None | Some("dense"), Some(r)) => {
                    return Err(config_err(
                        "model.rank",
                        "only with factorization = \"tucker\" or \"cp\"",
                        r,
                    ));
                }
                (Some(f @ ("tucker" | "cp")), rank) => {
                    let rank = rank.unwrap_or(1.0);
                    if !(rank.is_finite() && rank > 0.0 && rank <= 1.0) {
                        return Err(config_err(
                            "model.rank",
                            "a fraction of the dense parameter count in (0, 1]",
                            rank,
                        ));
                    }
                    Some(if f == "tucker" {
                        Factorization::Tucker { rank }
                    } else {
                        Factorization::Cp { rank }
                    })
                }
                (Some(other), _) => {
                    return Err(config_err(
                        "model.factorization",
                        "\"dense\", \"tucker\" or \"cp\"",
                        format!("{other:?}"),
                    ));
                }
            };
            let block_mlp = if self.use_mlp == Some(true) {
                let e = self.mlp_expansion.unwrap_or(0.5);
                if !(e.is_finite() && e > 0.0 && e <= 16.0) {
                    return Err(config_err(
                        "model.mlp_expansion",
                        "a fraction in (0, 16]",
                        e,
                    ));
                }
                Some(BlockMlp {
                    width: ((hidden as f64 * e).round() as usize).max(1),
                    dropout: mlp_dropout,
                })
            } else {
                None
            };
            BackboneSpec::Fno(FnoSpec {
                in_channels,
                out_channels,
                hidden_channels: hidden,
                n_layers,
                n_modes,
                lifting_channels: self.lifting_channels.unwrap_or(2 * hidden),
                projection_channels: self.projection_channels.unwrap_or(2 * hidden),
                positional_embedding,
                domain_padding,
                dropout,
                fourier_dropout,
                std_head,
                variational_sigma: (kind == Kind::ViPno).then_some(init_sigma),
                factorization,
                block_mlp,
            })
        } else {
            for key in [
                "n_modes",
                "domain_padding",
                "lifting_channels",
                "projection_channels",
                "positional_embedding",
                "factorization",
                "rank",
                "use_mlp",
            ] {
                let set = match key {
                    "n_modes" => self.n_modes.is_some(),
                    "domain_padding" => self.domain_padding.is_some(),
                    "lifting_channels" => self.lifting_channels.is_some(),
                    "projection_channels" => self.projection_channels.is_some(),
                    "factorization" => self.factorization.is_some(),
                    "rank" => self.rank.is_some(),
                    "use_mlp" => self.use_mlp.is_some(),
                    _ => self.positional_embedding.is_some(),
                };
                if set {
                    return Err(config_err(
                        &format!("model.{key}"),
                        "only with an fno backbone",
                        "a value",
                    ));
                }
            }
            if self.fourier_dropout.is_some() {
                return Err(config_err(
                    "model.fourier_dropout",
                    "only with an fno backbone",
                    "a value",
                ));
            }
            let sensors: usize = grid.iter().product();
            if sensors * in_channels > 1 << 20 {
                return Err(config_err(
                    "data",
                    "at most 2^20 branch inputs for deeponet",
                    sensors * in_channels,
                ));
            }
            BackboneSpec::Deeponet(DeepOnetSpec {
                in_channels,
                out_channels,
                sensors: grid.to_vec(),
                hidden_channels: hidden,
                n_layers,
                basis_size: check_pos("model.basis_size", self.basis_size.unwrap_or(64), 4096)?,
                dropout,
                std_head,
            })
        };
        Ok(ModelSpec {
            kind,
            backbone,
            n_members,
            noise,
            prior_std,
            train_samples,
            grid: grid.to_vec(),
        })
    }
}
