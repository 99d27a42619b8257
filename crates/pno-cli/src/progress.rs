//! Progress bars on stderr (hidden with `--quiet`, `--json` or when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over `len` items with rate and ETA.
pub(crate) fn bar(len: u64, what: &str, hidden: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if hidden {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}
