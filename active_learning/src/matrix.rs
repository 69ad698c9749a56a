//! A dense row-major `f32` matrix: feature rows of a pool, or a table of class probabilities.

/// Why a matrix could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatrixError {
    /// The data length is not `rows * cols`.
    #[error("a {rows}x{cols} matrix needs {} values, got {len}", rows * cols)]
    Length {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Values given.
        len: usize,
    },
}

/// A dense row-major matrix of `f32`.
///
/// Rows are samples; columns are features (for a feature matrix) or classes (for a probability
/// table, where each row sums to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Wraps `data` (row-major) as a `rows x cols` matrix.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, MatrixError> {
        if data.len() != rows * cols {
            return Err(MatrixError::Length {
                rows,
                cols,
                len: data.len(),
            });
        }
        Ok(Self { rows, cols, data })
    }

    /// Builds a matrix from rows that all have `cols` values.
    pub fn from_rows<R: AsRef<[f32]>>(cols: usize, rows: &[R]) -> Result<Self, MatrixError> {
        let mut data = Vec::with_capacity(rows.len() * cols);
        for row in rows {
            let row = row.as_ref();
            if row.len() != cols {
                return Err(MatrixError::Length {
                    rows: rows.len(),
                    cols,
                    len: data.len() + row.len(),
                });
            }
            data.extend_from_slice(row);
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            data,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Iterates over the rows in order.
    pub fn iter_rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        (0..self.rows).map(move |i| &self.data[i * self.cols..(i + 1) * self.cols])
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The values, row-major.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// A new matrix of the rows at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is out of range, like slice indexing.
    pub fn select_rows(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            rows: indices.len(),
            cols: self.cols,
            data,
        }
    }

    /// Index of the largest value of each row (the first on ties): the predicted classes of a
    /// probability table.
    pub fn argmax_rows(&self) -> Vec<usize> {
        self.iter_rows()
            .map(|row| {
                let mut best = 0;
                for (j, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = j;
                    }
                }
                best
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_length_is_an_error() {
        assert_eq!(
            Matrix::new(2, 3, vec![0.0; 5]),
            Err(MatrixError::Length {
                rows: 2,
                cols: 3,
                len: 5
            })
        );
        assert!(Matrix::from_rows(2, &[vec![1.0, 2.0], vec![3.0]]).is_err());
    }

    #[test]
    fn rows_select_and_argmax() {
        let m = Matrix::from_rows(3, &[[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]).unwrap();
        assert_eq!(m.row(1), &[0.5, 0.2, 0.3]);
        assert_eq!(m.select_rows(&[1, 0]).row(0), &[0.5, 0.2, 0.3]);
        assert_eq!(m.argmax_rows(), vec![1, 0]);
        assert_eq!(m.iter_rows().count(), 2);
    }
}
