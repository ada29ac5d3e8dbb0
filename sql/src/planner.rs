//! The streaming planner: turns parsed statements into calls on the engine.
//! It never runs a batch.
//!
//! - `CREATE SOURCE` builds the source (options are checked by its
//!   connector) and registers it with DataFusion as a stream table.
//! - A query is planned by DataFusion against those tables, once; the plan
//!   becomes a [`DStream`] whose stateless plan runs on every batch.
//!   A `GROUP BY` over a window becomes a window operator; an unwindowed
//!   `GROUP BY` with `EMIT CHANGES | COMPLETE` a running aggregate (with
//!   the `state.ttl` set at planning time); without `EMIT` it is per batch
//!   (DStream `reduceByKey` on each batch), and the first such query prints
//!   a notice saying so and naming `EMIT CHANGES`.
//! - `SET batch.interval` changes the engine's batch interval; `SET
//!   state.ttl` the TTL of running aggregates planned after it (`'none'` to
//!   keep keys forever); `SET datafusion.*` goes to DataFusion's
//!   configuration; `SET ui.address` starts the status page.
//! - `EXPLAIN <query>` plans the query without running it and shows its
//!   DStream operators; `SHOW QUERIES` and `STOP QUERY` act on the running
//!   queries (`queries.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brooklet_engine::datafusion::logical_expr::LogicalPlan;
use brooklet_engine::datafusion::sql::parser::{CreateExternalTable, Statement as DFStatement};
use brooklet_engine::datafusion::sql::sqlparser::ast::{self, ColumnOption};
use brooklet_engine::source::METADATA_FIELD_KEY;
use brooklet_engine::status::StatusServer;
use brooklet_engine::time::{format_duration, parse_duration};
use brooklet_engine::{DStream, EmitMode, Engine, RunningSpec, Watermark};
use datafusion::arrow::datatypes::{Field, Schema};

use crate::error::{Error, Result};
pub use crate::parser::normalize;
use crate::parser::{
    Emit, MetadataColumn, ObjectKind, ParsedStatement, Statement, WatermarkClause,
};

/// The settings `SET` knows, besides `datafusion.*`.
pub const SETTINGS: &[&str] = &[
    "batch.interval",
    "ui.address",
    "trigger",
    "state.ttl",
    "watermark.idle.timeout",
    "parallelism",
    "checkpoint.dir",
    "checkpoint.interval",
    "checkpoint.full_every",
    "s3.endpoint",
    "s3.allow_http",
    "s3.region",
    "s3.access_key_id",
    "s3.secret_access_key",
    "s3.timeout",
    "s3.retry_timeout",
];

/// What a statement asks for.
#[derive(Debug)]
pub enum Planned {
    /// Done (DDL, `SET`): a short confirmation.
    Done(String),
    /// What a statement asked to see (`EXPLAIN`, `SHOW QUERIES`): its
    /// output, printed by `brooklet run` and `-c` too.
    Shown(String),
    /// A query whose batches go to the console.
    Query(DStream),
    /// A query whose batches go to a sink.
    Insert {
        /// The sink's name.
        sink: String,
        /// The query.
        stream: DStream,
    },
}

/// Plans statements against one engine.
#[derive(Debug, Clone)]
pub struct Planner {
    engine: Engine,
    per_batch_notice_given: Arc<AtomicBool>,
    state_ttl: Arc<Mutex<Option<Duration>>>,
    /// The status server, while one serves the engine (`SET ui.address`).
    status: Arc<Mutex<Option<StatusServer>>>,
}

impl Planner {
    /// A planner for `engine`.
    pub fn new(engine: Engine) -> Self {
        crate::window::register(&engine);
        Planner {
            engine,
            per_batch_notice_given: Arc::default(),
            state_ttl: Arc::default(),
            status: Arc::default(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves the engine's status page, `/metrics` and `/api/queries` at
    /// `address` (replacing a server it has), and says where it listens.
    pub fn serve_status(&self, address: &str) -> Result<std::net::SocketAddr> {
        let mut slot = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let server = match slot.take() {
            Some(old) => old.replace(&self.engine, address)?,
            None => StatusServer::start(&self.engine, address)?,
        };
        let bound = server.address();
        *slot = Some(server);
        Ok(bound)
    }

    /// Where the status server listens, if one runs.
    pub fn status_address(&self) -> Option<std::net::SocketAddr> {
        let slot = self.status.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(StatusServer::address)
    }

    /// Stops the status server, if one runs.
    pub fn stop_status(&self) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Plans one statement; DDL and `SET` take effect now.
    /// Planning recurses once per level of the statement's expressions,
    /// so it runs on a deep stack ([`brooklet_engine::stack`]).
    pub async fn plan(&self, parsed: &ParsedStatement) -> Result<Planned> {
        brooklet_engine::stack::DeepStack::new(self.plan_statement(parsed))
            .await
            .map_err(|e| e.at(parsed.location))
    }

    async fn plan_statement(&self, parsed: &ParsedStatement) -> Result<Planned> {
        match &parsed.statement {
            Statement::CreateSource {
                name,
                columns,
                watermark,
                metadata,
                options,
                if_not_exists,
            } => {
                let name = normalize(name);
                if *if_not_exists && self.engine.source_by_name(&name).is_ok() {
                    return Ok(Planned::Done(format!("source '{name}' exists")));
                }
                let schema = if columns.is_empty() {
                    None
                } else {
                    Some(Arc::new(self.schema_of(columns, metadata).await?))
                };
                let options: BTreeMap<String, String> = options
                    .iter()
                    .map(|o| (o.key.clone(), o.value.clone()))
                    .collect();
                let watermark = match watermark {
                    Some(clause) => Some(self.watermark_of(clause).await?),
                    None => None,
                };
                self.engine.create_source(&name, schema, options)?;
                if let Some(watermark) = watermark {
                    let column = watermark.column.clone();
                    if let Err(e) = self.engine.set_watermark(&name, watermark) {
                        let _ = self.engine.drop_source(&name);
                        return Err(Error::plan(format!("WATERMARK FOR {column}: {e}")));
                    }
                }
                let table = self.engine.stream_table(&name)?;
                if let Err(e) = self.engine.session().register_table(name.as_str(), table) {
                    let _ = self.engine.drop_source(&name);
                    return Err(e.into());
                }
                Ok(Planned::Done(format!("source '{name}' created")))
            }
            Statement::CreateSink {
                name,
                options,
                if_not_exists,
            } => {
                let name = normalize(name);
                if *if_not_exists && self.engine.sink(&name).is_ok() {
                    return Ok(Planned::Done(format!("sink '{name}' exists")));
                }
                let options = options
                    .iter()
                    .map(|o| (o.key.clone(), o.value.clone()))
                    .collect();
                self.engine.create_sink(&name, options)?;
                Ok(Planned::Done(format!("sink '{name}' created")))
            }
            Statement::CreateTable(table) => self.create_table(table).await,
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => {
                let name = normalize(name);
                let is_table = self.engine.tables().iter().any(|t| t.name == name);
                let dropped = match kind {
                    ObjectKind::Source if is_table => self.engine.drop_table(&name),
                    ObjectKind::Source => self.engine.drop_source(&name).map(|()| {
                        let _ = self.engine.session().deregister_table(name.as_str());
                    }),
                    ObjectKind::Sink => self.engine.drop_sink(&name),
                };
                match dropped {
                    Ok(()) => Ok(Planned::Done(format!("'{name}' dropped"))),
                    Err(_) if *if_exists => Ok(Planned::Done(format!("'{name}' does not exist"))),
                    Err(e) => Err(e.into()),
                }
            }
            Statement::Set { key, value } => self.set(key, value),
            Statement::Query { query, emit } => Ok(Planned::Query(
                self.plan_query(query, *emit, &parsed.text).await?,
            )),
            Statement::Explain(explained) => {
                let stream = match explained.as_ref() {
                    Statement::Query { query, emit } | Statement::Insert { query, emit, .. } => {
                        self.plan_query(query, *emit, &parsed.text).await?
                    }
                    _ => return Err(Error::plan("EXPLAIN shows the operators of a query")),
                };
                Ok(Planned::Shown(
                    stream.explain().to_string().trim_end().to_string(),
                ))
            }
            Statement::ShowQueries => Ok(Planned::Shown(crate::queries::show(&self.engine))),
            Statement::StopQuery { name } => Ok(Planned::Done(
                crate::queries::stop(&self.engine, &normalize(name)).await?,
            )),
            Statement::Insert { sink, query, emit } => {
                let sink = normalize(sink);
                self.engine.sink(&sink)?;
                let stream = self
                    .plan_query(query, *emit, &parsed.text)
                    .await?
                    .name(&sink);
                Ok(Planned::Insert { sink, stream })
            }
        }
    }

    /// `CREATE EXTERNAL TABLE`: DataFusion plans the statement and builds
    /// its listing table; the engine reads it and holds its rows.
    async fn create_table(&self, table: &CreateExternalTable) -> Result<Planned> {
        let name = match table.name.0.last() {
            Some(ast::ObjectNamePart::Identifier(ident)) => normalize(ident),
            _ => table.name.to_string(),
        };
        if self.engine.tables().iter().any(|t| t.name == name) {
            if table.if_not_exists {
                return Ok(Planned::Done(format!("table '{name}' exists")));
            }
            return Err(Error::plan(format!(
                "a table named '{name}' exists (DROP TABLE {name} first)"
            )));
        }
        if self.engine.source_by_name(&name).is_ok() {
            return Err(Error::plan(format!(
                "a source named '{name}' exists; a table needs a name of its own"
            )));
        }
        let [location] = table.locations.as_slice() else {
            return Err(Error::plan("CREATE EXTERNAL TABLE: give one LOCATION"));
        };
        // DataFusion builds its listing table (and registers it); the
        // engine registers the table that holds its rows in its place.
        self.engine.register_object_store_of(location)?;
        let session = self.engine.session();
        let statement = DFStatement::CreateExternalTable(CreateExternalTable {
            if_not_exists: false,
            or_replace: false,
            ..table.clone()
        });
        let plan = session.state().statement_to_plan(statement).await?;
        session.execute_logical_plan(plan).await?;
        let provider = session
            .deregister_table(name.as_str())?
            .ok_or_else(|| Error::plan(format!("table '{name}' was not created")))?;
        self.engine
            .register_file_table(&name, provider, location, &table.file_type)
            .await?;
        let rows = self
            .engine
            .tables()
            .into_iter()
            .find(|t| t.name == name)
            .and_then(|t| t.rows)
            .unwrap_or(0);
        Ok(Planned::Done(format!(
            "table '{name}' created ({rows} rows)"
        )))
    }

    fn set(&self, key: &str, value: &str) -> Result<Planned> {
        match key {
            "batch.interval" | "batch_interval" => {
                let interval = parse_duration(value)?;
                self.engine.set_batch_interval(interval)?;
                Ok(Planned::Done(format!("batch.interval = {value}")))
            }
            "trigger" => {
                let trigger = brooklet_engine::Trigger::parse(value)?;
                self.engine.set_trigger(trigger)?;
                Ok(Planned::Done(format!("trigger = {trigger}")))
            }
            "ui.address" | "ui_address" => match value.trim() {
                "" | "none" | "off" => {
                    self.stop_status();
                    Ok(Planned::Done(
                        "ui.address = none (status page stopped)".into(),
                    ))
                }
                address => {
                    let bound = self.serve_status(address)?;
                    Ok(Planned::Done(format!(
                        "ui.address = {bound}: status page at http://{bound}/, metrics at /metrics"
                    )))
                }
            },
            "state.ttl" | "state_ttl" => {
                let ttl = optional_duration(value)?;
                *self.state_ttl.lock().unwrap_or_else(|e| e.into_inner()) = ttl;
                Ok(Planned::Done(format!("state.ttl = {}", show_optional(ttl))))
            }
            "checkpoint.dir" | "checkpoint_dir" => {
                let dir = match value.trim() {
                    "" | "none" | "off" => None,
                    dir => Some(std::path::PathBuf::from(dir)),
                };
                self.engine.set_checkpoint_dir(dir.clone());
                Ok(Planned::Done(format!(
                    "checkpoint.dir = {}",
                    dir.map_or("none".into(), |d| d.display().to_string())
                )))
            }
            "checkpoint.interval" | "checkpoint_interval" => {
                let text = value.trim();
                let number = text
                    .strip_suffix("batches")
                    .or_else(|| text.strip_suffix("batch"))
                    .unwrap_or(text)
                    .trim();
                let batches: u64 = number.parse().map_err(|_| {
                    Error::plan(format!(
                        "checkpoint.interval is a number of batches (such as 10), not '{value}'"
                    ))
                })?;
                self.engine.set_checkpoint_interval(batches)?;
                Ok(Planned::Done(format!(
                    "checkpoint.interval = {batches} batches"
                )))
            }
            "checkpoint.full_every" | "checkpoint_full_every" => {
                let generations: u64 = value.trim().parse().map_err(|_| {
                    Error::plan(format!(
                        "checkpoint.full_every is a number of state saves (such as 10), not '{value}'"
                    ))
                })?;
                self.engine.set_checkpoint_full_every(generations)?;
                Ok(Planned::Done(format!(
                    "checkpoint.full_every = {generations} (0: only what changed and what compaction picks)"
                )))
            }
            "parallelism" => {
                let tasks: usize = value.trim().parse().map_err(|_| {
                    Error::plan(format!(
                        "parallelism is a number of tasks (such as 4), not '{value}'"
                    ))
                })?;
                self.engine.set_parallelism(tasks)?;
                Ok(Planned::Done(format!("parallelism = {tasks}")))
            }
            "watermark.idle.timeout" | "watermark_idle_timeout" => {
                let timeout = optional_duration(value)?;
                self.engine
                    .set_watermark_idle_timeout(timeout.unwrap_or(Duration::ZERO));
                Ok(Planned::Done(format!(
                    "watermark.idle.timeout = {}",
                    show_optional(timeout)
                )))
            }
            _ if key.starts_with("s3.") => {
                let option = &key["s3.".len()..];
                self.engine.set_storage_option(option, value);
                let shown = if option.contains("secret") || option.contains("token") {
                    "(hidden)"
                } else {
                    value
                };
                Ok(Planned::Done(format!("{key} = {shown}")))
            }
            _ if key.starts_with("datafusion.") => {
                self.engine
                    .session()
                    .state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .set(key, value)?;
                Ok(Planned::Done(format!("{key} = {value}")))
            }
            _ => Err(Error::plan(format!(
                "unknown setting '{key}'; valid settings: {}, datafusion.*",
                SETTINGS.join(", ")
            ))),
        }
    }

    /// The watermark a `WATERMARK FOR c [AS c - INTERVAL …]` clause declares.
    async fn watermark_of(&self, clause: &WatermarkClause) -> Result<Watermark> {
        let column = normalize(&clause.column);
        let names = |e: &ast::Expr| match e {
            ast::Expr::Identifier(i) => normalize(i) == column,
            _ => false,
        };
        let delay = match &clause.expression {
            None => Duration::ZERO,
            Some(e) if names(e) => Duration::ZERO,
            Some(ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Minus,
                right,
            }) if names(left) => {
                crate::window::literal_interval(&self.engine, "the WATERMARK delay", right).await?
            }
            Some(other) => {
                return Err(Error::plan(format!(
                    "WATERMARK FOR {column} AS {other}: write {column} - INTERVAL '5' SECOND \
                     (the delay allowed for out-of-order rows), or leave out AS for none"
                )));
            }
        };
        Ok(Watermark::new(&column, delay))
    }

    /// The arrow schema of a column list, with DataFusion's SQL type mapping.
    async fn schema_of(
        &self,
        columns: &[ast::ColumnDef],
        metadata: &[MetadataColumn],
    ) -> Result<Schema> {
        let casts: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST(NULL AS {}) AS c{i}", c.data_type))
            .collect();
        let plan = self
            .engine
            .session()
            .state()
            .create_logical_plan(&format!("SELECT {}", casts.join(", ")))
            .await?;
        let fields: Vec<Field> = columns
            .iter()
            .zip(plan.schema().fields())
            .map(|(column, field)| {
                let not_null = column
                    .options
                    .iter()
                    .any(|o| o.option == ColumnOption::NotNull);
                let field = Field::new(
                    normalize(&column.name),
                    field.data_type().clone(),
                    !not_null,
                );
                match metadata.iter().find(|m| m.column == column.name) {
                    Some(m) => field.with_metadata(
                        [(METADATA_FIELD_KEY.to_string(), m.key.to_ascii_lowercase())].into(),
                    ),
                    None => field,
                }
            })
            .collect();
        Ok(Schema::new(fields))
    }

    async fn plan_query(
        &self,
        query: &ast::Query,
        emit: Option<Emit>,
        text: &str,
    ) -> Result<DStream> {
        let mut query = query.clone();
        let mut windows = Vec::new();
        let registered =
            crate::window::register_window_tables(&self.engine, &mut query, &mut windows).await;
        let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query))));
        let plan = match registered {
            Ok(()) => self
                .engine
                .session()
                .state()
                .statement_to_plan(statement)
                .await
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        // The plan holds the window tables it reads; the names were only for planning.
        for window in &windows {
            let _ = self.engine.session().deregister_table(window.name());
        }
        let plan = plan?;
        // Type errors (`ts > 5`, `sum(ts)`) surface now, with the statement,
        // not when the first batch runs: DataFusion's analyzer (type
        // coercion and its checks) runs again when each operator is compiled.
        let state = self.engine.session().state();
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
        let ttl = *self.state_ttl.lock().unwrap_or_else(|e| e.into_inner());
        let running = match emit {
            None | Some(Emit::OnWindowClose) => None,
            Some(Emit::Changes) => Some(EmitMode::Changes),
            Some(Emit::Complete) => Some(EmitMode::Complete),
        }
        .map(|emit| RunningSpec { emit, ttl });
        let mut joins = crate::join::JoinPlanning {
            engine: &self.engine,
            windows: &windows,
            running,
            planned_running: false,
        };
        let plan = crate::join::plan_joins(&mut joins, &plan)?;
        // A running join takes EMIT CHANGES; a GROUP BY over it keeps running too.
        let running = running.filter(|_| !joins.planned_running || aggregate_kind(&plan).is_some());
        if let Some(stream) = crate::window::plan_stateful(&self.engine, &plan, &windows, running)?
        {
            return Ok(stream.describe(text));
        }
        if emit == Some(Emit::OnWindowClose) {
            return Err(Error::plan(
                "EMIT ON WINDOW CLOSE needs a window: group by tumble(…) or hop(…), \
                 or read FROM TABLE(TUMBLE(…))",
            ));
        }
        if let Some(grouped) = aggregate_kind(&plan)
            && !self.per_batch_notice_given.swap(true, Ordering::SeqCst)
        {
            self.engine.notices().send(if grouped {
                "GROUP BY without a window is computed per batch (as DStream reduceByKey); \
                 add EMIT CHANGES for a running aggregate over all input, \
                 or group by tumble(INTERVAL '10' SECOND) for windows"
            } else {
                "an aggregate without GROUP BY or a window is computed per batch (as DStream \
                 count()): one row per batch; add EMIT CHANGES for a running total over all \
                 input, or GROUP BY tumble(INTERVAL '10' SECOND) for windows"
            });
        }
        Ok(DStream::from_plan(&self.engine, plan)?.describe(text))
    }
}

/// A setting that is a duration or off (`none`, `off`, `0` or empty).
fn optional_duration(value: &str) -> Result<Option<Duration>> {
    Ok(match value.trim().to_ascii_lowercase().as_str() {
        "" | "none" | "off" | "0" => None,
        _ => Some(parse_duration(value)?).filter(|d| !d.is_zero()),
    })
}

/// How an optional duration setting reads back.
fn show_optional(value: Option<Duration>) -> String {
    value.map_or("none".into(), format_duration)
}

/// Whether the plan aggregates: `Some(true)` with a `GROUP BY`,
/// `Some(false)` over all rows (`SELECT count(*) FROM s`), `None` not at all.
fn aggregate_kind(plan: &LogicalPlan) -> Option<bool> {
    let grouped =
        |p: &LogicalPlan| matches!(p, LogicalPlan::Aggregate(a) if !a.group_expr.is_empty());
    if crate::window::any_node(plan, grouped) {
        Some(true)
    } else if crate::window::any_node(plan, |p| matches!(p, LogicalPlan::Aggregate(_))) {
        Some(false)
    } else {
        None
    }
}
