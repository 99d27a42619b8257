//! `pno._engine`: the pno engine as a Python extension module (PyO3). The Python package `pno`
//! (`crates/pno-py/python/pno`) wraps it with keyword arguments, docstrings and type stubs.
//!
//! Every array argument is a NumPy array of float32 or float64; contiguous arrays are read in
//! place (no copy), others are copied once. Work runs with the GIL released. Bad input (a wrong
//! dtype, NaN, mismatched shapes) raises `ValueError` naming the argument; nothing panics.

use std::path::PathBuf;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;

use pno_metrics::{Domain, GaussianPred, Prediction, Report, SamplePred};
use pno_models::burn::tensor::Device;
use pno_run::{PredictRequest, TrainedModel};

/// The error and its causes on one line (a solver's config error names the key in its cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn value_err(e: impl std::error::Error) -> PyErr {
    PyValueError::new_err(chain(&e))
}

/// A float array read as f32 or f64, contiguous in memory.
enum Floats<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    Owned32(Vec<f32>, Vec<usize>),
    Owned64(Vec<f64>, Vec<usize>),
}

impl<'py> Floats<'py> {
    fn new(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f32>>() {
            return Ok(if a.is_c_contiguous() {
                Floats::F32(a)
            } else {
                Floats::Owned32(a.as_array().iter().copied().collect(), a.shape().to_vec())
            });
        }
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f64>>() {
            return Ok(if a.is_c_contiguous() {
                Floats::F64(a)
            } else {
                Floats::Owned64(a.as_array().iter().copied().collect(), a.shape().to_vec())
            });
        }
        let got = obj
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| obj.get_type().to_string());
        Err(PyValueError::new_err(format!(
            "{name}: expected a numpy array of float32 or float64, got {got}"
        )))
    }

    fn shape(&self) -> Vec<usize> {
        match self {
            Floats::F32(a) => a.shape().to_vec(),
            Floats::F64(a) => a.shape().to_vec(),
            Floats::Owned32(_, s) | Floats::Owned64(_, s) => s.clone(),
        }
    }

    fn view(&self) -> View<'_> {
        match self {
            Floats::F32(a) => View::F32(a.as_slice().unwrap_or_default()),
            Floats::F64(a) => View::F64(a.as_slice().unwrap_or_default()),
            Floats::Owned32(v, _) => View::F32(v),
            Floats::Owned64(v, _) => View::F64(v),
        }
    }
}

#[derive(Clone, Copy)]
enum View<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Calls `f` with the slices of `a` and `b` (each f32 or f64) via one generic function.
macro_rules! with2 {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (View::F32($x), View::F32($y)) => $body,
            (View::F32($x), View::F64($y)) => $body,
            (View::F64($x), View::F32($y)) => $body,
            (View::F64($x), View::F64($y)) => $body,
        }
    };
}

/// (m, n, d) of samples `[m, n, …]` against a target `[n, …]`.
fn sample_dims(samples: &[usize], target: &[usize]) -> PyResult<(usize, usize, usize)> {
    if samples.len() < 2 || samples[1..] != *target {
        return Err(PyValueError::new_err(format!(
            "samples: expected shape [m, *target.shape] = [m, {target:?}…], got {samples:?} against target {target:?}"
        )));
    }
    let n = target.first().copied().unwrap_or(1);
    let d = target.iter().skip(1).product::<usize>().max(1);
    Ok((samples[0], n, d))
}

/// Which sample-based score to compute.
#[derive(Clone, Copy)]
enum SampleScore {
    Crps(pno_metrics::Estimator),
    Coverage(f64),
    IntervalScore(f64),
    CalibrationError,
    Nll,
}

fn sample_score(
    py: Python<'_>,
    samples: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    score: SampleScore,
) -> PyResult<f64> {
    let s = Floats::new("samples", samples)?;
    let t = Floats::new("target", target)?;
    let (m, n, d) = sample_dims(&s.shape(), &t.shape())?;
    let (sv, tv) = (s.view(), t.view());
    py.detach(|| {
        with2!(sv, tv, |x, y| {
            let sp = SamplePred::new(x, m, n, d).map_err(value_err)?;
            let r = match score {
                SampleScore::Crps(e) => pno_metrics::crps_ensemble(&sp, y, e),
                SampleScore::Coverage(l) => pno_metrics::coverage(&Prediction::Samples(sp), y, l),
                SampleScore::IntervalScore(l) => {
                    pno_metrics::interval_score(&Prediction::Samples(sp), y, l)
                }
                SampleScore::CalibrationError => {
                    pno_metrics::calibration_error(&Prediction::Samples(sp), y)
                }
                SampleScore::Nll => pno_metrics::nll_samples(&sp, y),
            };
            r.map_err(value_err)
        })
    })
}

/// Mean ensemble CRPS over every point: `fair=False` is properscoring's `crps_ensemble` and
/// scoringrules' `estimator="nrg"`; `fair=True` the unbiased U-statistic.
#[pyfunction]
#[pyo3(signature = (samples, target, fair = false))]
fn crps_ensemble(
    py: Python<'_>,
    samples: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    fair: bool,
) -> PyResult<f64> {
    use pno_metrics::Estimator;
    let e = if fair {
        Estimator::Fair
    } else {
        Estimator::Standard
    };
    sample_score(py, samples, target, SampleScore::Crps(e))
}

/// Fraction of points inside the central `level` interval of the draws.
#[pyfunction]
#[pyo3(signature = (samples, target, level = 0.9))]
fn coverage(
    py: Python<'_>,
    samples: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    level: f64,
) -> PyResult<f64> {
    sample_score(py, samples, target, SampleScore::Coverage(level))
}

/// Mean interval (Winkler) score of the central `level` interval of the draws.
#[pyfunction]
#[pyo3(signature = (samples, target, level = 0.9))]
fn interval_score(
    py: Python<'_>,
    samples: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    level: f64,
) -> PyResult<f64> {
    sample_score(py, samples, target, SampleScore::IntervalScore(level))
}

/// Mean absolute gap between nominal and observed coverage over central levels.
#[pyfunction]
fn calibration_error(
    py: Python<'_>,
    samples: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    sample_score(py, samples, target, SampleScore::CalibrationError)
}

/// Gaussian NLL of the target under the draws' mean and std.
#[pyfunction]
fn nll(py: Python<'_>, samples: &Bound<'_, PyAny>, target: &Bound<'_, PyAny>) -> PyResult<f64> {
    sample_score(py, samples, target, SampleScore::Nll)
}

/// Mean closed-form CRPS of Gaussians `N(mean, std²)` (properscoring `crps_gaussian`).
#[pyfunction]
fn crps_gaussian(
    py: Python<'_>,
    mean: &Bound<'_, PyAny>,
    std: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let (mu, sd, t) = (
        Floats::new("mean", mean)?,
        Floats::new("std", std)?,
        Floats::new("target", target)?,
    );
    if mu.shape() != t.shape() || sd.shape() != t.shape() {
        return Err(PyValueError::new_err(format!(
            "mean, std and target must have one shape, got {:?}, {:?} and {:?}",
            mu.shape(),
            sd.shape(),
            t.shape()
        )));
    }
    let shape = t.shape();
    let n = shape.first().copied().unwrap_or(1);
    let d = shape.iter().skip(1).product::<usize>().max(1);
    let (mv, sv, tv) = (mu.view(), sd.view(), t.view());
    py.detach(|| {
        // Mean and std are read in place when they share a dtype; otherwise std is converted.
        macro_rules! score {
            ($m:expr, $s:expr) => {{
                let g = GaussianPred::new($m, $s, n, d).map_err(value_err)?;
                match tv {
                    View::F32(y) => pno_metrics::crps_gaussian(&g, y),
                    View::F64(y) => pno_metrics::crps_gaussian(&g, y),
                }
                .map_err(value_err)
            }};
        }
        match (mv, sv) {
            (View::F32(m), View::F32(s)) => score!(m, s),
            (View::F64(m), View::F64(s)) => score!(m, s),
            (View::F32(m), View::F64(s)) => {
                let s: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                score!(m, &s)
            }
            (View::F64(m), View::F32(s)) => {
                let s: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
                score!(m, &s)
            }
        }
    })
}

/// Mean energy score of the draws (Euclidean norm over each function's points by default, as
/// scoringrules' `es_ensemble`; `lengths` gives the discretised L² norm of that domain).
#[pyfunction]
#[pyo3(signature = (samples, target, fair = true, lengths = None))]
fn energy_score(
    py: Python<'_>,
    samples: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    fair: bool,
    lengths: Option<Vec<f64>>,
) -> PyResult<f64> {
    use pno_metrics::Estimator;
    let s = Floats::new("samples", samples)?;
    let t = Floats::new("target", target)?;
    let (m, n, d) = sample_dims(&s.shape(), &t.shape())?;
    let dims = vec![d];
    let domain = Domain::new(&dims, &lengths.unwrap_or_else(|| vec![d as f64]), 1, false)
        .map_err(value_err)?;
    let e = if fair {
        Estimator::Fair
    } else {
        Estimator::Standard
    };
    let (sv, tv) = (s.view(), t.view());
    py.detach(|| {
        with2!(sv, tv, |x, y| {
            let sp = SamplePred::new(x, m, n, d).map_err(value_err)?;
            pno_metrics::energy_score(&sp, y, &domain, e).map_err(value_err)
        })
    })
}

/// Mean relative L² error of predictions against targets (per function, then averaged).
#[pyfunction]
fn rel_l2(py: Python<'_>, pred: &Bound<'_, PyAny>, target: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (p, t) = (Floats::new("pred", pred)?, Floats::new("target", target)?);
    if p.shape() != t.shape() {
        return Err(PyValueError::new_err(format!(
            "pred and target must have one shape, got {:?} and {:?}",
            p.shape(),
            t.shape()
        )));
    }
    let shape = t.shape();
    let n = shape.first().copied().unwrap_or(1);
    let d = shape.iter().skip(1).product::<usize>().max(1);
    let sh = pno_metrics::Shape::new(n, d).map_err(value_err)?;
    let (pv, tv) = (p.view(), t.view());
    py.detach(|| {
        with2!(pv, tv, |x, y| pno_metrics::rel_l2(x, y, sh)
            .map_err(value_err))
    })
}

/// Probability integral transform of every point under the draws (values in [0, 1]).
#[pyfunction]
fn pit<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let s = Floats::new("samples", samples)?;
    let t = Floats::new("target", target)?;
    let (m, n, d) = sample_dims(&s.shape(), &t.shape())?;
    let (sv, tv) = (s.view(), t.view());
    let v = py.detach(|| {
        with2!(sv, tv, |x, y| {
            let sp = SamplePred::new(x, m, n, d).map_err(value_err)?;
            pno_metrics::pit_values(&Prediction::Samples(sp), y).map_err(value_err)
        })
    })?;
    let shape = t.shape();
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), v)
        .map_err(value_err)?
        .into_pyarray(py))
}

/// Every metric of `pno eval` as a dict (grid `[n, channels, *grid]` on the unit domain unless
/// `lengths` is given).
#[pyfunction]
#[pyo3(signature = (samples, target, lengths = None, periodic = false))]
fn report<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    lengths: Option<Vec<f64>>,
    periodic: bool,
) -> PyResult<String> {
    let s = Floats::new("samples", samples)?;
    let t = Floats::new("target", target)?;
    let shape = t.shape();
    if shape.len() < 3 {
        return Err(PyValueError::new_err(format!(
            "target: expected [n, channels, *grid] (1 or 2 grid axes), got {shape:?}"
        )));
    }
    let (m, n, d) = sample_dims(&s.shape(), &shape)?;
    let grid = shape[2..].to_vec();
    let domain = Domain::new(
        &grid,
        &lengths.unwrap_or_else(|| vec![1.0; grid.len()]),
        shape[1],
        periodic,
    )
    .map_err(value_err)?;
    let (sv, tv) = (s.view(), t.view());
    let r: Report = py.detach(|| {
        with2!(sv, tv, |x, y| {
            let sp = SamplePred::new(x, m, n, d).map_err(value_err)?;
            Report::from_samples(&sp, y, &domain).map_err(value_err)
        })
    })?;
    serde_json::to_string(&r).map_err(value_err)
}

fn array_f32<'py>(
    py: Python<'py>,
    shape: &[usize],
    v: Vec<f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    Ok(ArrayD::from_shape_vec(IxDyn(shape), v)
        .map_err(value_err)?
        .into_pyarray(py))
}

/// Generate `n` samples of `pde` with the built-in solver (same values as `pno generate` with
/// the same seed and parameters). `config` is the generator config as JSON.
#[pyfunction]
#[pyo3(signature = (pde, n, seed, config))]
fn generate<'py>(
    py: Python<'py>,
    pde: &str,
    n: usize,
    seed: u64,
    config: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let cfg: serde_json::Value = serde_json::from_str(config).map_err(value_err)?;
    let g = pno_solvers::build(pde, cfg).map_err(value_err)?;
    if n == 0 || n > 10_000_000 {
        return Err(PyValueError::new_err(format!(
            "n: expected 1..=10000000 samples, got {n}"
        )));
    }
    let layout = g.layout();
    let samples: Vec<Vec<Vec<f64>>> = py
        .detach(|| {
            (0..n as u64)
                .into_par_iter()
                .map(|i| g.sample(seed, i))
                .collect::<Result<_, _>>()
        })
        .map_err(value_err)?;
    let out = PyDict::new(py);
    for (k, t) in layout.iter().enumerate() {
        let per: usize = t.shape.iter().product();
        let mut v = Vec::with_capacity(n * per);
        for s in &samples {
            v.extend(s[k].iter().map(|&x| x as f32));
        }
        let mut shape = vec![n];
        shape.extend(&t.shape);
        out.set_item(&t.name, array_f32(py, &shape, v)?)?;
    }
    Ok(out)
}

/// Every tensor of a dataset the CLI reads (pno folder, neuralop `.pt`, PDEBench HDF5, npy/npz)
/// as float32 arrays.
#[pyfunction]
fn load<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let set = py
        .detach(|| pno_data::open_any(&path).and_then(|s| s.to_samples()))
        .map_err(|e| PyOSError::new_err(chain(&e)))?;
    let out = PyDict::new(py);
    for (name, t) in &set.tensors {
        out.set_item(name, array_f32(py, t.shape(), t.to_f32_vec())?)?;
    }
    Ok(out)
}

/// The data-quality gate's report as JSON (`passed` added).
#[pyfunction]
fn check(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let report = py
        .detach(|| {
            pno_data::check(
                &path,
                &pno_data::CheckOptions {
                    write_stats: false,
                    ..Default::default()
                },
            )
        })
        .map_err(|e| PyOSError::new_err(chain(&e)))?;
    let mut v = serde_json::to_value(&report).map_err(value_err)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("passed".into(), report.passed().into());
    }
    Ok(v.to_string())
}

/// A trained run folder, loaded once.
#[pyclass(module = "pno._engine", frozen)]
struct Run {
    trained: TrainedModel,
}

#[pymethods]
impl Run {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let trained = py
            .detach(|| pno_run::load_trained(&path, &Device::flex()))
            .map_err(|e| PyOSError::new_err(chain(&e)))?;
        Ok(Run { trained })
    }

    /// `model.json` as JSON.
    fn metadata(&self) -> PyResult<String> {
        serde_json::to_string(&self.trained.file).map_err(value_err)
    }

    /// Draws `[n_samples, n, out, *grid]`, mean and std `[n, out, *grid]` and quantiles
    /// `[levels, n, out, *grid]` in physical units; the same seed gives `pno predict`'s numbers.
    #[pyo3(signature = (x, n_samples, seed, batch, levels))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        n_samples: usize,
        seed: u64,
        batch: usize,
        levels: Vec<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let xs = Floats::new("x", x)?;
        let shape = xs.shape();
        let cin = self.trained.file.in_channels;
        let axes = self.trained.file.grid.len();
        if shape.len() != axes + 2 || shape[1] != cin {
            return Err(PyValueError::new_err(format!(
                "x: expected [n, {cin}, {axes} grid axes], got {shape:?}"
            )));
        }
        if n_samples == 0 || n_samples > 100_000 {
            return Err(PyValueError::new_err(format!(
                "n_samples: expected 1..=100000, got {n_samples}"
            )));
        }
        if let Some(l) = levels.iter().find(|l| !(0.0..=1.0).contains(*l)) {
            return Err(PyValueError::new_err(format!(
                "quantiles: expected levels in [0, 1], got {l}"
            )));
        }
        let values: Vec<f32> = match xs.view() {
            View::F32(v) => v.to_vec(),
            View::F64(v) => v.iter().map(|&a| a as f32).collect(),
        };
        let grid = shape[2..].to_vec();
        let n = shape[0];
        let pred = py
            .detach(|| {
                let req = PredictRequest {
                    x: &values,
                    n,
                    grid: &grid,
                    n_samples,
                    seed,
                    batch: batch.max(1),
                    cancel: None,
                };
                self.trained.predict(&req, &Device::flex())
            })
            .map_err(value_err)?;
        let q = pred.quantiles(&levels);
        let mut field = vec![n, pred.channels];
        field.extend(&grid);
        let with = |lead: usize| -> Vec<usize> {
            let mut s = vec![lead];
            s.extend(&field);
            s
        };
        let out = PyDict::new(py);
        out.set_item("mean", array_f32(py, &field, pred.mean.clone())?)?;
        out.set_item("std", array_f32(py, &field, pred.std.clone())?)?;
        out.set_item(
            "samples",
            array_f32(py, &with(n_samples), pred.samples.clone())?,
        )?;
        out.set_item("quantiles", array_f32(py, &with(levels.len()), q)?)?;
        if let Some(a) = &pred.aleatoric_var {
            out.set_item("aleatoric_var", array_f32(py, &field, a.clone())?)?;
        }
        Ok(out)
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(crps_ensemble, m)?)?;
    m.add_function(wrap_pyfunction!(crps_gaussian, m)?)?;
    m.add_function(wrap_pyfunction!(energy_score, m)?)?;
    m.add_function(wrap_pyfunction!(coverage, m)?)?;
    m.add_function(wrap_pyfunction!(interval_score, m)?)?;
    m.add_function(wrap_pyfunction!(calibration_error, m)?)?;
    m.add_function(wrap_pyfunction!(nll, m)?)?;
    m.add_function(wrap_pyfunction!(rel_l2, m)?)?;
    m.add_function(wrap_pyfunction!(pit, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_class::<Run>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
