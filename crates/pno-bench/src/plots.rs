//! Plots of a suite, each written as SVG and PNG (plotters; labels use a system TrueType font
//! found at `PNO_FONT` or the usual DejaVu/Liberation/Arial locations).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::runner::Example;

const FONT: &str = "sans-serif";

/// Candidate font files, in order (after `PNO_FONT`).
pub const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Register the label font once; the error names what was tried.
pub fn ensure_font() -> Result<()> {
    static FONT_STATE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT_STATE
        .get_or_init(|| {
            let mut tried: Vec<String> = Vec::new();
            let env = std::env::var("PNO_FONT").ok();
            for p in env.iter().map(String::as_str).chain(FONT_CANDIDATES.iter().copied()) {
                tried.push(p.to_string());
                if let Ok(bytes) = std::fs::read(p) {
                    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font(FONT, FontStyle::Normal, leaked).is_ok() {
                        return Ok(());
                    }
                }
            }
            Err(format!(
                "no TrueType font for plot labels (install fonts-dejavu-core, or set PNO_FONT=/path/to/font.ttf); tried {}",
                tried.join(", ")
            ))
        })
        .clone()
        .map_err(|what| BenchError::Plot {
            path: PathBuf::from("(font)"),
            what,
        })
}

type Draw<'a> = dyn Fn(&DrawingArea<SVGBackend<'_>, Shift>) -> std::result::Result<(), String> + 'a;
type DrawPng<'a> =
    dyn Fn(&DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String> + 'a;

/// Draw one figure twice: `stem.svg` and `stem.png`, `size` pixels. Returns both paths.
fn both(stem: &Path, size: (u32, u32), svg: &Draw<'_>, png: &DrawPng<'_>) -> Result<[PathBuf; 2]> {
    ensure_font()?;
    let (s, p) = (stem.with_extension("svg"), stem.with_extension("png"));
    let fail = |path: &Path, what: String| BenchError::Plot {
        path: path.to_path_buf(),
        what,
    };
    {
        let root = SVGBackend::new(&s, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&s, e.to_string()))?;
        svg(&root).map_err(|e| fail(&s, e))?;
        root.present().map_err(|e| fail(&s, e.to_string()))?;
    }
    {
        let root = BitMapBackend::new(&p, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&p, e.to_string()))?;
        png(&root).map_err(|e| fail(&p, e))?;
        root.present().map_err(|e| fail(&p, e.to_string()))?;
    }
    Ok([s, p])
}

/// A perceptually ordered colour map (dark blue → teal → yellow) at `t ∈ [0, 1]`.
pub fn colormap(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.5, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.0, [253.0, 231.0, 37.0]),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let k = STOPS.iter().position(|s| s.0 >= t).unwrap_or(4).max(1);
    let (a, b) = (STOPS[k - 1], STOPS[k]);
    let w = (t - a.0) / (b.0 - a.0);
    let c = |i: usize| (a.1[i] + w * (b.1[i] - a.1[i])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// Series colours.
pub fn series_color(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// The series legend of a chart, on a translucent white box.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

fn range_of(v: &[f32]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &x in v.iter().filter(|x| x.is_finite()) {
        lo = lo.min(f64::from(x));
        hi = hi.max(f64::from(x));
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

fn heat<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    v: &[f32],
    h: usize,
    w: usize,
) -> std::result::Result<(), String> {
    let (lo, hi) = range_of(v);
    let caption = format!(
        "{title}  [{}, {}]",
        crate::tables::num(lo),
        crate::tables::num(hi)
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 14))
        .margin(6)
        .build_cartesian_2d(0..w, 0..h)
        .map_err(|e| e.to_string())?;
    chart
        .draw_series((0..h).flat_map(|i| {
            (0..w).map(move |j| {
                let t = (f64::from(v[i * w + j]) - lo) / (hi - lo);
                Rectangle::new([(j, h - 1 - i), (j + 1, h - i)], colormap(t).filled())
            })
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    ex: &Example,
    error: bool,
) -> std::result::Result<(), String> {
    let n = ex.grid[0];
    let xs = |k: usize| k as f64 / n as f64;
    let (t, m, s) = (&ex.target[..n], &ex.mean[..n], &ex.std[..n]);
    let err: Vec<f32> = t.iter().zip(m).map(|(a, b)| (a - b).abs()).collect();
    let mut vals: Vec<f32> = Vec::new();
    if error {
        vals.extend(&err);
        vals.extend(s.iter().map(|x| 2.0 * x));
        vals.push(0.0);
    } else {
        vals.extend(t);
        vals.extend(m.iter().zip(s).map(|(a, b)| a + 2.0 * b));
        vals.extend(m.iter().zip(s).map(|(a, b)| a - 2.0 * b));
        vals.extend(&ex.input[..n]);
    }
    let (lo, hi) = range_of(&vals);
    let pad = 0.05 * (hi - lo);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, (lo - pad)..(hi + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("x / L")
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    let blue = series_color(0);
    if error {
        chart
            .draw_series(LineSeries::new(
                (0..n).map(|k| (xs(k), f64::from(err[k]))),
                &RED,
            ))
            .map_err(|e| e.to_string())?
            .label("|error|")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .draw_series(LineSeries::new(
                (0..n).map(|k| (xs(k), 2.0 * f64::from(s[k]))),
                &blue,
            ))
            .map_err(|e| e.to_string())?
            .label("2·std")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue));
    } else {
        let mut band: Vec<(f64, f64)> = (0..n)
            .map(|k| (xs(k), f64::from(m[k] + 2.0 * s[k])))
            .collect();
        band.extend((0..n).rev().map(|k| (xs(k), f64::from(m[k] - 2.0 * s[k]))));
        chart
            .draw_series(std::iter::once(Polygon::new(band, blue.mix(0.25).filled())))
            .map_err(|e| e.to_string())?
            .label("mean ± 2 std")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 4), (x + 16, y + 4)], blue.mix(0.25).filled())
            });
        chart
            .draw_series(LineSeries::new(
                (0..n).map(|k| (xs(k), f64::from(ex.input[k]))),
                &RGBColor(150, 150, 150),
            ))
            .map_err(|e| e.to_string())?
            .label("input (channel 0)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(150, 150, 150)));
        chart
            .draw_series(LineSeries::new(
                (0..n).map(|k| (xs(k), f64::from(t[k]))),
                &BLACK,
            ))
            .map_err(|e| e.to_string())?
            .label("truth")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart
            .draw_series(LineSeries::new(
                (0..n).map(|k| (xs(k), f64::from(m[k]))),
                &blue,
            ))
            .map_err(|e| e.to_string())?
            .label("mean")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn fields_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    ex: &Example,
) -> std::result::Result<(), String> {
    let (body, head) = (root.margin(24, 0, 0, 0), root);
    head.draw_text(title, &(FONT, 18).into_font().color(&BLACK), (10, 4))
        .map_err(|e| e.to_string())?;
    match ex.grid.as_slice() {
        [h, w] => {
            let p = h * w;
            let err: Vec<f32> = ex.target[..p]
                .iter()
                .zip(&ex.mean[..p])
                .map(|(a, b)| (a - b).abs())
                .collect();
            let panels = body.split_evenly((1, 5));
            heat(&panels[0], "input", &ex.input[..p], *h, *w)?;
            heat(&panels[1], "truth", &ex.target[..p], *h, *w)?;
            heat(&panels[2], "mean", &ex.mean[..p], *h, *w)?;
            heat(&panels[3], "std", &ex.std[..p], *h, *w)?;
            heat(&panels[4], "|error|", &err, *h, *w)?;
        }
        _ => {
            let panels = body.split_evenly((1, 2));
            line_panel(&panels[0], "truth, mean and band", ex, false)?;
            line_panel(&panels[1], "|error| and 2·std", ex, true)?;
        }
    }
    Ok(())
}

/// Input / truth / mean / std / |error| of one test function (heat maps for 2-D grids, lines
/// with a ±2 std band for 1-D).
pub fn fields(stem: &Path, title: &str, ex: &Example) -> Result<[PathBuf; 2]> {
    let size = if ex.grid.len() == 2 {
        (1250, 290)
    } else {
        (1100, 380)
    };
    both(stem, size, &|a| fields_on(a, title, ex), &|a| {
        fields_on(a, title, ex)
    })
}

/// A named series of points.
pub type Series = (String, Vec<(f64, f64)>);

/// One line of a figure on the unit square.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend label.
    pub name: String,
    /// Points (non-finite ones are skipped).
    pub points: Vec<(f64, f64)>,
    /// Colour index ([`series_color`]).
    pub color: usize,
    /// Dashed (a method's calibrated variant) or solid.
    pub dashed: bool,
}

fn curves_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    labels: (&str, &str),
    lines: &[Line],
    diagonal: bool,
) -> std::result::Result<(), String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(labels.0)
        .y_desc(labels.1)
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    if diagonal {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("ideal")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.5)));
    }
    // Dashed (calibrated) lines last, so a calibrated curve on top of a raw one stays visible.
    let ordered = lines
        .iter()
        .filter(|l| !l.dashed)
        .chain(lines.iter().filter(|l| l.dashed));
    for line in ordered {
        let c = series_color(line.color);
        let pts: Vec<(f64, f64)> = line
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2)))
        } else {
            chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))
        };
        let anno = drawn.map_err(|e| e.to_string())?.label(line.name.as_str());
        if line.dashed {
            anno.legend(move |(x, y)| {
                plotters::element::DashedPathElement::new(
                    vec![(x, y), (x + 16, y)],
                    5,
                    3,
                    c.stroke_width(2),
                )
            });
        } else {
            anno.legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
            });
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Lines on the unit square with the diagonal, solid or dashed (coverage against nominal
/// level, raw and calibrated).
pub fn unit_lines(
    stem: &Path,
    title: &str,
    labels: (&str, &str),
    lines: &[Line],
) -> Result<[PathBuf; 2]> {
    both(
        stem,
        (640, 560),
        &|a| curves_on(a, title, labels, lines, true),
        &|a| curves_on(a, title, labels, lines, true),
    )
}

/// Curves on the unit square with the diagonal (reliability diagram, coverage against level).
pub fn unit_curves(
    stem: &Path,
    title: &str,
    labels: (&str, &str),
    series: &[Series],
) -> Result<[PathBuf; 2]> {
    let lines: Vec<Line> = series
        .iter()
        .enumerate()
        .map(|(i, (name, points))| Line {
            name: name.clone(),
            points: points.clone(),
            color: i,
            dashed: false,
        })
        .collect();
    unit_lines(stem, title, labels, &lines)
}

/// A named series of `(x, mean, std)`.
pub type Band = (String, Vec<(f64, f64, f64)>);

fn bands_on<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    labels: (&str, &str),
    series: &[Band],
    points_only: bool,
) -> std::result::Result<(), String> {
    let all: Vec<(f64, f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    let fin = |v: f64| v.is_finite();
    let xmin = all
        .iter()
        .map(|p| p.0)
        .filter(|v| fin(*v))
        .fold(f64::INFINITY, f64::min);
    let xmax = all
        .iter()
        .map(|p| p.0)
        .filter(|v| fin(*v))
        .fold(f64::NEG_INFINITY, f64::max);
    let ymin = all
        .iter()
        .map(|p| p.1 - p.2)
        .filter(|v| fin(*v))
        .fold(f64::INFINITY, f64::min);
    let ymax = all
        .iter()
        .map(|p| p.1 + p.2)
        .filter(|v| fin(*v))
        .fold(f64::NEG_INFINITY, f64::max);
    let (xmin, xmax) = if xmin.is_finite() && xmax > xmin {
        (xmin - 0.25, xmax + 0.25)
    } else {
        (xmin.min(0.0) - 0.5, xmin.max(0.0) + 0.5)
    };
    let (ymin, ymax) = if ymin.is_finite() && ymax > ymin {
        let pad = 0.08 * (ymax - ymin);
        (ymin - pad, ymax + pad)
    } else if ymin.is_finite() {
        (ymin - 0.5, ymin + 0.5)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(xmin..xmax, ymin..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(labels.0)
        .y_desc(labels.1)
        .label_style((FONT, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = series_color(i);
        let pts: Vec<(f64, f64, f64)> = pts
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
            .collect();
        if points_only {
            chart
                .draw_series(
                    pts.iter()
                        .map(|&(x, y, _)| Circle::new((x, y), 4, c.filled())),
                )
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
            continue;
        }
        if pts.len() > 1 {
            let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1 + p.2)).collect();
            band.extend(pts.iter().rev().map(|p| (p.0, p.1 - p.2)));
            chart
                .draw_series(std::iter::once(Polygon::new(band, c.mix(0.2).filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y, _)| Circle::new((x, y), 3, c.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// A row of panels, each `(title, axis labels, series)`: lines with ±std bands (rollout error
/// and coverage over steps), or points only (metric against seed).
pub fn band_panels(
    stem: &Path,
    panels: &[(String, (String, String), Vec<Band>)],
    points_only: bool,
) -> Result<[PathBuf; 2]> {
    let w = 560 * panels.len().max(1) as u32;
    let draw = |root: &dyn Fn(usize) -> std::result::Result<(), String>| -> std::result::Result<(), String> {
        for i in 0..panels.len() {
            root(i)?;
        }
        Ok(())
    };
    both(
        stem,
        (w, 440),
        &|a| {
            let parts = a.split_evenly((1, panels.len().max(1)));
            draw(&|i| {
                let (t, (xl, yl), s) = &panels[i];
                bands_on(&parts[i], t, (xl, yl), s, points_only)
            })
        },
        &|a| {
            let parts = a.split_evenly((1, panels.len().max(1)));
            draw(&|i| {
                let (t, (xl, yl), s) = &panels[i];
                bands_on(&parts[i], t, (xl, yl), s, points_only)
            })
        },
    )
}
