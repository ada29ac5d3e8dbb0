//! Static tables: the datasets a stream is joined with (Spark's
//! `transform(rdd => rdd.join(table))`, Flink's lookup of a dimension
//! table).
//!
//! A table declared with `CREATE EXTERNAL TABLE` (csv, json or parquet
//! files, DataFusion's statement) becomes a [`StaticTable`]: its rows are
//! read once, when it is declared, and held in memory; a per-batch plan
//! that joins with it reads those rows, so the files are not parsed again
//! every batch. **Reload rule**: before each batch of a query that reads
//! the table, the table's files are checked (their names, sizes and
//! modification times — one `stat` per file); if they changed, the table
//! is read again and that batch and the next ones join with the new rows.
//! A reload that fails (a half-written file, a parse error) keeps the rows
//! read before and says so on the notices; the next batch tries again.
//!
//! Any other DataFusion table provider registered from Rust
//! ([`crate::Engine::register_table`]) is scanned by DataFusion on every
//! batch, as it would scan it in a batch query: a `MemTable` the program
//! updates is seen at the next batch.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::TableType;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use crate::error::{Error, Result};
use crate::notice::Notices;
use crate::sync::lock;

/// A table read from files once and re-read when they change (see the
/// module docs).
pub struct StaticTable {
    name: String,
    description: String,
    provider: Arc<dyn TableProvider>,
    location: Option<PathBuf>,
    notices: Notices,
    loaded: Mutex<Loaded>,
}

/// What a table holds now.
#[derive(Clone, Default)]
struct Loaded {
    batches: Arc<Vec<RecordBatch>>,
    files: Vec<FileStamp>,
    loads: u64,
    failed: Option<String>,
}

/// What a file looked like when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

/// A static table, as the engine describes it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// What it reads (format and location), or the provider's kind.
    pub description: String,
    /// Its schema.
    pub schema: SchemaRef,
    /// Rows held now (for tables read from files).
    pub rows: Option<usize>,
    /// How many times it has been read (1 when never reloaded).
    pub loads: u64,
    /// Whether its files are checked for changes at batch boundaries.
    pub reloads_on_change: bool,
    /// The last reload's error, while the previous rows are kept.
    pub failed: Option<String>,
}

impl fmt::Debug for StaticTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTable")
            .field("name", &self.name)
            .field("location", &self.location)
            .finish()
    }
}

impl StaticTable {
    /// A table named `name` that holds the rows of `provider`, which reads
    /// the files at `location` (watched for changes when it is a local
    /// path); read now.
    pub(crate) async fn load(
        name: &str,
        description: String,
        provider: Arc<dyn TableProvider>,
        location: Option<PathBuf>,
        notices: Notices,
        session: &SessionState,
    ) -> Result<Arc<Self>> {
        let table = StaticTable {
            name: name.to_string(),
            description,
            provider,
            location,
            notices,
            loaded: Mutex::default(),
        };
        let files = table.stamps()?;
        let batches = table.read(session).await?;
        *lock(&table.loaded) = Loaded {
            batches: Arc::new(batches),
            files,
            loads: 1,
            failed: None,
        };
        Ok(Arc::new(table))
    }

    /// Its description for `\d`.
    pub(crate) fn info(&self) -> TableInfo {
        let loaded = lock(&self.loaded).clone();
        TableInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            schema: self.provider.schema(),
            rows: Some(loaded.batches.iter().map(|b| b.num_rows()).sum()),
            loads: loaded.loads,
            reloads_on_change: self.location.is_some(),
            failed: loaded.failed,
        }
    }

    /// Reads every row through the provider.
    async fn read(&self, session: &SessionState) -> Result<Vec<RecordBatch>> {
        let plan = self.provider.scan(session, None, &[], None).await?;
        Ok(datafusion::physical_plan::collect(plan, session.task_ctx()).await?)
    }

    /// The files the table reads now, sorted by path.
    fn stamps(&self) -> Result<Vec<FileStamp>> {
        let Some(location) = &self.location else {
            return Ok(Vec::new());
        };
        let stamp = |path: &Path| -> std::io::Result<FileStamp> {
            let meta = std::fs::metadata(path)?;
            Ok(FileStamp {
                path: path.to_path_buf(),
                len: meta.len(),
                modified: meta.modified().ok(),
            })
        };
        let io = |e: std::io::Error| {
            Error::Config(format!(
                "table '{}': cannot read {}: {e}",
                self.name,
                location.display()
            ))
        };
        if !location.is_dir() {
            return Ok(vec![stamp(location).map_err(io)?]);
        }
        let mut stamps = Vec::new();
        for entry in std::fs::read_dir(location).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.is_file() {
                stamps.push(stamp(&path).map_err(io)?);
            }
        }
        stamps.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(stamps)
    }

    /// Re-reads the table if its files changed since it was read (see the
    /// module docs); a failed read keeps the rows held and is reported.
    pub(crate) async fn refresh(&self, session: &SessionState) {
        let held = lock(&self.loaded).clone();
        let stamps = match self.stamps() {
            Ok(stamps) if stamps == held.files => return,
            Ok(stamps) => Ok(stamps),
            Err(e) => Err(e),
        };
        let read = match stamps {
            Ok(stamps) => self.read(session).await.map(|rows| (stamps, rows)),
            Err(e) => Err(e),
        };
        let mut loaded = lock(&self.loaded);
        match read {
            Ok((files, batches)) => {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                loaded.batches = Arc::new(batches);
                loaded.files = files;
                loaded.loads += 1;
                loaded.failed = None;
                self.notices
                    .send(format!("table '{}' reloaded: {rows} rows", self.name));
            }
            Err(e) => {
                let message = e.to_string();
                if loaded.failed.as_ref() != Some(&message) {
                    self.notices.send(format!(
                        "table '{}': reload failed, joining with the rows read before: {message}",
                        self.name
                    ));
                }
                loaded.failed = Some(message);
            }
        }
    }

    fn batches(&self) -> Arc<Vec<RecordBatch>> {
        Arc::clone(&lock(&self.loaded).batches)
    }
}

/// A static table as a table in DataFusion plans: what queries scan.
#[derive(Debug, Clone)]
pub(crate) struct StaticTableProvider(pub(crate) Arc<StaticTable>);

#[async_trait]
impl TableProvider for StaticTableProvider {
    fn schema(&self) -> SchemaRef {
        self.0.provider.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema,
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(StaticScanExec {
            table: Arc::clone(&self.0),
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// The leaf of a per-batch plan that reads a static table's rows.
#[derive(Debug)]
pub(crate) struct StaticScanExec {
    table: Arc<StaticTable>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for StaticScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StaticScanExec: table={}", self.table.name)
    }
}

impl ExecutionPlan for StaticScanExec {
    fn name(&self) -> &str {
        "StaticScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let batches = self
            .table
            .batches()
            .iter()
            .map(|b| match &self.projection {
                Some(p) => b.project(p),
                None => Ok(b.clone()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let schema = self.properties.eq_properties.schema().clone();
        Ok(Box::pin(MemoryStream::try_new(batches, schema, None)?))
    }
}

/// The static tables a compiled plan reads.
pub(crate) fn static_tables(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<Arc<StaticTable>>> {
    let mut tables: Vec<Arc<StaticTable>> = Vec::new();
    plan.apply(|p| {
        if let Some(scan) = p.downcast_ref::<StaticScanExec>()
            && !tables.iter().any(|t| Arc::ptr_eq(t, &scan.table))
        {
            tables.push(Arc::clone(&scan.table));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(tables)
}
