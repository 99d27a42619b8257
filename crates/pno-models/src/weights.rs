//! Named parameter tensors: read a module's parameters out as `(name, shape, values)` and put
//! them back, with names as dotted module paths (`members.0.fno.blocks.1.spectral.weight_re`).
//! Used for safetensors weights and checkpoints (which also hold optimiser state under the
//! same names) without going through burn's record machinery.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::error::{ModelError, Result};

/// One named host-side tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

struct Collect {
    path: Vec<String>,
    out: BTreeMap<String, NamedTensor>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        self.out
            .insert(self.path.join("."), NamedTensor { shape, values });
    }
}

/// All float parameters of `module` by dotted path.
pub fn named_tensors<M: Module>(module: &M) -> BTreeMap<String, NamedTensor> {
    let mut c = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

/// Dotted paths of all float parameters, in visiting order.
pub fn param_names<M: Module>(module: &M) -> Vec<String> {
    named_tensors(module).into_keys().collect()
}

struct Apply<'a> {
    path: Vec<String>,
    tensors: &'a BTreeMap<String, NamedTensor>,
    error: Option<ModelError>,
    used: usize,
}

impl ModuleMapper for Apply<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some(t) = self.tensors.get(&name) else {
            self.error.get_or_insert(ModelError::Weights {
                name,
                expected: "a tensor in the weights file".into(),
                got: "nothing (missing)".into(),
            });
            return param;
        };
        let (id, old, mapper) = param.consume();
        let dims = old.dims();
        if t.shape != dims.to_vec() || t.values.len() != dims.iter().product::<usize>() {
            self.error.get_or_insert(ModelError::Weights {
                name,
                expected: format!("shape {dims:?}"),
                got: format!("shape {:?}", t.shape),
            });
            return Param::from_mapped_value(id, old, mapper);
        }
        if let Some(i) = t.values.iter().position(|v| !v.is_finite()) {
            self.error.get_or_insert(ModelError::Weights {
                name,
                expected: "finite values".into(),
                got: format!("{} at flat index {i}", t.values[i]),
            });
            return Param::from_mapped_value(id, old, mapper);
        }
        self.used += 1;
        let device = old.device();
        let require_grad = old.is_require_grad();
        let mut new = Tensor::<D>::from_data(TensorData::new(t.values.clone(), dims), &device);
        if require_grad {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Replace every float parameter of `module` by the tensor of the same name. Missing names,
/// shape mismatches, non-finite values and unused names are errors (nothing is half-applied:
/// on error the caller keeps its original module).
pub fn load_named<M: Module>(module: M, tensors: &BTreeMap<String, NamedTensor>) -> Result<M> {
    let mut a = Apply {
        path: Vec::new(),
        tensors,
        error: None,
        used: 0,
    };
    let out = module.map(&mut a);
    if let Some(e) = a.error {
        return Err(e);
    }
    if a.used != tensors.len() {
        let known = param_names(&out);
        if let Some(extra) = tensors.keys().find(|k| !known.contains(k)) {
            return Err(ModelError::Weights {
                name: extra.clone(),
                expected: "only parameters of this architecture".into(),
                got: "an unknown tensor".into(),
            });
        }
    }
    Ok(out)
}
