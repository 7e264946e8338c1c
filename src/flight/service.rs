//! The Flight SQL service: a thin layer that decodes commands and hands them
//! to the runner, the metadata builders and ingest.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementSubstraitPlan, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Authenticator;
use super::error::FlightError;
use super::handle::StatementHandle;
use super::metadata;
use super::query::{FlightDataStream, Runner, batch_stream};
use crate::query::QueryEngine;

pub struct QuiverFlightSql {
    pub(super) runner: Runner,
    pub(super) auth: Arc<Authenticator>,
    pub(super) sql_info: SqlInfoData,
    pub(super) xdbc: XdbcTypeInfoData,
    /// The logger, the engine and the `event_id` ledger bulk ingest uses.
    pub(super) ingest: super::ingest::Ingest,
    pub(super) ingest_upload: super::upload::UploadLimits,
    pub(super) params_upload: super::upload::UploadLimits,
}

type Result<T, E = Status> = std::result::Result<T, E>;

/// Longest an ingest answer waits for its rows to become visible to queries.
const INGEST_VISIBLE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A FlightInfo whose one endpoint carries `ticket` and no location: clients
/// fetch from the server they asked (a bind address such as 0.0.0.0 in the
/// location would send JDBC elsewhere).
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| FlightError::Internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// A metadata command is its own ticket: DoGet decodes it again.
fn metadata_info<M: ProstMessageExt>(
    cmd: &M,
    schema: &Schema,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>> {
    flight_info(schema, cmd.as_any().encode_to_vec(), request.into_inner())
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            FlightError::Internal(format!("encoding the schema: {e}"))
        })?;
    Ok(bytes)
}

fn read_only(what: &str) -> Status {
    FlightError::Refused(format!(
        "{what}: this server is read-only over SQL; add events with bulk ingest"
    ))
    .into()
}

/// An empty result in the spec's schema: for key commands, which have no
/// enforced keys to report.
fn no_rows(schema: arrow::datatypes::SchemaRef) -> Result<Response<FlightDataStream>> {
    Ok(Response::new(batch_stream(RecordBatch::new_empty(schema))))
}

impl QuiverFlightSql {
    fn engine(&self) -> &QueryEngine {
        self.runner.engine()
    }

    async fn stream(&self, handle: &StatementHandle) -> Result<Response<FlightDataStream>> {
        Ok(Response::new(self.runner.stream(handle).await?))
    }
}

#[tonic::async_trait]
impl FlightSqlService for QuiverFlightSql {
    type FlightService = QuiverFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>>
    {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = self.auth.login(header)?;
        let bearer: MetadataValue<_> = format!("Bearer {token}")
            .parse()
            .map_err(|_| FlightError::Internal("token is not a header value".into()))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        if query.transaction_id.is_some() {
            return Err(FlightError::Unsupported("transactions are not supported".into()).into());
        }
        let handle = StatementHandle::new(query.query)?;
        let schema = self.runner.schema(&handle).await?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode()?,
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        self.stream(&handle).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let schema = self.runner.schema(&handle).await?;
        flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        self.stream(&handle).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult> {
        if query.transaction_id.is_some() {
            return Err(FlightError::Unsupported("transactions are not supported".into()).into());
        }
        let handle = StatementHandle::new(query.query)?;
        let df = self.runner.plan(&handle).await?;
        let parameters = QueryEngine::parameter_schema(&df).map_err(FlightError::Plan)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode()?,
            dataset_schema: schema_bytes(df.schema().as_arrow())?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<()> {
        // Handles are stateless: there is nothing to free.
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult> {
        let mut handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let upload = super::upload::batches(request.into_inner(), self.params_upload);
        let batches: Vec<RecordBatch> = upload
            .try_collect()
            .await
            .map_err(|e| super::upload::decode_error("parameters", e))?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        handle.params = match rows {
            0 => None,
            1 => batches.into_iter().find(|b| b.num_rows() == 1),
            n => {
                return Err(FlightError::BadRequest(format!(
                    "parameters: a query binds one row of values, got {n}"
                ))
                .into());
            }
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()?),
        })
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64> {
        Err(read_only("update statements"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64> {
        Err(read_only("update statements"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64> {
        Err(FlightError::Unsupported("Substrait plans are not supported".into()).into())
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64> {
        let table = super::ingest::target_table(&cmd)?;
        let upload = super::upload::batches(request.into_inner(), self.ingest_upload);
        let done = super::ingest::ingest(&self.ingest, table, upload).await?;
        if done.already_stored > 0 {
            tracing::info!(
                table = table.name(),
                rows = done.rows,
                already_stored = done.already_stored,
                "ingest: rows already stored were counted, not stored again"
            );
        }
        // Durable now; answering once the rows are also visible gives the
        // client read-your-writes. Past the wait, durability is the answer.
        if !self.engine().wait_visible(INGEST_VISIBLE_WAIT).await {
            tracing::warn!(
                table = table.name(),
                "ingested rows are durable but not yet visible"
            );
        }
        Ok(i64::try_from(done.rows).unwrap_or(i64::MAX))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let batch = metadata::catalogs(self.engine().context(), query)?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let batch = metadata::schemas(self.engine().context(), query)?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let batch = metadata::tables(self.engine().context(), query).await?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        Ok(Response::new(batch_stream(metadata::table_types()?)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        metadata_info(&query, &self.sql_info.schema(), request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let batch = self
            .sql_info
            .record_batch(query.info)
            .map_err(|e| FlightError::Internal(format!("SqlInfo: {e}")))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        metadata_info(&query, &metadata::primary_keys_schema(), request)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        // Only keys something enforces are reported (the SQLite tables'):
        // event tables have none, and unenforced ones would let tools trust
        // uniqueness that nothing guarantees.
        let batch = metadata::primary_keys(self.engine().context(), &query).await?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        metadata_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        no_rows(metadata::foreign_keys_schema())
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        metadata_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        no_rows(metadata::foreign_keys_schema())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        metadata_info(&query, &metadata::foreign_keys_schema(), request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        no_rows(metadata::foreign_keys_schema())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>> {
        metadata_info(&query, &self.xdbc.schema(), request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        let batch = self
            .xdbc
            .record_batch(query.data_type)
            .map_err(|e| FlightError::Internal(format!("XdbcTypeInfo: {e}")))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>> {
        Err(FlightError::Unsupported(format!("DoGet: unknown ticket {}", message.type_url)).into())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
