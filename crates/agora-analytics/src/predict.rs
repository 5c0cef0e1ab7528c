//! Forecasts of time series taken from SQL (transactions, fees, job volume, transfers per
//! interval), with prediction intervals, and backtested against a seasonal-naive baseline.
//!
//! The models are Grafana's `augurs`: AutoETS (exponential smoothing, its form picked by AICc)
//! for a series without a season, and MSTL (seasonal-trend decomposition by Loess, AutoETS on
//! the trend) for one with. The backtest refits the model at several origins before the end
//! and compares its forecasts with what happened, and with the seasonal-naive forecast (the
//! value one season earlier; the last value when there is no season): a model that does not
//! beat it is said to.
//!
//! Deterministic: the same series and options give the same forecast, bit for bit, on one
//! machine (the fitting runs on one thread and draws no random numbers).

use crate::{Error, Result};
use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::prelude::{Fit as _, Predict as _};
use serde::Serialize;

/// Most points in a series.
pub const MAX_POINTS: usize = 100_000;
/// Longest horizon.
pub const MAX_HORIZON: usize = 10_000;
/// Fewest points to forecast from (AutoETS needs more than 6).
pub const MIN_POINTS: usize = 7;
/// Most backtest origins (each refits the model).
pub const MAX_WINDOWS: usize = 20;
/// Longest history a backtest refit looks at: its cost stays bounded on long series.
const BACKTEST_TRAIN: usize = 5_000;

/// A regular series: `values[i]` at `start_ms + i * step_ms`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// The first point's time (Unix ms, or any integer axis such as a height).
    pub start_ms: i64,
    /// The spacing.
    pub step_ms: i64,
    /// The values.
    pub values: Vec<f64>,
}

impl Series {
    /// A series from `(time, value)` points in any order: the step is the smallest gap between
    /// two times, and a missing step counts as 0 (no transactions in that interval). Duplicate
    /// times, non-finite values, a step that does not divide the gaps or more than
    /// [`MAX_POINTS`] points after filling are refused.
    pub fn from_points(points: Vec<(i64, f64)>) -> Result<Self> {
        Self::from_points_with_step(points, None)
    }

    /// [`Series::from_points`] with the step given (the bucket of the query that made the
    /// points) rather than found: the greatest common divisor of the gaps when `None`.
    pub fn from_points_with_step(mut points: Vec<(i64, f64)>, step: Option<i64>) -> Result<Self> {
        if points.len() < 2 {
            return Err(Error::Forecast(format!(
                "a series needs at least 2 points, got {}",
                points.len()
            )));
        }
        if let Some((t, v)) = points.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Forecast(format!("the value at {t} is {v}")));
        }
        points.sort_by_key(|(t, _)| *t);
        let start = points[0].0;
        let end = points[points.len() - 1].0;
        // In i128: two i64 times may be apart by more than i64 holds.
        if i128::from(end) - i128::from(start) > i128::from(i64::MAX) {
            return Err(Error::Forecast("the times are too far apart".into()));
        }
        let mut gcd = 0i64;
        for w in points.windows(2) {
            let gap = w[1].0 - w[0].0; // at most the span, which fits
            if gap == 0 {
                return Err(Error::Forecast(format!("two values at time {}", w[0].0)));
            }
            let (mut a, mut b) = (gcd, gap);
            while b != 0 {
                (a, b) = (b, a % b);
            }
            gcd = a;
        }
        let step = match step {
            Some(step) if step <= 0 => {
                return Err(Error::Forecast(format!("a step of {step}")));
            }
            Some(step) => step,
            None => gcd,
        };
        let span = end - start;
        if span % step != 0 || points.iter().any(|(t, _)| (t - start) % step != 0) {
            return Err(Error::Forecast(format!(
                "the times are not on one grid of step {step}: bucket them (date_bin)"
            )));
        }
        let len = usize::try_from(span / step)
            .ok()
            .and_then(|n| n.checked_add(1))
            .filter(|n| *n <= MAX_POINTS)
            .ok_or_else(|| {
                Error::Forecast(format!(
                    "the series spans more than {MAX_POINTS} steps of {step}: use a longer interval"
                ))
            })?;
        let mut values = vec![0.0; len];
        for (t, v) in points {
            values[usize::try_from((t - start) / step).unwrap_or(0)] = v;
        }
        Ok(Self {
            start_ms: start,
            step_ms: step,
            values,
        })
    }
}

/// How to forecast.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastOptions {
    /// Steps ahead.
    pub horizon: usize,
    /// Steps per season (24 for hourly data with a daily cycle); `None` or 1: no season.
    pub season: Option<usize>,
    /// The prediction intervals' level, in (0, 1).
    pub level: f64,
    /// Backtest origins (0: no backtest).
    pub backtest_windows: usize,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        Self {
            horizon: 12,
            season: None,
            level: 0.95,
            backtest_windows: 4,
        }
    }
}

/// A series' points from rows of two columns: an integer time and a number (or a number's
/// text, as an amount is written).
pub fn points_from_rows(rows: &[Vec<serde_json::Value>]) -> Result<Vec<(i64, f64)>> {
    let mut points = Vec::with_capacity(rows.len());
    for row in rows {
        let [t, v] = row.as_slice() else {
            return Err(Error::Forecast(format!(
                "each row must hold two columns, a time and a value; one holds {}",
                row.len()
            )));
        };
        let t = t.as_i64().ok_or_else(|| {
            Error::Forecast(format!("the first column must be an integer time, not {t}"))
        })?;
        let v = v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                Error::Forecast(format!("the second column must be a number, not {v}"))
            })?;
        points.push((t, v));
    }
    Ok(points)
}

/// One forecast step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Its time.
    pub time_ms: i64,
    /// The forecast.
    pub value: f64,
    /// The interval's bounds.
    pub lower: f64,
    /// The interval's bounds.
    pub upper: f64,
}

/// How the model did on the series' own past.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Backtest {
    /// Origins tried.
    pub windows: usize,
    /// Steps forecast from each.
    pub horizon: usize,
    /// The model's mean absolute error.
    pub mae: f64,
    /// The seasonal-naive forecast's.
    pub naive_mae: f64,
    /// The share of actual values inside the model's intervals.
    pub coverage: f64,
}

/// A forecast.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forecast {
    /// The model used.
    pub model: String,
    /// The intervals' level.
    pub level: f64,
    /// The steps ahead.
    pub points: Vec<Point>,
    /// How the model did on the past (`None`: too short a series to tell).
    pub backtest: Option<Backtest>,
}

/// A model's name, and its point forecasts with their lower and upper bounds.
type Fitted = (String, Vec<f64>, Vec<f64>, Vec<f64>);

/// Point forecasts and interval bounds for `horizon` steps after `y`.
fn fit_predict(y: &[f64], season: Option<usize>, horizon: usize, level: f64) -> Result<Fitted> {
    let failed = |e: &dyn std::fmt::Display| Error::Forecast(format!("the model did not fit: {e}"));
    let (model, forecast) = match season.filter(|s| *s >= 2 && y.len() / 2 >= *s) {
        Some(s) => {
            let trend = AutoETS::non_seasonal().into_trend_model();
            let fitted = MSTLModel::new(vec![s], trend)
                .fit(y)
                .map_err(|e| failed(&e))?;
            let f = fitted.predict(horizon, level).map_err(|e| failed(&e))?;
            (format!("MSTL (season {s}) + AutoETS trend"), f)
        }
        None => {
            let fitted = AutoETS::non_seasonal().fit(y).map_err(|e| failed(&e))?;
            let f = fitted.predict(horizon, level).map_err(|e| failed(&e))?;
            ("AutoETS".to_string(), f)
        }
    };
    let (lower, upper) = match forecast.intervals {
        Some(i) => (i.lower, i.upper),
        None => (forecast.point.clone(), forecast.point.clone()),
    };
    if forecast.point.len() != horizon || lower.len() != horizon || upper.len() != horizon {
        return Err(Error::Forecast(
            "the model gave a forecast of another length".into(),
        ));
    }
    if forecast
        .point
        .iter()
        .chain(&lower)
        .chain(&upper)
        .any(|v| !v.is_finite())
    {
        return Err(Error::Forecast("the model's forecast is not finite".into()));
    }
    Ok((model, forecast.point, lower, upper))
}

/// The seasonal-naive forecast of `horizon` steps after `y`: each step's value one season
/// earlier (the last value without a season).
pub fn seasonal_naive(y: &[f64], season: Option<usize>, horizon: usize) -> Vec<f64> {
    if y.is_empty() {
        return Vec::new();
    }
    let m = season.filter(|s| *s >= 1 && *s <= y.len()).unwrap_or(1);
    (0..horizon).map(|h| y[y.len() - m + (h % m)]).collect()
}

/// Forecasts `series` `options.horizon` steps ahead, with intervals and a backtest.
pub fn forecast(series: &Series, options: ForecastOptions) -> Result<Forecast> {
    let y = &series.values;
    if !(options.level > 0.0 && options.level < 1.0) {
        return Err(Error::Forecast(format!(
            "the interval level must be between 0 and 1, got {}",
            options.level
        )));
    }
    if options.horizon == 0 || options.horizon > MAX_HORIZON {
        return Err(Error::Forecast(format!(
            "the horizon must be 1 to {MAX_HORIZON} steps, got {}",
            options.horizon
        )));
    }
    if y.len() < MIN_POINTS {
        return Err(Error::Forecast(format!(
            "a forecast needs at least {MIN_POINTS} points, got {}",
            y.len()
        )));
    }
    if options.backtest_windows > MAX_WINDOWS {
        return Err(Error::Forecast(format!(
            "at most {MAX_WINDOWS} backtest windows, got {}",
            options.backtest_windows
        )));
    }
    if let Some(s) = options.season.filter(|s| *s > y.len() / 2) {
        return Err(Error::Forecast(format!(
            "a season of {s} steps needs two seasons of data; the series has {} points",
            y.len()
        )));
    }
    let season = options.season.filter(|s| *s >= 2);
    let (model, point, lower, upper) = fit_predict(y, season, options.horizon, options.level)?;
    let points = (0..options.horizon)
        .map(|h| Point {
            time_ms: series
                .start_ms
                .saturating_add(series.step_ms.saturating_mul((y.len() + h) as i64)),
            value: point[h],
            lower: lower[h],
            upper: upper[h],
        })
        .collect();
    Ok(Forecast {
        model,
        level: options.level,
        points,
        // A backtest that cannot fit (a flat early stretch, say) is no reason to withhold the
        // forecast.
        backtest: backtest(y, season, options).ok().flatten(),
    })
}

/// Rolling-origin backtest: the last `windows × horizon` points, forecast `horizon` at a time
/// from everything before them.
fn backtest(
    y: &[f64],
    season: Option<usize>,
    options: ForecastOptions,
) -> Result<Option<Backtest>> {
    let h = options.horizon;
    let min_train = season.map_or(8, |s| s.saturating_mul(2).max(8));
    let windows = (0..options.backtest_windows)
        .take_while(|w| y.len() >= min_train + (w + 1) * h)
        .count();
    if windows == 0 {
        return Ok(None);
    }
    let (mut err, mut naive_err, mut inside, mut n) = (0.0, 0.0, 0usize, 0usize);
    for w in (1..=windows).rev() {
        let origin = y.len() - w * h;
        let keep = season.map_or(BACKTEST_TRAIN, |s| BACKTEST_TRAIN.max(10 * s));
        let train = &y[origin.saturating_sub(keep)..origin];
        let actual = &y[origin..origin + h];
        let (_, point, lower, upper) = fit_predict(train, season, h, options.level)?;
        let naive = seasonal_naive(train, season, h);
        for i in 0..h {
            err += (point[i] - actual[i]).abs();
            naive_err += (naive[i] - actual[i]).abs();
            inside += usize::from(lower[i] <= actual[i] && actual[i] <= upper[i]);
            n += 1;
        }
    }
    let n_f = n as f64;
    Ok(Some(Backtest {
        windows,
        horizon: h,
        mae: err / n_f,
        naive_mae: naive_err / n_f,
        coverage: inside as f64 / n_f,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daily cycle on an upward trend with small deterministic noise.
    fn seasonal(len: usize) -> Vec<f64> {
        let mut state = 7u64;
        (0..len)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = ((state >> 33) % 1000) as f64 / 1000.0 - 0.5;
                let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
                100.0 + 0.5 * i as f64 + 30.0 * phase.sin() + 2.0 * noise
            })
            .collect()
    }

    #[test]
    fn a_seasonal_series_is_forecast_better_than_seasonal_naive_with_honest_intervals() {
        let series = Series {
            start_ms: 0,
            step_ms: 3_600_000,
            values: seasonal(24 * 14),
        };
        let options = ForecastOptions {
            horizon: 24,
            season: Some(24),
            level: 0.95,
            backtest_windows: 3,
        };
        let f = forecast(&series, options).expect("forecasts");
        assert!(f.model.starts_with("MSTL"), "{}", f.model);
        assert_eq!(f.points.len(), 24);
        assert_eq!(f.points[0].time_ms, 24 * 14 * 3_600_000);
        for p in &f.points {
            assert!(p.lower <= p.value && p.value <= p.upper, "{p:?}");
        }
        // The truth continues the pattern: the forecast stays close to it.
        let truth = seasonal(24 * 15);
        let mae: f64 = f
            .points
            .iter()
            .zip(&truth[24 * 14..])
            .map(|(p, t)| (p.value - t).abs())
            .sum::<f64>()
            / 24.0;
        assert!(mae < 5.0, "MAE {mae}");
        let b = f.backtest.expect("a backtest");
        assert_eq!((b.windows, b.horizon), (3, 24));
        // The trend makes last season's value stale: the model beats it.
        assert!(b.mae < b.naive_mae, "{b:?}");
        assert!(b.coverage >= 0.8, "{b:?}");
        // Deterministic.
        assert_eq!(forecast(&series, options).expect("again"), f);
    }

    #[test]
    fn points_are_put_on_a_grid_and_bad_series_are_refused() {
        let s = Series::from_points(vec![(30, 3.0), (0, 1.0), (10, 2.0)]).expect("a series");
        assert_eq!(
            (s.start_ms, s.step_ms, s.values),
            (0, 10, vec![1.0, 2.0, 0.0, 3.0])
        );
        for (points, says) in [
            (vec![(0, 1.0)], "at least 2"),
            (vec![(0, 1.0), (0, 2.0)], "two values"),
            (vec![(0, 1.0), (10, f64::NAN)], "NaN"),
            (vec![(0, 1.0), (1, 1.0), (10_000_000, 1.0)], "more than"),
            (vec![(i64::MIN, 1.0), (i64::MAX, 1.0)], "too far apart"),
            (
                vec![
                    (-5_000_000_000_000_000_000, 1.0),
                    (0, 1.0),
                    (5_000_000_000_000_000_000, 1.0),
                ],
                "too far apart",
            ),
        ] {
            let err = Series::from_points(points).expect_err(says);
            assert!(err.to_string().contains(says), "{err}");
        }
        // Buckets with no activity are missing from a GROUP BY: the step is the gaps' common
        // divisor, or the bucket given.
        let s = Series::from_points(vec![(0, 1.0), (20, 2.0), (50, 3.0)]).expect("a series");
        assert_eq!(
            (s.step_ms, s.values),
            (10, vec![1.0, 0.0, 2.0, 0.0, 0.0, 3.0])
        );
        let err = Series::from_points_with_step(vec![(0, 1.0), (10, 1.0), (25, 1.0)], Some(10))
            .expect_err("off the grid");
        assert!(err.to_string().contains("not on one grid"), "{err}");
        let short = Series {
            start_ms: 0,
            step_ms: 1,
            values: vec![1.0; 6],
        };
        let err = forecast(&short, ForecastOptions::default()).expect_err("too short");
        assert!(err.to_string().contains("at least 7"), "{err}");
        let ok = Series {
            start_ms: 0,
            step_ms: 1,
            values: vec![1.0; 30],
        };
        for options in [
            ForecastOptions {
                horizon: 0,
                ..ForecastOptions::default()
            },
            ForecastOptions {
                season: Some(usize::MAX),
                ..ForecastOptions::default()
            },
            ForecastOptions {
                backtest_windows: 1_000_000,
                ..ForecastOptions::default()
            },
            ForecastOptions {
                level: 1.0,
                ..ForecastOptions::default()
            },
            ForecastOptions {
                level: f64::NAN,
                ..ForecastOptions::default()
            },
        ] {
            assert!(forecast(&ok, options).is_err(), "{options:?}");
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            seasonal_naive(&y, Some(3), 5),
            vec![4.0, 5.0, 6.0, 4.0, 5.0]
        );
        assert_eq!(seasonal_naive(&y, None, 2), vec![6.0, 6.0]);
        assert!(seasonal_naive(&[], Some(3), 4).is_empty());
    }
}
