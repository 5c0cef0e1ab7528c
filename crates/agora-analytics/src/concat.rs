//! [`ConcatExec`]: its inputs' rows one input after the other, in one partition. A job's query
//! reads a table's segments and then its tail this way, so that every node feeds the same rows
//! in the same order to the same plan, whatever its threads (a union would interleave them as
//! they come).

use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use std::sync::Arc;

/// Every partition of every input, in order, as one partition.
#[derive(Debug)]
pub(crate) struct ConcatExec {
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    schema: arrow::datatypes::SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ConcatExec {
    pub(crate) fn new(
        schema: arrow::datatypes::SchemaRef,
        inputs: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ConcatExec {
            inputs,
            schema,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for ConcatExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConcatExec: inputs={}", self.inputs.len())
    }
}

impl ExecutionPlan for ConcatExec {
    fn name(&self) -> &str {
        "ConcatExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.iter().collect()
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ConcatExec::new(self.schema.clone(), children)))
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.inputs.len()]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false; self.inputs.len()]
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "ConcatExec has one partition, not {partition}"
            )));
        }
        // Each input's partitions, opened only when the one before is done.
        let parts: Vec<(Arc<dyn ExecutionPlan>, usize)> = self
            .inputs
            .iter()
            .flat_map(|p| {
                let n = p.properties().partitioning.partition_count();
                (0..n).map(move |i| (p.clone(), i))
            })
            .collect();
        let batches = stream::iter(parts)
            .map(move |(plan, i)| plan.execute(i, context.clone()))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            rebatch(Box::pin(batches), BATCH_ROWS),
        )))
    }
}

/// Rows per batch out of a [`ConcatExec`] (the last may hold fewer).
pub(crate) const BATCH_ROWS: usize = 8192;

type Batches =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<RecordBatch>> + Send + 'static>>;

struct Rebatch {
    input: Batches,
    buffer: std::collections::VecDeque<RecordBatch>,
    rows: usize,
    done: bool,
}

/// `input`'s rows in batches of exactly `n` rows (the last may hold fewer), however they were
/// cut before.
fn rebatch(input: Batches, n: usize) -> impl futures_util::Stream<Item = Result<RecordBatch>> {
    let state = Rebatch {
        input,
        buffer: std::collections::VecDeque::new(),
        rows: 0,
        done: false,
    };
    stream::unfold(state, move |mut st| async move {
        loop {
            if st.rows >= n || (st.done && st.rows > 0) {
                return match take(&mut st, n) {
                    Ok(batch) => Some((Ok(batch), st)),
                    Err(e) => {
                        st.done = true;
                        st.buffer.clear();
                        st.rows = 0;
                        Some((Err(e), st))
                    }
                };
            }
            if st.done {
                return None;
            }
            match st.input.next().await {
                Some(Ok(b)) => {
                    if b.num_rows() > 0 {
                        st.rows += b.num_rows();
                        st.buffer.push_back(b);
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.buffer.clear();
                    st.rows = 0;
                    return Some((Err(e), st));
                }
                None => st.done = true,
            }
        }
    })
}

/// The first `n` buffered rows (all of them if fewer), as one batch.
fn take(st: &mut Rebatch, n: usize) -> Result<RecordBatch> {
    let want = n.min(st.rows);
    let mut parts = Vec::new();
    let mut got = 0;
    while got < want {
        let b = st.buffer.pop_front().expect("buffered rows are in batches");
        let need = want - got;
        if b.num_rows() > need {
            parts.push(b.slice(0, need));
            st.buffer.push_front(b.slice(need, b.num_rows() - need));
            got += need;
        } else {
            got += b.num_rows();
            parts.push(b);
        }
    }
    st.rows -= want;
    // Always a copy of just these rows: a slice would report its parent's buffers, whose sizes
    // differ between nodes (and sorts and memory caps count bytes).
    let schema = parts[0].schema();
    let joined = arrow::compute::concat_batches(&schema, &parts)?;
    if joined.num_columns() == 0 {
        // Rows without columns (a `count(*)`): nothing to copy.
        return Ok(joined);
    }
    let indices = arrow::array::UInt32Array::from_iter_values(0..joined.num_rows() as u32);
    Ok(arrow::compute::take_record_batch(&joined, &indices)?)
}
