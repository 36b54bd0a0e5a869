//! How the reports write times: one wording for ages (`12.0s ago`) in every report, and
//! one unit per column of figures (never `6.32ms` beside `581µs`).
//!
//! ```
//! use peermesh::report::units::{ago, TimeUnit};
//! assert_eq!(ago(12_040), "12.0s ago");
//! let unit = TimeUnit::for_column([581.0, 6320.0]);
//! assert_eq!((unit.format(581.0), unit.format(6320.0)), ("0.58ms".to_owned(), "6.32ms".to_owned()));
//! ```

/// One time value alone, in the unit that suits it: `734µs`, `12.3ms`, `150ms`, `1.20s`.
/// For a column of values use [`TimeUnit::for_column`], so the column has one unit.
pub fn human_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 100_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.0}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// A span of milliseconds as a person reads it: `850ms`, `12.3s`, `5m02s`, `3h10m`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// How long ago something happened, `ms` milliseconds before now: [`human_duration`] and
/// ` ago` (`850ms ago`, `12.0s ago`, `5m02s ago`). Every report words ages this way.
pub fn ago(ms: u64) -> String {
    format!("{} ago", human_duration(ms))
}

/// The one unit of a column of times (given in microseconds), chosen from its largest
/// value, with as many decimals as keep about three significant digits of that value. All
/// cells of the column then have the same unit and the same decimals, so right-aligned
/// they line up on the decimal point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeUnit {
    /// Microseconds per unit: 1, 1000 or 1,000,000.
    scale: u32,
    /// Decimals shown.
    decimals: usize,
}

impl TimeUnit {
    /// The unit for a column holding `values` (µs): `µs` when all are below 1 ms, `ms`
    /// below 1 s, else `s`. An empty column gets `µs`.
    pub fn for_column(values: impl IntoIterator<Item = f64>) -> TimeUnit {
        let max = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let scale = if max < 999.5 {
            1
        } else if max < 999_500.0 {
            1000
        } else {
            1_000_000
        };
        let in_unit = max / f64::from(scale);
        let decimals = match scale {
            1 => 0,
            _ if in_unit < 9.995 => 2,
            _ if in_unit < 99.95 => 1,
            _ => 0,
        };
        TimeUnit { scale, decimals }
    }

    /// The unit for a column whose largest value is `max_us` (µs), always with two
    /// decimals in ms and s (`0.58ms`, `410.00ms`, `1.20s`): the matrix table, whose cells
    /// are all as wide as its widest.
    pub fn two_decimals_for_max(max_us: f64) -> TimeUnit {
        let (scale, decimals) = if max_us < 999.5 {
            (1, 0)
        } else if max_us < 999_995.0 {
            (1000, 2)
        } else {
            (1_000_000, 2)
        };
        TimeUnit { scale, decimals }
    }

    /// The unit's symbol: `µs`, `ms` or `s`.
    pub fn symbol(self) -> &'static str {
        match self.scale {
            1 => "µs",
            1000 => "ms",
            _ => "s",
        }
    }

    /// `us` microseconds in this unit, with the symbol: `0.58ms`.
    pub fn format(self, us: f64) -> String {
        format!(
            "{:.*}{}",
            self.decimals,
            us / f64::from(self.scale),
            self.symbol()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_ages() {
        assert_eq!(human_us(42.4), "42µs");
        assert_eq!(human_us(1234.0), "1.23ms");
        assert_eq!(human_us(150_000.0), "150ms");
        assert_eq!(human_duration(61_000), "1m01s");
        assert_eq!(ago(850), "850ms ago");
        assert_eq!(ago(12_040), "12.0s ago");
        assert_eq!(ago(3_600_000 * 3 + 600_000), "3h10m ago");
    }

    #[test]
    fn a_column_has_one_unit_picked_from_its_largest_value() {
        let cases: [(&[f64], &[&str]); 6] = [
            (&[10.2, 581.0], &["10µs", "581µs"]),
            (&[581.0, 6320.0], &["0.58ms", "6.32ms"]),
            (&[581.0, 63_200.0], &["0.6ms", "63.2ms"]),
            (&[581.0, 632_000.0], &["1ms", "632ms"]),
            (&[999.7, 20.0], &["1.00ms", "0.02ms"]),
            (&[2_500_000.0, 900.0], &["2.50s", "0.00s"]),
        ];
        for (values, want) in cases {
            let unit = TimeUnit::for_column(values.iter().copied());
            let got: Vec<String> = values.iter().map(|&v| unit.format(v)).collect();
            assert_eq!(got, want, "{values:?}");
        }
        assert_eq!(TimeUnit::for_column([]).symbol(), "µs");
        assert_eq!(TimeUnit::for_column([f64::NAN, 5.0]).format(5.0), "5µs");
    }
}
