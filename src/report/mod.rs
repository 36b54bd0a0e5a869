//! Reports: the peer table and the latency matrix as a person or a program reads them.
//!
//! Pure presentation over the core's getters: the `--json` contracts, aligned tables, the
//! SVG heatmap, and the application data's outcomes (`send`, `query`, `nearest`) and event
//! records (`watch`, event handlers). `peermesh status`, `matrix`, `top` and the control
//! socket all render here.

pub mod event_record;
pub mod heatmap;
pub mod matrix_report;
pub mod metrics;
pub mod nearest;
pub mod payload;
pub mod query_report;
pub mod reload_report;
pub mod send_report;
pub mod status;
pub mod status_page;
pub mod units;
