//! Symmetric positive definite 5-point systems on an `n × n` grid, solved with faer's sparse
//! Cholesky factorisation (`docs/pde-specs.md` §2.1: "reuse the symbolic factorisation across
//! samples, since the pattern is identical").
//!
//! Unknown `(i, j)` has the lexicographic index `p = i·n + j` (row-major, `i` along axis 0). Row
//! `p` of the matrix is
//! `diag[p]·u_p − wx[p]·u_{i+1,j} − wx[p−n]·u_{i−1,j} − wy[p]·u_{i,j+1} − wy[p−1]·u_{i,j−1}`,
//! i.e. `wx[i·n + j]` couples `(i, j)` with `(i+1, j)` and `wy[i·n + j]` couples `(i, j)` with
//! `(i, j+1)`; entries that would leave the grid are ignored. The lower triangle is stored in
//! CSC form; its pattern and the symbolic factorisation are computed once in [`Stencil5::new`],
//! and every [`Stencil5::factor`] only runs the numeric phase, sequentially (one core per sample;
//! parallelism belongs to the sample loop). The fill-reducing ordering is geometric nested
//! dissection (George 1973: split the grid by a middle line, order both halves recursively, the
//! separator last), which gives `O(n² log n)` fill and `O(n³)` flops on an `n × n` grid, for
//! large grids, and faer's AMD for small ones (see [`Stencil5::new`]).

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::perm::PermRef;
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::linalg::cholesky::{
    CholeskySymbolicParams, LltRef, SymbolicCholesky, SymmetricOrdering,
    factorize_symbolic_cholesky,
};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMatRef};
use faer::{Conj, MatMut, Par, Side};

use crate::error::{Error, Result};

const SOLVER: &str = "faer sparse Cholesky";

/// The fixed sparsity pattern and symbolic Cholesky factorisation of a 5-point SPD system.
#[derive(Debug)]
pub struct Stencil5 {
    n: usize,
    col_ptr: Vec<usize>,
    row_idx: Vec<usize>,
    symbolic: SymbolicCholesky<usize>,
}

/// A numeric Cholesky factor `A = LLᵀ` of one 5-point system, ready for repeated solves.
#[derive(Debug)]
pub struct Stencil5Factor<'a> {
    stencil: &'a Stencil5,
    l_values: Vec<f64>,
}

/// Fill-reducing ordering of the unknowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Geometric nested dissection of the grid (default for `n ≥ 128`).
    NestedDissection,
    /// faer's approximate minimum degree.
    Amd,
}

/// Geometric nested-dissection order of the `n × n` grid: `order[new] = old` (lexicographic).
pub fn nested_dissection(n: usize) -> Vec<usize> {
    fn rec(n: usize, i0: usize, i1: usize, j0: usize, j1: usize, out: &mut Vec<usize>) {
        let (hi, hj) = (i1 - i0, j1 - j0);
        if hi == 0 || hj == 0 {
            return;
        }
        if hi * hj <= 16 || hi.max(hj) < 3 {
            for i in i0..i1 {
                for j in j0..j1 {
                    out.push(i * n + j);
                }
            }
            return;
        }
        if hi >= hj {
            let m = i0 + hi / 2;
            rec(n, i0, m, j0, j1, out);
            rec(n, m + 1, i1, j0, j1, out);
            out.extend((j0..j1).map(|j| m * n + j));
        } else {
            let m = j0 + hj / 2;
            rec(n, i0, i1, j0, m, out);
            rec(n, i0, i1, m + 1, j1, out);
            out.extend((i0..i1).map(|i| i * n + m));
        }
    }
    let mut out = Vec::with_capacity(n * n);
    rec(n, 0, n, 0, n, &mut out);
    out
}

impl Stencil5 {
    /// Builds the pattern of the `n² × n²` lower triangle and its symbolic factorisation, with
    /// AMD for `n < 128` and nested dissection above (measured faster in each range: at 62² AMD
    /// 2.8 ms vs ND 5.4 ms per factor+solve; at 419² ND 0.45 s vs AMD 0.56 s).
    pub fn new(n: usize) -> Result<Self> {
        let ordering = if n < 128 {
            Ordering::Amd
        } else {
            Ordering::NestedDissection
        };
        Self::with_ordering(n, ordering)
    }

    /// As [`Stencil5::new`] with a chosen fill-reducing ordering.
    pub fn with_ordering(n: usize, ordering: Ordering) -> Result<Self> {
        if n == 0 {
            return Err(Error::config(
                "resolution",
                "a grid with at least one unknown",
                n,
            ));
        }
        let m = n * n;
        let mut col_ptr = Vec::with_capacity(m + 1);
        let mut row_idx = Vec::with_capacity(3 * m);
        col_ptr.push(0);
        for i in 0..n {
            for j in 0..n {
                let p = i * n + j;
                row_idx.push(p);
                if j + 1 < n {
                    row_idx.push(p + 1);
                }
                if i + 1 < n {
                    row_idx.push(p + n);
                }
                col_ptr.push(row_idx.len());
            }
        }
        let sym = SymbolicSparseColMatRef::new_checked(m, m, &col_ptr, None, &row_idx);
        let fwd = nested_dissection(n);
        let mut inv = vec![0; m];
        for (new, &old) in fwd.iter().enumerate() {
            inv[old] = new;
        }
        let ord = match ordering {
            Ordering::NestedDissection => {
                SymmetricOrdering::Custom(PermRef::new_checked(&fwd, &inv, m))
            }
            Ordering::Amd => SymmetricOrdering::Amd,
        };
        // Supernodal always with nested dissection: faer's automatic flop-ratio rule picks the
        // simplicial kernel for the 128² pattern, which measured 2.9× slower there (23 ms vs 8 ms
        // per factor+solve); at 419² the rule already picks supernodal. AMD keeps the rule.
        let supernodal_flop_ratio_threshold = match ordering {
            Ordering::NestedDissection => SupernodalThreshold::FORCE_SUPERNODAL,
            Ordering::Amd => SupernodalThreshold::AUTO,
        };
        let symbolic = factorize_symbolic_cholesky(
            sym,
            Side::Lower,
            ord,
            CholeskySymbolicParams {
                supernodal_flop_ratio_threshold,
                ..Default::default()
            },
        )
        .map_err(|e| Error::Solve {
            solver: SOLVER,
            index: 0,
            reason: format!("symbolic factorisation of the {n}x{n} 5-point pattern: {e:?}"),
        })?;
        Ok(Self {
            n,
            col_ptr,
            row_idx,
            symbolic,
        })
    }

    /// Grid side `n` (the system has `n²` unknowns).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of nonzeros of the Cholesky factor (a measure of fill-in).
    pub fn factor_nnz(&self) -> usize {
        self.symbolic.len_val()
    }

    /// Lower-triangle CSC values for the given stencil weights (see the module docs).
    fn values(&self, diag: &[f64], wx: &[f64], wy: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut val = Vec::with_capacity(self.row_idx.len());
        for i in 0..n {
            for j in 0..n {
                let p = i * n + j;
                val.push(diag[p]);
                if j + 1 < n {
                    val.push(-wy[p]);
                }
                if i + 1 < n {
                    val.push(-wx[p]);
                }
            }
        }
        val
    }

    /// Numeric factorisation of the system with weights `diag`, `wx`, `wy` (each of length `n²`).
    ///
    /// `index` names the sample in the error raised when the matrix is not positive definite.
    pub fn factor(
        &self,
        diag: &[f64],
        wx: &[f64],
        wy: &[f64],
        index: u64,
    ) -> Result<Stencil5Factor<'_>> {
        let m = self.n * self.n;
        if diag.len() != m || wx.len() != m || wy.len() != m {
            return Err(Error::Solve {
                solver: SOLVER,
                index,
                reason: format!(
                    "stencil arrays must have n^2 = {m} entries, got {}/{}/{}",
                    diag.len(),
                    wx.len(),
                    wy.len()
                ),
            });
        }
        let val = self.values(diag, wx, wy);
        let sym = SymbolicSparseColMatRef::new_checked(m, m, &self.col_ptr, None, &self.row_idx);
        let a = SparseColMatRef::new(sym, &val);
        let mut l_values = vec![0.0; self.symbolic.len_val()];
        let par = Par::Seq;
        let mut mem = MemBuffer::new(
            self.symbolic
                .factorize_numeric_llt_scratch::<f64>(par, Default::default()),
        );
        self.symbolic
            .factorize_numeric_llt(
                &mut l_values,
                a,
                Side::Lower,
                Default::default(),
                par,
                MemStack::new(&mut mem),
                Default::default(),
            )
            .map_err(|e| Error::Solve {
                solver: SOLVER,
                index,
                reason: format!(
                    "matrix is not positive definite ({e:?}); check the coefficient is > 0"
                ),
            })?;
        Ok(Stencil5Factor {
            stencil: self,
            l_values,
        })
    }
}

impl Stencil5Factor<'_> {
    /// Overwrites `rhs` (length `n²`) with the solution of `A x = rhs`.
    ///
    /// # Panics
    /// If `rhs.len() != n²` (a programming error: callers size it from [`Stencil5::n`]).
    pub fn solve_in_place(&self, rhs: &mut [f64]) {
        let m = self.stencil.n * self.stencil.n;
        assert_eq!(
            rhs.len(),
            m,
            "Stencil5Factor::solve_in_place: rhs must have n^2 entries"
        );
        let llt = LltRef::new(&self.stencil.symbolic, &self.l_values);
        let mut mem = MemBuffer::new(
            self.stencil
                .symbolic
                .solve_in_place_scratch::<f64>(1, Par::Seq),
        );
        let x = MatMut::from_column_major_slice_mut(rhs, m, 1);
        llt.solve_in_place_with_conj(Conj::No, x, Par::Seq, MemStack::new(&mut mem));
    }
}

/// Matrix-free product `A u` of the 5-point operator (independent of the CSC assembly; used for
/// residual checks).
pub fn apply(n: usize, diag: &[f64], wx: &[f64], wy: &[f64], u: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let p = i * n + j;
            let mut s = diag[p] * u[p];
            if i + 1 < n {
                s -= wx[p] * u[p + n];
            }
            if i > 0 {
                s -= wx[p - n] * u[p - n];
            }
            if j + 1 < n {
                s -= wy[p] * u[p + 1];
            }
            if j > 0 {
                s -= wy[p - 1] * u[p - 1];
            }
            out[p] = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stencil5_factor_solve_reproduces_matrix_free_product() {
        let n = 9;
        let m = n * n;
        let diag: Vec<f64> = (0..m).map(|p| 4.5 + (p as f64 * 0.37).sin()).collect();
        let wx: Vec<f64> = (0..m)
            .map(|p| 1.0 + 0.2 * (p as f64 * 0.11).cos())
            .collect();
        let wy: Vec<f64> = (0..m)
            .map(|p| 0.9 + 0.1 * (p as f64 * 0.23).sin())
            .collect();
        let x: Vec<f64> = (0..m).map(|p| (p as f64 * 0.7).cos()).collect();
        let b = apply(n, &diag, &wx, &wy, &x);
        let st = Stencil5::new(n).unwrap();
        let f = st.factor(&diag, &wx, &wy, 0).unwrap();
        let mut y = b;
        f.solve_in_place(&mut y);
        pno_core::testing::assert_close(&y, &x, 1e-12, 1e-12);
    }

    #[test]
    fn stencil5_orderings_agree_and_nested_dissection_is_a_permutation() {
        let n = 23;
        let mut p = nested_dissection(n);
        p.sort_unstable();
        assert_eq!(p, (0..n * n).collect::<Vec<_>>());
        let m = n * n;
        let diag = vec![4.2; m];
        let w = vec![1.0; m];
        let b: Vec<f64> = (0..m).map(|p| (p as f64).sin()).collect();
        let (mut x1, mut x2) = (b.clone(), b);
        let nd = Stencil5::with_ordering(n, Ordering::NestedDissection).unwrap();
        let amd = Stencil5::with_ordering(n, Ordering::Amd).unwrap();
        nd.factor(&diag, &w, &w, 0).unwrap().solve_in_place(&mut x1);
        amd.factor(&diag, &w, &w, 0)
            .unwrap()
            .solve_in_place(&mut x2);
        eprintln!(
            "stencil5 n={n}: factor nnz nested dissection {} vs AMD {}",
            nd.factor_nnz(),
            amd.factor_nnz()
        );
        pno_core::testing::assert_close(&x1, &x2, 1e-12, 1e-14);
    }

    #[test]
    fn stencil5_indefinite_matrix_reports_solve_error() {
        let n = 4;
        let m = n * n;
        let st = Stencil5::new(n).unwrap();
        let err = st
            .factor(&vec![-1.0; m], &vec![0.0; m], &vec![0.0; m], 7)
            .unwrap_err();
        assert!(matches!(err, Error::Solve { index: 7, .. }), "{err}");
    }
}
