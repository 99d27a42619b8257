//! `pno eval`: accuracy and uncertainty metrics of a trained run on a dataset split.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use pno_data::{NpyData, write_npz};
use pno_metrics::{Domain, Report, SamplePred};
use pno_train::data::load_fields;
use pno_train::load_trained;
use pno_train::run::{ProvenanceFile, read_json};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  pno eval --run runs/darcy64_pno_d --data data/darcy64 --split test --samples 100
  pno eval --run runs/darcy16_fno --data darcy_test_16.pt --json
  pno eval --run runs/darcy16_pno_d --data darcy_test_32.pt --samples 100   # super-resolution

On the dataset the run was trained on, --split picks the recorded test/val/train
samples; on any other file every sample is evaluated. Metrics are in physical units
(the run's normaliser is inverted): rel_l2, l2_abs, rmse, mse, h1_rel, nll, crps,
crps_fair, energy_score, coverage_50..99, function_coverage_95, interval_width_90,
interval_score_90, calibration_error, miscalibration_area, sharpness, spread_skill.")]
pub(crate) struct EvalArgs {
    /// Run folder written by `pno train`.
    #[arg(long)]
    run: PathBuf,
    /// Dataset (any supported format) holding the run's input and target tensors.
    #[arg(long, short)]
    data: PathBuf,
    /// test, val, train or all.
    #[arg(long, default_value = "test")]
    split: String,
    /// Predictive draws per input (at least 2).
    #[arg(long, short, default_value_t = 100)]
    samples: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Also write mean, std, samples and target to this .npz.
    #[arg(long, value_name = "FILE.npz")]
    save_predictions: Option<PathBuf>,
    /// Backend: cpu, or cuda / cuda:N in a CUDA build.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn run(args: EvalArgs, json_out: bool) -> Result<()> {
    if args.samples < 2 || args.samples > 100_000 {
        bail!(
            "--samples: expected 2..=100000 (the sample metrics need pairs), got {}",
            args.samples
        );
    }
    let device = crate::device::select_device(&args.device)?;
    let trained = load_trained(&args.run, &device)
        .with_context(|| format!("loading run {}", args.run.display()))?;
    let mut spec = trained.file.data.clone();
    spec.check = false;
    let (fields, prov) = load_fields(&args.data, &spec)
        .with_context(|| format!("reading {}", args.data.display()))?;
    if fields.cin != trained.file.in_channels || fields.cout != trained.file.out_channels {
        bail!(
            "{}: expected {} input and {} target channel(s) like the run, got {} and {}",
            args.data.display(),
            trained.file.in_channels,
            trained.file.out_channels,
            fields.cin,
            fields.cout
        );
    }
    let recorded: ProvenanceFile = read_json(&trained.run.provenance(), "provenance.json")?;
    let same = recorded.data.sha256 == prov.sha256;
    let idx: Vec<usize> = match (args.split.as_str(), same) {
        ("all", _) | ("test", false) => (0..fields.n).collect(),
        ("test", true) => recorded.splits.test,
        ("val", true) => recorded.splits.val,
        ("train", true) => recorded.splits.train,
        ("val" | "train", false) => {
            bail!(
                "--split {}: only on the dataset the run was trained on ({})",
                args.split,
                recorded.data.path.display()
            )
        }
        (s, _) => bail!("--split: expected test, val, train or all, got {s:?}"),
    };
    if idx.is_empty() {
        bail!(
            "--split {}: no samples (the run was trained with data.n_test = {}; use --split all or a test file)",
            args.split,
            trained.file.data.n_test
        );
    }
    let (x, y) = fields.gather(&idx);
    let n = idx.len();
    let pred = trained.predict(
        x,
        n,
        &fields.grid,
        args.samples,
        args.seed,
        args.batch,
        &device,
    )?;
    let d = pred.channels * fields.points();
    let sp = SamplePred::new(&pred.samples, args.samples, n, d)?;
    let lengths = vec![spec.domain_length; fields.grid.len()];
    let domain = Domain::new(&fields.grid, &lengths, pred.channels, spec.periodic)?;
    let report = Report::from_samples(&sp, &y, &domain)?;
    if let Some(path) = &args.save_predictions {
        let mut field = vec![n, pred.channels];
        field.extend(&fields.grid);
        let mut sshape = vec![args.samples];
        sshape.extend(&field);
        write_npz(
            path,
            &[
                ("mean", &field, NpyData::F32(&pred.mean)),
                ("std", &field, NpyData::F32(&pred.std)),
                ("samples", &sshape, NpyData::F32(&pred.samples)),
                ("target", &field, NpyData::F32(&y)),
            ],
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut obj = serde_json::to_value(&report)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("n".into(), json!(n));
        m.insert("n_samples".into(), json!(args.samples));
        m.insert("resolution".into(), json!(fields.grid));
        m.insert(
            "split".into(),
            json!(if same { args.split.as_str() } else { "all" }),
        );
        m.insert("kind".into(), json!(trained.file.model.kind.name()));
    }
    if json_out {
        println!("{obj}");
    } else {
        println!(
            "{} on {} ({} functions, grid {:?}, {} draws)",
            trained.file.model.kind.name(),
            args.data.display(),
            n,
            fields.grid,
            args.samples
        );
        if let Some(m) = obj.as_object() {
            for (k, v) in m {
                match (v.as_u64(), v.as_f64()) {
                    (Some(i), _) => println!("  {k:<22} {i}"),
                    (None, Some(f)) => println!("  {k:<22} {f:.6}"),
                    _ => println!("  {k:<22} {v}"),
                }
            }
        }
    }
    Ok(())
}
