//! The logical codec Quiver's client, scheduler and executors share: Ballista's
//! own, plus [`LakeTable`], which travels as its table's name and is rebuilt
//! on the scheduler over that process's lake.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::sql::TableReference;
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use super::lake_table::{DerivedTable, LakeTable};
use crate::event::Table;

/// Marks an encoded [`LakeTable`]; what follows is the table's name.
const LAKE_TABLE: &[u8] = b"quiver.lake.v1:";
/// Marks an encoded [`DerivedTable`]; what follows is its name.
const DERIVED_TABLE: &[u8] = b"quiver.derived.v1:";

#[derive(Debug)]
pub struct QuiverCodec {
    inner: BallistaLogicalExtensionCodec,
    /// Where decoded lake tables read: the scheduler's lake root.
    lake: Option<PathBuf>,
}

impl QuiverCodec {
    /// A codec whose decoded lake tables read the lake at `lake` (`None`: a
    /// client, which only encodes).
    pub fn new(lake: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            inner: BallistaLogicalExtensionCodec::default(),
            lake,
        })
    }
}

fn unknown(name: &[u8]) -> DataFusionError {
    DataFusionError::Plan(format!(
        "the plan names a lake table this Quiver does not know: {:?}",
        String::from_utf8_lossy(name)
    ))
}

impl LogicalExtensionCodec for QuiverCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(name) = buf.strip_prefix(DERIVED_TABLE) {
            let Some(table) = DerivedTable::all()
                .into_iter()
                .find(|t| t.name().as_bytes() == name)
            else {
                return Err(unknown(name));
            };
            return match &self.lake {
                Some(root) => table.over(root),
                None => Ok(Arc::new(table)),
            };
        }
        let Some(name) = buf.strip_prefix(LAKE_TABLE) else {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let table = std::str::from_utf8(name)
            .ok()
            .and_then(Table::from_name)
            .ok_or_else(|| unknown(name))?;
        Ok(Arc::new(LakeTable::new(table, self.lake.clone())))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let any: &dyn std::any::Any = node.as_ref();
        if let Some(lake) = any.downcast_ref::<LakeTable>() {
            buf.extend_from_slice(LAKE_TABLE);
            buf.extend_from_slice(lake.table().name().as_bytes());
            return Ok(());
        }
        if let Some(derived) = any.downcast_ref::<DerivedTable>() {
            buf.extend_from_slice(DERIVED_TABLE);
            buf.extend_from_slice(derived.name().as_bytes());
            return Ok(());
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lake_table_travels_as_its_name_and_hostile_names_are_refused() {
        let ctx = TaskContext::default();
        let schema = crate::query::events::events_schema(Table::Signal);
        let client = QuiverCodec::new(None);
        let scheduler = QuiverCodec::new(Some(PathBuf::from("/lake")));
        let mut buf = Vec::new();
        let table: Arc<dyn TableProvider> = Arc::new(LakeTable::new(Table::Signal, None));
        client
            .try_encode_table_provider(&TableReference::bare("signals"), table, &mut buf)
            .unwrap();
        assert_eq!(buf, b"quiver.lake.v1:signals");
        let decoded = scheduler
            .try_decode_table_provider(&buf, &TableReference::bare("x"), schema.clone(), &ctx)
            .unwrap();
        let any: &dyn std::any::Any = decoded.as_ref();
        assert_eq!(
            any.downcast_ref::<LakeTable>().unwrap().table(),
            Table::Signal
        );
        for hostile in [
            &b"quiver.lake.v1:../../etc/passwd"[..],
            b"quiver.lake.v1:",
            b"quiver.derived.v1:../metric_values",
            b"quiver.lake.v1:\xff\xfe",
        ] {
            let err = scheduler
                .try_decode_table_provider(
                    hostile,
                    &TableReference::bare("x"),
                    schema.clone(),
                    &ctx,
                )
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("lake table this Quiver does not know"),
                "{err}"
            );
        }
    }
}
