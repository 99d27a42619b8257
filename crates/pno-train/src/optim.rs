//! Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) with PyTorch's update rule,
//! global gradient-norm clipping and a finiteness guard, with state addressed by parameter
//! name so it can be checkpointed, restored and rolled back exactly.

use std::collections::BTreeMap;

use pno_models::burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use pno_models::burn::optim::GradientsParams;
use pno_models::burn::tensor::{Tensor, TensorData};
use pno_models::weights::NamedTensor;

/// Optimiser hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Decoupled (AdamW) rather than L2 (Adam) weight decay.
    pub decoupled: bool,
}

/// Per-parameter moment estimates, by parameter name, on the host (f32), plus the step count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdamState {
    /// First moments.
    pub m: BTreeMap<String, Vec<f32>>,
    /// Second moments.
    pub v: BTreeMap<String, Vec<f32>>,
    /// Completed steps.
    pub step: u64,
}

impl AdamState {
    /// As named tensors `optim.m.<param>` / `optim.v.<param>` (shapes flat).
    pub fn to_named(&self) -> BTreeMap<String, NamedTensor> {
        let mut out = BTreeMap::new();
        for (prefix, map) in [("optim.m.", &self.m), ("optim.v.", &self.v)] {
            for (k, v) in map {
                out.insert(
                    format!("{prefix}{k}"),
                    NamedTensor {
                        shape: vec![v.len()],
                        values: v.clone(),
                    },
                );
            }
        }
        out
    }

    /// Inverse of [`AdamState::to_named`] (entries without the prefixes are ignored).
    pub fn from_named(tensors: &BTreeMap<String, NamedTensor>, step: u64) -> Self {
        let mut s = AdamState {
            step,
            ..Default::default()
        };
        for (k, t) in tensors {
            if let Some(name) = k.strip_prefix("optim.m.") {
                s.m.insert(name.to_string(), t.values.clone());
            } else if let Some(name) = k.strip_prefix("optim.v.") {
                s.v.insert(name.to_string(), t.values.clone());
            }
        }
        s
    }
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// Applied, with the gradient norm before clipping.
    Applied {
        /// Global L2 norm of the gradient.
        grad_norm: f64,
    },
    /// Rejected: some gradient was NaN/±Inf (nothing was changed).
    NonFinite,
}

struct Norm<'a> {
    grads: &'a GradientsParams,
    sq: f64,
    finite: bool,
}

impl ModuleVisitor for Norm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let v = g
                .inner()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            for x in v {
                if !x.is_finite() {
                    self.finite = false;
                }
                self.sq += f64::from(x) * f64::from(x);
            }
        }
    }
}

struct Update<'a> {
    path: Vec<String>,
    grads: &'a mut GradientsParams,
    state: &'a mut AdamState,
    cfg: AdamConfig,
    lr: f64,
    clip: f64,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let name = self.path.join(".");
        let (id, tensor, mapper) = param.consume();
        let device = tensor.device();
        let dims = tensor.dims();
        let require_grad = tensor.is_require_grad();
        let mut w = tensor
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let g = grad
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let m = self
            .state
            .m
            .entry(name.clone())
            .or_insert_with(|| vec![0.0; w.len()]);
        let v = self
            .state
            .v
            .entry(name)
            .or_insert_with(|| vec![0.0; w.len()]);
        let c = &self.cfg;
        let t = self.state.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let step = self.lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        for i in 0..w.len() {
            let mut gi = f64::from(g[i]) * self.clip;
            let wi = f64::from(w[i]);
            if c.weight_decay > 0.0 && !c.decoupled {
                gi += c.weight_decay * wi;
            }
            let mi = c.beta1 * f64::from(m[i]) + (1.0 - c.beta1) * gi;
            let vi = c.beta2 * f64::from(v[i]) + (1.0 - c.beta2) * gi * gi;
            m[i] = mi as f32;
            v[i] = vi as f32;
            let mut wn = wi;
            if c.weight_decay > 0.0 && c.decoupled {
                wn *= 1.0 - self.lr * c.weight_decay;
            }
            wn -= step * mi / (vi.sqrt() / bc2_sqrt + c.eps);
            w[i] = wn as f32;
        }
        let mut new = Tensor::<D>::from_data(TensorData::new(w, dims), &device);
        if require_grad {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Global L2 norm of the gradients of `module`'s parameters and whether all are finite.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> (f64, bool) {
    let mut n = Norm {
        grads,
        sq: 0.0,
        finite: true,
    };
    module.visit(&mut n);
    (n.sq.sqrt(), n.finite && n.sq.is_finite())
}

/// One optimiser step: reject non-finite gradients, clip the global norm to `clip` (0 = off,
/// PyTorch's `clip_grad_norm_` factor `clip / (norm + 1e-6)`), then update every parameter.
pub fn adam_step<M: Module>(
    module: M,
    mut grads: GradientsParams,
    state: &mut AdamState,
    cfg: AdamConfig,
    lr: f64,
    clip: f64,
) -> (M, StepOutcome) {
    let (norm, finite) = grad_norm(&module, &grads);
    if !finite {
        return (module, StepOutcome::NonFinite);
    }
    let factor = if clip > 0.0 && norm > clip {
        clip / (norm + 1e-6)
    } else {
        1.0
    };
    state.step += 1;
    let mut u = Update {
        path: Vec::new(),
        grads: &mut grads,
        state,
        cfg,
        lr,
        clip: factor,
    };
    let module = module.map(&mut u);
    (module, StepOutcome::Applied { grad_norm: norm })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pno_models::burn::tensor::Device;
    use pno_models::init::Init;
    use pno_models::layers::Pointwise;

    fn grads_of(layer: &Pointwise, a: f32, b: f32, device: &Device) -> GradientsParams {
        let x = Tensor::<3>::from_data(TensorData::new(vec![a, b], [1, 2, 1]), device);
        let loss = layer.forward(x).sum();
        GradientsParams::from_grads(loss.backward(), layer)
    }

    fn weights(layer: &Pointwise) -> Vec<f64> {
        layer
            .weight
            .val()
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .unwrap()
    }

    /// Two Adam steps against the closed-form PyTorch update, with and without clipping.
    #[test]
    fn adam_matches_the_pytorch_update_rule_and_clips_the_global_norm() {
        let device = Device::flex().autodiff();
        let cfg = AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        };
        let (lr, a, b) = (0.1, 3.0f32, 4.0f32);
        for clip in [0.0, 1.0] {
            let mut layer = Pointwise::new(&mut Init::new(0), 2, 1, false, &device);
            let w0 = weights(&layer);
            let mut st = AdamState::default();
            let g = [f64::from(a), f64::from(b)];
            // With clip 1: factor 1/(5 + 1e-6) on a gradient of norm 5.
            let f = if clip > 0.0 { clip / (5.0 + 1e-6) } else { 1.0 };
            let (mut m, mut v, mut w) = ([0.0; 2], [0.0; 2], [w0[0], w0[1]]);
            for t in 1..=2 {
                let grads = grads_of(&layer, a, b, &device);
                let (next, out) = adam_step(layer, grads, &mut st, cfg, lr, clip);
                layer = next;
                assert!(
                    matches!(out, StepOutcome::Applied { grad_norm } if (grad_norm - 5.0).abs() < 1e-5)
                );
                for i in 0..2 {
                    let gi = g[i] * f;
                    m[i] = 0.9 * m[i] + 0.1 * gi;
                    v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                    let mh = m[i] / (1.0 - 0.9f64.powi(t));
                    let vh = v[i] / (1.0 - 0.999f64.powi(t));
                    w[i] -= lr * mh / (vh.sqrt() + 1e-8);
                }
            }
            let got = weights(&layer);
            for i in 0..2 {
                assert!(
                    (got[i] - w[i]).abs() < 1e-6,
                    "clip {clip}: w[{i}] {} vs {}",
                    got[i],
                    w[i]
                );
            }
            let m_name = st.m.keys().next().unwrap().clone();
            assert!(
                (f64::from(st.m[&m_name][0]) - m[0]).abs() < 1e-6,
                "first moment carries the clipped gradient"
            );
        }
    }

    #[test]
    fn non_finite_gradients_are_rejected_without_touching_anything() {
        let device = Device::flex().autodiff();
        let cfg = AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: true,
        };
        let layer = Pointwise::new(&mut Init::new(0), 2, 1, false, &device);
        let w0 = weights(&layer);
        let mut st = AdamState::default();
        let grads = grads_of(&layer, f32::NAN, 1.0, &device);
        let (layer, out) = adam_step(layer, grads, &mut st, cfg, 0.1, 1.0);
        assert_eq!(out, StepOutcome::NonFinite);
        assert_eq!(weights(&layer), w0);
        assert_eq!(st, AdamState::default());
    }
}
