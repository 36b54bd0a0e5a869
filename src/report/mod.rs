//! Reports: the peer table and the latency matrix as a person or a program reads them.
//!
//! Pure presentation over the core's getters: the `--json` contracts, aligned tables, the
//! SVG heatmap. `peermesh status`, `matrix`, `top` and the control socket all render here.

pub mod heatmap;
pub mod matrix_report;
pub mod status;
pub mod units;
