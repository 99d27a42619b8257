//! Sample-point conventions of the benchmark grids.
//!
//! * [`GridKind::Periodic`]: `N` points `x_i = i/N` on `[0, 1)` (FNO Navier–Stokes, Burgers).
//! * [`GridKind::Nodes`]: `N` points `x_i = i/(N-1)` on `[0, 1]`, boundary included (FNO Darcy).
//! * [`GridKind::CellCentres`]: `N` points `x_i = (i + 1/2)/N` (PDEBench).
//!
//! All grids map the unit interval onto `[0, length)` or `[0, length]` by scaling.

use serde::{Deserialize, Serialize};

/// Where the sample points of an axis sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridKind {
    /// `x_i = L·i/N`, periodic.
    Periodic,
    /// `x_i = L·i/(N-1)`, both ends included.
    Nodes,
    /// `x_i = L·(i + 1/2)/N`.
    CellCentres,
}

/// A one-dimensional grid.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid1d {
    /// Number of points.
    pub n: usize,
    /// Domain length.
    pub length: f64,
    /// Point placement.
    pub kind: GridKind,
}

impl Grid1d {
    /// A periodic grid of `n` points on `[0, length)`.
    pub fn periodic(n: usize, length: f64) -> Self {
        Self {
            n,
            length,
            kind: GridKind::Periodic,
        }
    }

    /// A node grid of `n` points on `[0, length]`.
    pub fn nodes(n: usize, length: f64) -> Self {
        Self {
            n,
            length,
            kind: GridKind::Nodes,
        }
    }

    /// A cell-centred grid of `n` points on `(0, length)`.
    pub fn cell_centres(n: usize, length: f64) -> Self {
        Self {
            n,
            length,
            kind: GridKind::CellCentres,
        }
    }

    /// Spacing between neighbouring points.
    pub fn dx(&self) -> f64 {
        match self.kind {
            GridKind::Nodes => self.length / (self.n.saturating_sub(1).max(1)) as f64,
            GridKind::Periodic | GridKind::CellCentres => self.length / self.n as f64,
        }
    }

    /// Coordinate of point `i`.
    pub fn x(&self, i: usize) -> f64 {
        match self.kind {
            GridKind::Periodic | GridKind::Nodes => i as f64 * self.dx(),
            GridKind::CellCentres => (i as f64 + 0.5) * self.dx(),
        }
    }

    /// All coordinates.
    pub fn points(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.x(i)).collect()
    }
}

/// A tensor-product two-dimensional grid; axis 0 is `x`, axis 1 is `y` (row-major `[x, y]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grid2d {
    /// First axis.
    pub x: Grid1d,
    /// Second axis.
    pub y: Grid1d,
}

impl Grid2d {
    /// The same 1-D grid on both axes.
    pub fn square(axis: Grid1d) -> Self {
        Self { x: axis, y: axis }
    }

    /// Shape `[nx, ny]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.x.n, self.y.n]
    }

    /// Flat row-major index of point `(i, j)`.
    pub fn index(&self, i: usize, j: usize) -> usize {
        i * self.y.n + j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_follow_conventions() {
        assert_eq!(
            Grid1d::periodic(4, 1.0).points(),
            vec![0.0, 0.25, 0.5, 0.75]
        );
        assert_eq!(
            Grid1d::nodes(5, 1.0).points(),
            vec![0.0, 0.25, 0.5, 0.75, 1.0]
        );
        assert_eq!(
            Grid1d::cell_centres(4, 1.0).points(),
            vec![0.125, 0.375, 0.625, 0.875]
        );
        let g = Grid2d::square(Grid1d::nodes(3, 1.0));
        assert_eq!(g.index(2, 1), 7);
    }
}
