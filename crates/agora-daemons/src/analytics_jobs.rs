//! The analytics service as a model of the market (DESIGN.md §10): a node that keeps the
//! analytics tables serves [`agora_analytics::job::MODEL_NAME`] — SQL queries and forecasts at
//! a stated height — as paid jobs, and judges them as a verifier by running them again.

use agora_analytics::Analytics;
use agora_analytics::job::{ForecastParams, Role, SqlAnswer, same_answer, same_forecast};
use agora_market::{Backend, Error, JobInput, JobOutput, Served, TableColumn};
use agora_types::{Fault, Hash, JobParams, Verdict};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client whose job failed after running (on its time, memory or row limit, in execution, in
/// fitting a forecast) waits this many times the failed run's time (at least
/// [`MIN_COOL_DOWN`]) before its next job runs: jobs that fail are not charged, so without it
/// one client could keep the job slots busy for nothing. A client with several keys needs an
/// escrow for each.
const COOL_DOWN_FACTOR: u32 = 3;
/// The shortest cool-down.
const MIN_COOL_DOWN: Duration = Duration::from_secs(1);
/// Clients remembered in cool-down at most (the oldest are forgotten first).
const COOLING_KEPT: usize = 10_000;

/// The analytics model's registry entry.
pub fn analytics_model() -> agora_state::GenesisModel {
    agora_state::GenesisModel {
        id: agora_analytics::job::model_id(),
        name: agora_analytics::job::MODEL_NAME.to_string(),
        kind: agora_types::ModelKind::Analytics,
    }
}

/// Runs the analytics model's jobs on a node's tables.
#[derive(Clone, Debug)]
pub struct AnalyticsBackend {
    analytics: Analytics,
    id: Hash,
    /// Clients in cool-down, and until when.
    cooling: Arc<Mutex<BTreeMap<Vec<u8>, Instant>>>,
}

impl AnalyticsBackend {
    /// Serves jobs over `analytics`' tables.
    pub fn new(analytics: Analytics) -> Self {
        Self {
            analytics,
            id: agora_analytics::job::model_id(),
            cooling: Arc::default(),
        }
    }

    fn cooling(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Instant>> {
        self.cooling.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses `client` while it is in cool-down.
    fn check_cooling(&self, client: &[u8]) -> Result<(), Error> {
        let now = Instant::now();
        let mut cooling = self.cooling();
        match cooling.get(client) {
            Some(until) if *until > now => Err(Error::Refused {
                status: 429,
                code: "cooling_down",
                message: format!(
                    "your last query failed on its limits; the next one runs in {} ms",
                    until.duration_since(now).as_millis().max(1)
                ),
            }),
            Some(_) => {
                cooling.remove(client);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Puts `client` in cool-down after a failed run of `spent`.
    fn cool_down(&self, client: &[u8], spent: Duration) {
        let now = Instant::now();
        let mut cooling = self.cooling();
        if cooling.len() >= COOLING_KEPT {
            cooling.retain(|_, until| *until > now);
            if cooling.len() >= COOLING_KEPT {
                let soonest = cooling
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    cooling.remove(&k);
                }
            }
        }
        let wait = (spent * COOL_DOWN_FACTOR).max(MIN_COOL_DOWN);
        cooling.insert(client.to_vec(), now + wait);
    }

    /// The model id served.
    pub fn id(&self) -> Hash {
        self.id
    }

    fn answer(
        &self,
        input: &JobInput,
        run: bool,
        role: Role,
    ) -> Result<Answer, agora_analytics::Error> {
        match input {
            JobInput::Sql { sql, height } => Ok(Answer::Table(
                self.analytics.sql_job_as(sql, *height, run, role)?,
            )),
            JobInput::Forecast {
                sql,
                height,
                horizon,
                season,
                level_milli,
                windows,
            } => {
                let params = ForecastParams {
                    horizon: *horizon as usize,
                    season: season.map(|s| s as usize),
                    level_milli: *level_milli,
                    windows: *windows as usize,
                };
                if !run {
                    agora_analytics::job::check_forecast(&params)?;
                    let a = self.analytics.sql_job_as(sql, *height, false, role)?;
                    return Ok(Answer::Forecast(a, serde_json::Value::Null, *horizon));
                }
                let (a, f) = self.analytics.forecast_job(sql, *height, params, role)?;
                Ok(Answer::Forecast(a, f, *horizon))
            }
            _ => Err(agora_analytics::Error::Plan(
                "this is the analytics model: send a query (sql) or a forecast".into(),
            )),
        }
    }
}

enum Answer {
    Table(SqlAnswer),
    Forecast(SqlAnswer, serde_json::Value, u32),
}

impl Answer {
    fn counts(&self) -> (u32, u32) {
        let read = |a: &SqlAnswer| u32::try_from(a.scanned).unwrap_or(u32::MAX);
        match self {
            Answer::Table(a) => (read(a), u32::try_from(a.rows.len()).unwrap_or(u32::MAX)),
            Answer::Forecast(a, _, horizon) => (read(a), *horizon),
        }
    }
}

fn refused(e: agora_analytics::Error) -> Error {
    Error::Refused {
        status: if e.is_client_error() { 400 } else { 503 },
        code: e.code(),
        message: e.to_string(),
    }
}

fn columns(a: &SqlAnswer) -> Vec<TableColumn> {
    a.columns
        .iter()
        .map(|c| TableColumn {
            name: c.name.clone(),
            ty: c.ty.clone(),
        })
        .collect()
}

impl Backend for AnalyticsBackend {
    fn serves(&self, model: &Hash) -> bool {
        *model == self.id
    }

    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error> {
        if !self.serves(model) {
            return Err(Error::UnknownModel(*model));
        }
        Ok(self
            .answer(input, false, Role::Provider)
            .map_err(refused)?
            .counts()
            .0)
    }

    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        self.run_for(&[], model, input, params, on_text)
    }

    fn run_for(
        &self,
        client: &[u8],
        model: &Hash,
        input: &JobInput,
        _params: &JobParams,
        _on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Served, Error> {
        if !self.serves(model) {
            return Err(Error::UnknownModel(*model));
        }
        self.check_cooling(client)?;
        let start = Instant::now();
        let answer = match self.answer(input, true, Role::Provider) {
            Ok(answer) => answer,
            Err(e) => {
                if e.failed_running() {
                    self.cool_down(client, start.elapsed());
                }
                return Err(refused(e));
            }
        };
        let (input_tokens, output_tokens) = answer.counts();
        let output = match answer {
            Answer::Table(a) => JobOutput::Table {
                columns: columns(&a),
                rows: a.rows,
            },
            Answer::Forecast(_, forecast, _) => JobOutput::Forecast { forecast },
        };
        Ok(Served {
            output,
            input_tokens,
            output_tokens,
        })
    }

    fn judge(
        &self,
        model: &Hash,
        input: &JobInput,
        _params: &JobParams,
        output: &JobOutput,
        counts: (u32, u32),
        _tolerance: f32,
    ) -> Result<Verdict, Error> {
        let fail = |fault| Ok(Verdict::Fail { fault });
        if !self.serves(model) {
            return Err(Error::UnknownModel(*model));
        }
        if !matches!(input, JobInput::Sql { .. } | JobInput::Forecast { .. }) {
            return fail(Fault::WrongKind);
        }
        let expected = match self.answer(input, true, Role::Verifier) {
            Ok(a) => a,
            // A query that fails even with a verifier's larger limits had no result to deliver.
            Err(e) if e.is_deterministic() => return fail(Fault::WrongResult),
            // Busy, tables still being indexed, a store error: no verdict from this verifier
            // now (asked again at its next step), never the provider's fault.
            Err(e) => return Err(refused(e)),
        };
        if counts != expected.counts() {
            return fail(Fault::WrongCount);
        }
        let same = match (&expected, output) {
            (Answer::Table(e), JobOutput::Table { columns: c, rows }) => {
                let claimed = SqlAnswer {
                    columns: c
                        .iter()
                        .map(|c| agora_analytics::job::JobColumn {
                            name: c.name.clone(),
                            ty: c.ty.clone(),
                        })
                        .collect(),
                    rows: rows.clone(),
                    scanned: e.scanned,
                    sorted: e.sorted,
                };
                same_answer(&claimed, e)
            }
            (Answer::Forecast(_, e, _), JobOutput::Forecast { forecast }) => {
                same_forecast(forecast, e)
            }
            _ => return fail(Fault::WrongKind),
        };
        if same {
            Ok(Verdict::Pass)
        } else {
            fail(Fault::WrongResult)
        }
    }
}
