//! Training writes `reference.json`: training-input features equal to `field_features` of the
//! data file's samples at the recorded indices, and the validation spread of the best model
//! (positive for a probabilistic model, zero for the deterministic FNO), reproducible with
//! `TrainedModel::predict`.

use pno_data::{field_features, read_npz};
use pno_models::burn::tensor::Device;
use pno_run::reference::{self, REFERENCE_FILE, ReferenceStats};
use pno_run::{PredictRequest, ProvenanceFile, RunDir, load_trained, read_json};
use pno_train::testing::{GRID, tiny_run};

#[test]
fn training_writes_reference_statistics_of_inputs_and_spread() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    for (kind, probabilistic) in [("pno_d", true), ("fno", false)] {
        let run = tiny_run(&dir.path().join(kind), kind, 40, 1).unwrap();
        assert!(run.join(REFERENCE_FILE).exists(), "{kind}");
        let r = ReferenceStats::load(&run).unwrap().unwrap();
        let t = load_trained(&run, &device).unwrap();
        assert!(t.reference.is_some(), "{kind}");
        let prov: ProvenanceFile = read_json(&RunDir::new(&run).provenance(), "").unwrap();
        assert_eq!(r.grid, [GRID, GRID]);
        assert_eq!(
            (r.in_channels, r.out_channels, r.bands),
            (1, 1, reference::BANDS)
        );

        // Inputs: every training sample (fewer than the cap), features of the raw file values.
        assert_eq!(r.inputs.split, "train");
        assert_eq!(r.inputs.indices, prov.splits.train, "{kind}");
        assert_eq!(r.inputs.n_split, prov.splits.train.len());
        let data = read_npz(&dir.path().join(kind).join("data.npz")).unwrap();
        let x = &data.iter().find(|(n, _)| n == "x").unwrap().1;
        let all = x.to_f64_vec();
        let per = GRID * GRID;
        let rows: Vec<f64> = r
            .inputs
            .indices
            .iter()
            .flat_map(|&i| all[i * per..(i + 1) * per].iter().copied())
            .collect();
        let t_in = pno_data::Tensor::new(
            vec![r.inputs.indices.len(), 1, GRID, GRID],
            pno_data::TensorData::F64(rows),
        )
        .unwrap();
        let want = field_features(&t_in, "x", reference::BANDS).unwrap();
        assert_eq!(r.inputs.names, want.names);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * a.abs().max(b.abs()) + 1e-300;
        assert!(
            r.inputs
                .values
                .iter()
                .zip(&want.values)
                .all(|(a, b)| close(*a, *b)),
            "{kind}: reference features differ from field_features"
        );

        // Spread: every validation sample, drawn from the best model.
        let s = &r.spread;
        assert_eq!(
            (s.split.as_str(), s.indices.clone()),
            ("val", prov.splits.val.clone())
        );
        assert_eq!((s.draws, s.spread_scale), (reference::SPREAD_DRAWS, 1.0));
        assert_eq!(s.values.len(), prov.splits.val.len());
        if probabilistic {
            assert!(s.values.iter().all(|&v| v > 0.0), "{kind}: {:?}", s.values);
            assert!(s.summary.quantiles[0] > 0.0);
        } else {
            assert!(s.values.iter().all(|&v| v == 0.0), "{kind}: {:?}", s.values);
            assert_eq!(s.summary.max, 0.0);
        }
        // Oracle: the run's own predict on those inputs, same seed and draws.
        let n = s.indices.len();
        let xs: Vec<f32> = s
            .indices
            .iter()
            .flat_map(|&i| all[i * per..(i + 1) * per].iter().map(|&v| v as f32))
            .collect();
        let pred = t
            .predict(
                &PredictRequest {
                    x: &xs,
                    n,
                    grid: &[GRID, GRID],
                    n_samples: s.draws,
                    seed: s.seed,
                    batch: 64,
                    cancel: None,
                },
                &device,
            )
            .unwrap();
        let again = reference::sample_spread(&pred.std, n);
        for (a, b) in again.iter().zip(&s.values) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs() + 1e-12,
                "{kind}: {a} vs {b}"
            );
        }
        assert_eq!(r.predictions.indices, s.indices);
        assert_eq!(r.predictions.names[0], "y[0].mean");
        let y =
            reference::field_table(&pred.mean, n, 1, &[GRID, GRID], "y", reference::BANDS).unwrap();
        for (a, b) in y.values.iter().zip(&r.predictions.values) {
            assert!((a - b).abs() <= 1e-6 * b.abs() + 1e-9, "{kind}: {a} vs {b}");
        }
    }
}
