//! Suite validation: every mistake is refused before anything runs, naming the key.

use pno_bench::Suite;

use crate::{file, tiny_suite};

fn refused(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    file(
        dir.path(),
        "darcy.toml",
        "pde = \"darcy\"\nn = 16\nresolution = 16\n",
    );
    let p = file(dir.path(), "s.toml", text);
    Suite::load(&p).unwrap_err().to_string()
}

const HEAD: &str = "[suite]\nname = \"t\"\nseeds = [0]\n\n[[pde]]\nname = \"d\"\ngenerator = \"darcy.toml\"\ndata = { n_test = 4 }\n\n";

#[test]
fn a_valid_suite_lists_its_cells_in_dependency_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = Suite::load(&tiny_suite(dir.path(), "[0, 1]")).unwrap();
    let ids: Vec<String> = s.cells().iter().map(|&c| s.cell_id(c)).collect();
    assert_eq!(ids.len(), 2 * 2 * 3);
    assert_eq!(ids[0], "darcy16/fno/seed0");
    assert_eq!(ids[2], "darcy16/pno_d+conformal/seed0");
    assert_eq!(ids[11], "ks32/pno_d+conformal/seed1");
    // The derived method trains nothing of its own: its config is its base's, with the seed.
    let c = s.cells()[2];
    let cfg = s.run_config(c).unwrap();
    assert_eq!(cfg.model.kind.as_deref(), Some("pno_d"));
    assert_eq!(cfg.train.seed, Some(0));
    // The shipped suites validate.
    for f in [
        "suite_smoke.toml",
        "suite_paper.toml",
        "suite_ks_cpu.toml",
        "suite_ks_short_cpu.toml",
    ] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs")
            .join(f);
        let s = Suite::load(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(s.cells().len() >= 6, "{f}");
    }
}

#[test]
fn mistakes_are_refused_with_the_key_named() {
    let e = refused(&format!(
        "{HEAD}[[method]]\nname = \"m\"\nmodle = {{ kind = \"fno\" }}\n"
    ));
    assert!(e.contains("modle"), "{e}");
    let e = refused(&format!(
        "{HEAD}[[method]]\nname = \"m\"\nmodel = {{ kind = \"fno\", widht = 3 }}\n"
    ));
    assert!(e.contains("widht"), "{e}");
    let e = refused(&format!(
        "{HEAD}[[method]]\nname = \"c\"\nbase = \"m\"\n\n[[method]]\nname = \"m\"\nmodel = {{ kind = \"pno_d\" }}\n"
    ));
    assert!(e.contains("method[0].base"), "{e}");
    let e = refused(&format!(
        "{HEAD}[[method]]\nname = \"m\"\nmodel = {{ kind = \"pno_d\" }}\n\n[[method]]\nname = \"c\"\nbase = \"m\"\nconformal = {{ level = 0.9 }}\n"
    ));
    assert!(e.contains("n_calibration"), "{e}");
    let e = refused(&format!(
        "{HEAD}[[method]]\nname = \"m\"\n\n[[method]]\nname = \"m\"\n"
    ));
    assert!(e.contains("method[1].name"), "{e}");
    let e = refused(&format!(
        "{HEAD}[[method]]\nname = \"m\"\nconformal = {{ level = 1.5 }}\n"
    ));
    assert!(e.contains("conformal.level"), "{e}");
    let e = refused("[suite]\nname = \"t\"\nseeds = []\n");
    assert!(e.contains("suite.seeds"), "{e}");
    let e = refused(&format!("{HEAD}[[method]]\nname = \"m/../x\"\n"));
    assert!(e.contains("method[0].name"), "{e}");
    let e = refused(
        "[suite]\nname = \"t\"\nseeds = [0]\n[[pde]]\nname = \"d\"\ngenerator = \"darcy.toml\"\npath = \"x.npz\"\n[[method]]\nname = \"m\"\n",
    );
    assert!(e.contains("generator"), "{e}");
    let e = refused(
        "[suite]\nname = \"t\"\nseeds = [0]\n[[pde]]\nname = \"d\"\ngenerator = \"darcy.toml\"\nset = { alpah = 2 }\n[[method]]\nname = \"m\"\n",
    );
    assert!(e.contains("alpah"), "{e}");
}

#[test]
fn calibration_is_on_by_default_and_set_or_turned_off_in_the_header() {
    let dir = tempfile::tempdir().unwrap();
    file(
        dir.path(),
        "darcy.toml",
        "pde = \"darcy\"\nn = 16\nresolution = 16\n",
    );
    let load = |header: &str| {
        let text = HEAD.replace("seeds = [0]\n", &format!("seeds = [0]\n{header}"));
        let p = file(
            dir.path(),
            "s.toml",
            &format!("{text}[[method]]\nname = \"m\"\nmodel = {{ kind = \"pno_d\" }}\n"),
        );
        Suite::load(&p)
    };
    let plain = load("").unwrap();
    assert_eq!(plain.conformal, Some(pno_bench::suite::DEFAULT_CONFORMAL));
    assert_eq!(plain.default_conformal(plain.cells()[0]), plain.conformal);
    // Spelling the default out changes nothing, not even the fingerprint (cells of suites
    // written before the default are kept).
    let explicit = load("conformal = { level = 0.9, mode = \"pointwise\" }\n").unwrap();
    assert_eq!(explicit.sha256, plain.sha256);
    let off = load("conformal = false\n").unwrap();
    assert_eq!(off.conformal, None);
    assert_ne!(off.sha256, plain.sha256);
    let f = load("conformal = { level = 0.8, mode = \"function\", delta = 0.2 }\n").unwrap();
    assert_eq!(
        f.conformal,
        Some(pno_bench::suite::Conformal {
            level: 0.8,
            mode: pno_run::ConformalMode::Function { delta: 0.2 }
        })
    );
    // No calibration split is not an error: the cell reports why it has no calibrated variant.
    assert_eq!(plain.n_calibration(plain.cells()[0]), 0);
    for (header, key) in [
        ("conformal = 3\n", "suite.conformal"),
        ("conformal = { levle = 0.8 }\n", "levle"),
        ("conformal = { level = 1.0 }\n", "suite.conformal.level"),
        ("conformal = { mode = \"x\" }\n", "suite.conformal.mode"),
        (
            "conformal = { mode = \"function\", delta = 0 }\n",
            "suite.conformal.delta",
        ),
    ] {
        let e = load(header).unwrap_err().to_string();
        assert!(e.contains(key), "{header}: {e}");
    }
}
