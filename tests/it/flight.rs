//! The Flight SQL server end to end, on port 0, with arrow-flight's own clients.

use std::time::Duration;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandStatementIngest, CommandStatementQuery, ProstMessageExt, SqlInfo,
};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, HandshakeRequest, Ticket,
};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use quiver::event::{Event, GateDecision, Table};
use quiver::flight::{Credentials, FlightConfig, FlightServer, QueryLimits, ServeError};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::{Harness, fast_logger_config, sim_events, small_store_config};

const USER: &str = "quant";
const PASSWORD: &str = "correct horse";

struct Served {
    // Dropped first (fields drop in order): see `AbortServer`.
    _abort: AbortServer,
    harness: Harness,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(limits: QueryLimits) -> Self {
        Self::start_with(FlightConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            credentials: Some(Credentials {
                username: USER.into(),
                password: PASSWORD.into(),
            }),
            limits,
            ..FlightConfig::default()
        })
        .await
    }

    async fn start_with(config: FlightConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let harness = Harness::open(small_store_config(dir.path()), fast_logger_config());
        let server = FlightServer::bind(&config, harness.engine.clone(), harness.logger.clone())
            .await
            .unwrap();
        let port = server.local_addr().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Served {
            _abort: AbortServer(task.abort_handle()),
            harness,
            port,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn sql_client(&self) -> FlightSqlServiceClient<Channel> {
        let mut client = FlightSqlServiceClient::new(self.channel().await);
        client.handshake(USER, PASSWORD).await.unwrap();
        client
    }

    async fn raw_client(&self) -> FlightServiceClient<Channel> {
        FlightServiceClient::new(self.channel().await)
    }

    /// A bearer token from a raw handshake.
    async fn token(&self) -> String {
        let mut client = self.raw_client().await;
        let mut request = Request::new(futures::stream::iter([HandshakeRequest::default()]));
        request
            .metadata_mut()
            .insert("authorization", basic(USER, PASSWORD).parse().unwrap());
        let response = client.handshake(request).await.unwrap();
        let header = response
            .metadata()
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        header.strip_prefix("Bearer ").unwrap().to_string()
    }

    async fn log_demo_events(&self, cycles: usize) -> Vec<Event> {
        let events = sim_events(11, cycles);
        // Through the ingest lane, which waits instead of shedding: a loaded
        // machine cannot make the test lose a DEBUG event.
        let stored = self.harness.logger.submit(events.clone()).await.unwrap();
        assert_eq!(stored, events.len());
        self.caught_up();
        events
    }

    /// Gate decisions stored once everything queued is durable and visible.
    async fn stored_gate_decisions(&self) -> i64 {
        self.harness.logger.flush().await.unwrap();
        self.caught_up();
        self.harness
            .scalar("SELECT count(*) FROM gate_decisions")
            .await
    }

    /// Durable (in the WAL) is not yet visible: the hot store applies the WAL
    /// a moment later. Tests that compare counts wait for it.
    fn caught_up(&self) {
        assert!(
            self.harness
                .store
                .wait_hot_caught_up(Duration::from_secs(60))
        );
    }

    /// Stops the server (graceful: running calls finish), then closes the
    /// pipeline. If the server does not stop, it is aborted before the test
    /// fails, so its engine and logger clones cannot keep the store open.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(30), self.task).await {
            Ok(result) => result.unwrap().unwrap(),
            Err(_) => {
                abort.abort();
                panic!("the server did not stop within 30 s");
            }
        }
        self.harness.close();
    }
}

/// A failing test drops a running server: abort it first, or its engine and
/// logger clones would keep the store open while the harness closes it.
struct AbortServer(tokio::task::AbortHandle);

impl Drop for AbortServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// GetFlightInfo + DoGet of one SQL statement with the raw client, keeping
/// the gRPC status of a failure.
async fn run_sql(
    client: &mut FlightServiceClient<Channel>,
    token: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, Status> {
    let command = CommandStatementQuery {
        query: sql.into(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let info = client
        .get_flight_info(with_token(descriptor, token))
        .await?
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    assert!(
        info.endpoint[0].location.is_empty(),
        "endpoints carry no location"
    );
    let stream = client.do_get(with_token(ticket, token)).await?.into_inner();
    FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(|s| arrow_flight::error::FlightError::Tonic(Box::new(s))),
    )
    .try_collect()
    .await
    .map_err(|e| match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    })
}

fn scalar(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).unwrap();
    let col = arrow::compute::cast(batch.column(0), &DataType::Int64).unwrap();
    col.as_primitive::<Int64Type>().value(0)
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    out
}

fn field_names(schema: &arrow::datatypes::Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_results_follow_the_spec_schemas() {
    let served = Served::start(QueryLimits::default()).await;
    let mut client = served.sql_client().await;
    let spec: Vec<(&str, arrow_flight::FlightInfo, Vec<&str>)> = vec![
        (
            "catalogs",
            client.get_catalogs().await.unwrap(),
            vec!["catalog_name"],
        ),
        (
            "schemas",
            client
                .get_db_schemas(CommandGetDbSchemas::default())
                .await
                .unwrap(),
            vec!["catalog_name", "db_schema_name"],
        ),
        (
            "tables",
            client
                .get_tables(CommandGetTables {
                    include_schema: true,
                    ..Default::default()
                })
                .await
                .unwrap(),
            vec![
                "catalog_name",
                "db_schema_name",
                "table_name",
                "table_type",
                "table_schema",
            ],
        ),
        (
            "table types",
            client.get_table_types().await.unwrap(),
            vec!["table_type"],
        ),
        (
            "sql info",
            client
                .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::SqlKeywords])
                .await
                .unwrap(),
            vec!["info_name", "value"],
        ),
        (
            "primary keys",
            client
                .get_primary_keys(CommandGetPrimaryKeys {
                    table: "trades".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
            vec![
                "catalog_name",
                "db_schema_name",
                "table_name",
                "column_name",
                "key_name",
                "key_sequence",
            ],
        ),
    ];
    let foreign_key_columns = vec![
        "pk_catalog_name",
        "pk_db_schema_name",
        "pk_table_name",
        "pk_column_name",
        "fk_catalog_name",
        "fk_db_schema_name",
        "fk_table_name",
        "fk_column_name",
        "key_sequence",
        "fk_key_name",
        "pk_key_name",
        "update_rule",
        "delete_rule",
    ];
    let keyed = vec![
        (
            "exported keys",
            client
                .get_exported_keys(CommandGetExportedKeys {
                    table: "trades".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        ),
        (
            "imported keys",
            client
                .get_imported_keys(CommandGetImportedKeys {
                    table: "trades".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        ),
        (
            "cross reference",
            client
                .get_cross_reference(CommandGetCrossReference {
                    pk_table: "signals".into(),
                    fk_table: "trades".into(),
                    ..Default::default()
                })
                .await
                .unwrap(),
        ),
    ];
    let xdbc = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let mut results = std::collections::HashMap::new();
    for (name, info, columns) in spec.into_iter().chain(
        keyed
            .into_iter()
            .map(|(n, i)| (n, i, foreign_key_columns.clone())),
    ) {
        let announced = info.clone().try_decode_schema().unwrap();
        assert_eq!(field_names(&announced), columns, "{name}");
        let batches = fetch(&mut client, info).await;
        for b in &batches {
            assert_eq!(field_names(&b.schema()), columns, "{name}: DoGet schema");
        }
        results.insert(name, batches);
    }
    let xdbc_batches = fetch(&mut client, xdbc).await;
    let xdbc_names = xdbc_batches[0]
        .column_by_name("type_name")
        .unwrap()
        .as_string::<i32>();
    assert!(xdbc_names.iter().any(|t| t == Some("TIMESTAMP")));

    let catalogs = &results["catalogs"][0];
    assert_eq!(catalogs.column(0).as_string::<i32>().value(0), "quiver");
    let tables =
        arrow::compute::concat_batches(&results["tables"][0].schema(), &results["tables"]).unwrap();
    let names: Vec<(String, String, String)> = (0..tables.num_rows())
        .map(|i| {
            (
                tables.column(1).as_string::<i32>().value(i).to_string(),
                tables.column(2).as_string::<i32>().value(i).to_string(),
                tables.column(3).as_string::<i32>().value(i).to_string(),
            )
        })
        .collect();
    for table in Table::ALL {
        assert!(names.contains(&("events".into(), table.name().into(), "TABLE".into())));
    }
    assert!(
        names
            .iter()
            .any(|(s, t, _)| s == "system" && t == "kill_switch")
    );
    // The column list DBeaver shows comes from table_schema, with descriptions.
    let row = names
        .iter()
        .position(|(s, t, _)| s == "events" && t == "trades")
        .unwrap();
    let bytes = tables.column(4).as_binary::<i32>().value(row);
    let schema: arrow::datatypes::Schema =
        arrow_flight::IpcMessage(bytes::Bytes::copy_from_slice(bytes))
            .try_into()
            .unwrap();
    let pnl = schema.field_with_name("pnl_bps").unwrap();
    assert_eq!(pnl.metadata()["ARROW:FLIGHT:SQL:TYPE_NAME"], "DOUBLE");
    assert!(pnl.metadata()["ARROW:FLIGHT:SQL:REMARKS"].contains("basis points"));
    assert_eq!(
        results["primary keys"]
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        0
    );

    // The journal's keys are enforced by SQLite, so they are reported.
    for (table, expected) in [
        ("trades", vec![("trade_key", 1)]),
        ("trade_features", vec![("trade_key", 1), ("feature", 2)]),
        ("v_trades", vec![]),
    ] {
        let info = client
            .get_primary_keys(CommandGetPrimaryKeys {
                db_schema: Some("journal".into()),
                table: table.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let batches = fetch(&mut client, info).await;
        let mut got = Vec::new();
        for b in &batches {
            let cols = b.column(3).as_string::<i32>();
            let seqs = b.column(5).as_primitive::<arrow::datatypes::Int32Type>();
            for i in 0..b.num_rows() {
                assert_eq!(b.column(1).as_string::<i32>().value(i), "journal");
                assert_eq!(b.column(2).as_string::<i32>().value(i), table);
                got.push((cols.value(i).to_string(), seqs.value(i)));
            }
        }
        let expected: Vec<(String, i32)> = expected
            .into_iter()
            .map(|(c, s)| (c.to_string(), s))
            .collect();
        assert_eq!(got, expected, "{table}");
    }

    let info = &results["sql info"][0];
    assert_eq!(info.num_rows(), 2);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_and_prepared_statements_answer_like_the_engine() {
    let served = Served::start(QueryLimits::default()).await;
    served.log_demo_events(400).await;
    let mut client = served.sql_client().await;
    let sql = "SELECT count(*) FROM trades WHERE kind = 'CLOSE'";
    let info = client.execute(sql.into(), None).await.unwrap();
    let over_flight = scalar(&fetch(&mut client, info).await);
    let local = served.harness.scalar(sql).await;
    assert!(local > 0);
    assert_eq!(over_flight, local);

    // `?` placeholders, numbered in order, bound through DoPut.
    let mut prepared = client
        .prepare(
            "SELECT count(*) FROM trades WHERE kind = ? AND symbol = ?".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(prepared.parameter_schema().unwrap().fields().len(), 2);
    assert_eq!(prepared.dataset_schema().unwrap().fields().len(), 1);
    let params = RecordBatch::try_from_iter([
        (
            "kind",
            std::sync::Arc::new(StringArray::from(vec!["CLOSE"])) as _,
        ),
        (
            "symbol",
            std::sync::Arc::new(StringArray::from(vec!["BTC-USD"])) as _,
        ),
    ])
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let info = prepared.execute().await.unwrap();
    let bound = scalar(&fetch(&mut client, info).await);
    let expected = served
        .harness
        .scalar("SELECT count(*) FROM trades WHERE kind = 'CLOSE' AND symbol = 'BTC-USD'")
        .await;
    assert_eq!(bound, expected);
    prepared.close().await.unwrap();

    // Writing SQL is refused as a prepared statement too.
    let err = client
        .prepare("DELETE FROM trades".into(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    served.stop().await;
}

/// Quiver's own client binds values as parameters of a prepared statement:
/// a value full of SQL comes back as the value, and typed values (a date, a
/// text for a view-typed column) answer like the engine's own binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_binds_values_and_never_pastes_them() {
    use datafusion::common::ScalarValue;
    use quiver::query::param;
    let served = Served::start(QueryLimits::default()).await;
    served.log_demo_events(400).await;
    let url = format!("grpc://127.0.0.1:{}", served.port);
    let credentials = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let mut client = quiver::flight::client::Client::connect(&url, Some(&credentials), None)
        .await
        .unwrap();
    let hostile = "x' OR '1'='1'; DROP TABLE trades; --";
    let echoed = client
        .query_with("SELECT $1 AS v", vec![param::text(hostile)])
        .await
        .unwrap();
    let v = echoed[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .map(|a| a.value(0).to_string())
        .unwrap_or_else(|| {
            arrow::util::display::array_value_to_string(echoed[0].column(0), 0).unwrap()
        });
    assert_eq!(v, hostile);
    let none = client
        .query_with(
            "SELECT count(*) FROM trades WHERE symbol = $1",
            vec![param::text(hostile)],
        )
        .await
        .unwrap();
    assert_eq!(scalar(&none), 0);

    let sql = "SELECT count(*) FROM trades WHERE kind = $1 AND symbol = $2 AND date <= $3";
    let params = || {
        vec![
            param::text("CLOSE"),
            param::text("BTC-USD"),
            param::date(chrono::Utc::now().date_naive()),
        ]
    };
    let remote = scalar(&client.query_with(sql, params()).await.unwrap());
    let local = scalar(&served.harness.query_with(sql, params()).await);
    let pasted = served
        .harness
        .scalar("SELECT count(*) FROM trades WHERE kind = 'CLOSE' AND symbol = 'BTC-USD'")
        .await;
    assert!(pasted > 0);
    assert_eq!((remote, local), (pasted, pasted));
    // A wrong number of values is a clear error.
    let err = client
        .query_with(sql, vec![ScalarValue::Int64(Some(1))])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("placeholder with id $2"), "{err}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_but_handshake_needs_the_token() {
    let served = Served::start(QueryLimits::default()).await;
    let mut raw = served.raw_client().await;
    let descriptor = FlightDescriptor::new_cmd(CommandGetCatalogs {}.as_any().encode_to_vec());
    let ticket = Ticket::new(CommandGetCatalogs {}.as_any().encode_to_vec());
    let mut calls: Vec<(&str, Status)> = Vec::new();
    calls.push((
        "GetFlightInfo",
        raw.get_flight_info(descriptor.clone()).await.unwrap_err(),
    ));
    calls.push((
        "GetSchema",
        raw.get_schema(descriptor.clone()).await.unwrap_err(),
    ));
    calls.push((
        "PollFlightInfo",
        raw.poll_flight_info(descriptor.clone()).await.unwrap_err(),
    ));
    calls.push(("DoGet", raw.do_get(ticket.clone()).await.unwrap_err()));
    calls.push((
        "DoPut",
        raw.do_put(futures::stream::iter([FlightData::default()]))
            .await
            .unwrap_err(),
    ));
    calls.push((
        "DoExchange",
        raw.do_exchange(futures::stream::iter([FlightData::default()]))
            .await
            .unwrap_err(),
    ));
    calls.push((
        "DoAction",
        raw.do_action(Action::new("CreatePreparedStatement", ""))
            .await
            .unwrap_err(),
    ));
    calls.push(("ListActions", raw.list_actions(Empty {}).await.unwrap_err()));
    calls.push((
        "ListFlights",
        raw.list_flights(Criteria::default()).await.unwrap_err(),
    ));
    for (name, status) in &calls {
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
    }
    // A wrong password fails the handshake; a made-up token fails the call.
    let mut request = Request::new(futures::stream::iter([HandshakeRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", basic(USER, "wrong").parse().unwrap());
    assert_eq!(
        raw.handshake(request).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let err = raw
        .get_flight_info(with_token(descriptor.clone(), "forged"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // The token from the response header opens the door.
    let token = served.token().await;
    raw.get_flight_info(with_token(descriptor, &token))
        .await
        .unwrap();
    raw.do_get(with_token(ticket, &token)).await.unwrap();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_ddl_and_files_are_refused() {
    let served = Served::start(QueryLimits::default()).await;
    let token = served.token().await;
    let mut raw = served.raw_client().await;
    for (sql, code) in [
        ("DROP TABLE signals", Code::PermissionDenied),
        ("CREATE TABLE x AS SELECT 1", Code::PermissionDenied),
        (
            "INSERT INTO signals SELECT * FROM signals",
            Code::PermissionDenied,
        ),
        ("DELETE FROM trades", Code::PermissionDenied),
        ("COPY signals TO '/tmp/x.csv'", Code::PermissionDenied),
        (
            "SET datafusion.execution.batch_size = 1",
            Code::PermissionDenied,
        ),
        (
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
            Code::PermissionDenied,
        ),
        ("SELECT * FROM '/etc/passwd'", Code::InvalidArgument),
        (
            "SELECT * FROM read_csv('/etc/passwd')",
            Code::InvalidArgument,
        ),
        ("SELECT 1; SELECT 2", Code::InvalidArgument),
        ("SELEC 1", Code::InvalidArgument),
        ("SELECT nope FROM signals", Code::InvalidArgument),
    ] {
        let status = run_sql(&mut raw, &token, sql).await.unwrap_err();
        assert_eq!(status.code(), code, "{sql}: {status:?}");
        assert!(status.message().len() < 400, "{sql}: message too long");
    }
    let mut client = served.sql_client().await;
    let err = client
        .execute_update("DELETE FROM trades".into(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    served.stop().await;
}

fn gate_decisions(events: &[Event]) -> Vec<GateDecision> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::GateDecision(g) => Some(g.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_refuses_its_batch_and_the_answer_comes_once_durable() {
    let served = Served::start(QueryLimits::default()).await;
    let mut client = served.sql_client().await;
    let rows = gate_decisions(&sim_events(5, 200));
    let batch = GateDecision::to_batch(&rows).unwrap();
    let ingest = |batch: RecordBatch| {
        let cmd = CommandStatementIngest {
            table: "gate_decisions".into(),
            ..Default::default()
        };
        (cmd, futures::stream::iter(vec![Ok(batch)]))
    };
    let (cmd, stream) = ingest(batch.clone());
    let count = client.execute_ingest(cmd, stream).await.unwrap();
    assert_eq!(count as usize, rows.len());
    // Durable (in the WAL) before the answer; visible once the hot store has it.
    served.caught_up();
    let stored = served
        .harness
        .scalar("SELECT count(*) FROM gate_decisions")
        .await;
    assert_eq!(stored as usize, rows.len());

    // One bad row (NaN value, row 7) rejects the whole request, naming it.
    let mut bad = rows.clone();
    bad[7].value = f64::NAN;
    let (cmd, stream) = ingest(GateDecision::to_batch(&bad).unwrap());
    let err = client
        .execute_ingest(cmd, stream)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("row 7") && err.contains("gate_decisions.value"),
        "{err}"
    );
    // An unknown gate name is named the same way.
    let mut columns = batch.columns().to_vec();
    let gate_column = batch.schema().index_of("gate").unwrap();
    let mut gates: Vec<String> = (0..batch.num_rows())
        .map(|i| {
            batch
                .column(gate_column)
                .as_string::<i32>()
                .value(i)
                .to_string()
        })
        .collect();
    gates[3] = "vibes_gate".into();
    columns[gate_column] = std::sync::Arc::new(StringArray::from(gates));
    let (cmd, stream) = ingest(RecordBatch::try_new(batch.schema(), columns).unwrap());
    let err = client
        .execute_ingest(cmd, stream)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 3") && err.contains("gate"), "{err}");
    let stored = served
        .harness
        .scalar("SELECT count(*) FROM gate_decisions")
        .await;
    assert_eq!(
        stored as usize,
        rows.len(),
        "nothing of a rejected request is kept"
    );

    // Tables that are not event tables, and replace mode, are refused.
    let (mut cmd, stream) = ingest(batch.clone());
    cmd.table = "kill_switch".into();
    assert!(client.execute_ingest(cmd, stream).await.is_err());
    served.stop().await;
}

/// The gRPC status a client call failed with.
fn grpc_status(err: arrow_flight::error::FlightError) -> Status {
    match err {
        arrow_flight::error::FlightError::Tonic(status) => *status,
        other => panic!("not a gRPC status: {other:?}"),
    }
}

/// Ingests `batches` as one request into gate_decisions.
async fn ingest_gate_decisions(
    client: &mut FlightSqlServiceClient<Channel>,
    batches: Vec<RecordBatch>,
) -> Result<i64, arrow_flight::error::FlightError> {
    let cmd = CommandStatementIngest {
        table: "gate_decisions".into(),
        ..Default::default()
    };
    client
        .execute_ingest(cmd, futures::stream::iter(batches.into_iter().map(Ok)))
        .await
}

/// A request refused at its second batch keeps its first; resending it whole,
/// or twice, or without ids, stores each row once and answers every row. With
/// a zero window the ledger forgets at once, so the stored tables must catch
/// the resends themselves (as after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_ingest_is_counted_not_stored_twice() {
    for window in [Duration::from_secs(600), Duration::ZERO] {
        let served = Served::start_with(FlightConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            credentials: Some(Credentials {
                username: USER.into(),
                password: PASSWORD.into(),
            }),
            ingest_dedup_window: window,
            ..FlightConfig::default()
        })
        .await;
        let mut client = served.sql_client().await;
        let count = async |sql: &str| {
            served.harness.logger.flush().await.unwrap();
            served.caught_up();
            served.harness.scalar(sql).await as usize
        };
        let rows = gate_decisions(&sim_events(5, 200));
        let (a, b) = rows.split_at(rows.len() / 2);
        let batch_a = GateDecision::to_batch(a).unwrap();
        let batch_b = GateDecision::to_batch(b).unwrap();
        let mut bad_b = b.to_vec();
        bad_b[3].value = f64::NAN;
        let err = ingest_gate_decisions(
            &mut client,
            vec![batch_a.clone(), GateDecision::to_batch(&bad_b).unwrap()],
        )
        .await
        .unwrap_err()
        .to_string();
        let (row, kept) = (a.len() + 3, a.len());
        assert!(
            err.contains(&format!("row {row}: gate_decisions.value"))
                && err.contains(&format!("rows before {kept} are stored")),
            "{err}"
        );
        assert_eq!(count("SELECT count(*) FROM gate_decisions").await, a.len());

        // The corrected request, resent whole: the stored half is counted.
        let answer = ingest_gate_decisions(&mut client, vec![batch_a.clone(), batch_b.clone()])
            .await
            .unwrap();
        assert_eq!(answer as usize, rows.len());
        assert_eq!(
            count("SELECT count(*) FROM gate_decisions").await,
            rows.len()
        );
        assert_eq!(
            count("SELECT count(DISTINCT event_id) FROM gate_decisions").await,
            rows.len()
        );
        // And once more, as a client that lost the answer would.
        let answer = ingest_gate_decisions(&mut client, vec![batch_a.clone(), batch_b])
            .await
            .unwrap();
        assert_eq!(answer as usize, rows.len());
        assert_eq!(
            count("SELECT count(*) FROM gate_decisions").await,
            rows.len()
        );

        if !window.is_zero() {
            // Repeated within one request (a batch sent twice): stored once.
            // Only the ledger can see this: the first copy is not stored yet.
            let more = gate_decisions(&sim_events(6, 50));
            let batch = GateDecision::to_batch(&more).unwrap();
            let answer = ingest_gate_decisions(&mut client, vec![batch.clone(), batch])
                .await
                .unwrap();
            assert_eq!(answer as usize, 2 * more.len());
            assert_eq!(
                count("SELECT count(*) FROM gate_decisions").await,
                rows.len() + more.len()
            );
        }

        // Without event_id: ids come from the rows' content, so a resend of
        // the same rows is caught too.
        let before = count("SELECT count(*) FROM gate_decisions").await;
        let anonymous = gate_decisions(&sim_events(7, 50));
        let mut batch = GateDecision::to_batch(&anonymous).unwrap();
        batch.remove_column(batch.schema().index_of("event_id").unwrap());
        for _ in 0..2 {
            let answer = ingest_gate_decisions(&mut client, vec![batch.clone()])
                .await
                .unwrap();
            assert_eq!(answer as usize, anonymous.len());
        }
        assert_eq!(
            count("SELECT count(*) FROM gate_decisions").await,
            before + anonymous.len()
        );
        served.stop().await;
    }
}

/// Rows and bytes per ingest request have their limits; the status names
/// the key, and nothing of the batch past the limit is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_request_is_bounded_in_rows_and_bytes() {
    let served = Served::start_with(FlightConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        credentials: Some(Credentials {
            username: USER.into(),
            password: PASSWORD.into(),
        }),
        ingest_rows_max: 20,
        ingest_bytes_max: 16 << 10,
        ..FlightConfig::default()
    })
    .await;
    let mut client = served.sql_client().await;
    let rows = gate_decisions(&sim_events(5, 200));
    let smalls: Vec<RecordBatch> = rows[..30]
        .chunks(10)
        .map(|c| GateDecision::to_batch(c).unwrap())
        .collect();
    let err = ingest_gate_decisions(&mut client, smalls)
        .await
        .unwrap_err();
    let status = grpc_status(err);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("flight.ingest_rows_max"),
        "{status:?}"
    );
    // The first two batches (20 rows) were within the limit and are stored.
    let stored = served.stored_gate_decisions().await;
    assert_eq!(stored, 20);

    // The byte limit is checked before a message is decoded: this batch is
    // refused for its bytes though it also has too many rows.
    let big = GateDecision::to_batch(&rows).unwrap();
    let err = ingest_gate_decisions(&mut client, vec![big])
        .await
        .unwrap_err();
    let status = grpc_status(err);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "ingest: the upload exceeds flight.ingest_bytes_max (16384 bytes); split it"
    );
    let stored = served.stored_gate_decisions().await;
    assert_eq!(stored, 20, "a batch past the byte limit is not stored");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_answers_with_its_status() {
    let served = Served::start(QueryLimits {
        queries_max: 1,
        query_timeout: Duration::from_millis(1500),
        query_memory_bytes_max: 4 << 20,
        result_rows_max: 10_000,
        result_bytes_max: 1 << 20,
        ..QueryLimits::default()
    })
    .await;
    let token = served.token().await;
    let mut raw = served.raw_client().await;

    let rows = run_sql(&mut raw, &token, "SELECT value FROM range(20000)").await;
    let status = rows.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("10000 rows"), "{status:?}");

    let wide = "SELECT repeat('x', 1000) AS padding FROM range(5000)";
    let status = run_sql(&mut raw, &token, wide).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("1048576 bytes"), "{status:?}");

    let slow = "SELECT count(*) FROM range(100000000000) WHERE value % 7 = 3";
    let status = run_sql(&mut raw, &token, slow).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    let hungry = "SELECT array_agg(value) FROM range(5000000)";
    let status = run_sql(&mut raw, &token, hungry).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("memory"), "{status:?}");

    // One query at a time: while a stream is open, the next is refused.
    let join = "SELECT a.value FROM range(1000) a JOIN range(100000000) b ON a.value = b.value";
    let command = CommandStatementQuery {
        query: join.into(),
        transaction_id: None,
    };
    let info = raw
        .get_flight_info(with_token(
            FlightDescriptor::new_cmd(command.as_any().encode_to_vec()),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut holder = served.raw_client().await;
    // The failed query above gives its slot back as its task winds down,
    // which can be a moment after the client saw the error.
    let started = std::time::Instant::now();
    let mut open = loop {
        match holder.do_get(with_token(ticket.clone(), &token)).await {
            Ok(response) => break response.into_inner(),
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && started.elapsed() < Duration::from_secs(10) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    };
    open.next().await.unwrap().unwrap();
    let status = run_sql(&mut raw, &token, "SELECT 1").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(served.harness.engine.memory_reserved_bytes() > 0);

    // The client goes away mid-stream: the query is cancelled, its memory
    // and its slot come back.
    drop(open);
    drop(holder);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let free = served.harness.engine.memory_reserved_bytes() == 0;
        if free && run_sql(&mut raw, &token, "SELECT 1").await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the query was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_addresses_need_credentials_and_tls_works() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::open(small_store_config(dir.path()), fast_logger_config());
    let open = FlightConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..FlightConfig::default()
    };
    let err = FlightServer::bind(&open, harness.engine.clone(), harness.logger.clone())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ServeError::OpenWithoutCredentials(_)),
        "{err}"
    );
    harness.close();

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("cert.pem");
    let key_path = certs.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let served = Served::start_with(FlightConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(quiver::flight::TlsFiles {
            cert: cert_path.clone(),
            key: key_path,
        }),
        ..FlightConfig::default()
    })
    .await;
    let url = format!("grpc+tls://localhost:{}", served.port);
    let mut client = quiver::flight::client::Client::connect(&url, None, Some(&cert_path))
        .await
        .unwrap();
    let batches = client.query("SELECT 41 + 1").await.unwrap();
    assert_eq!(scalar(&batches), 42);
    // A plaintext client gets nowhere.
    let plain = quiver::flight::client::Client::connect(
        &format!("grpc://localhost:{}", served.port),
        None,
        None,
    )
    .await;
    match plain {
        Err(_) => {}
        Ok(mut c) => assert!(c.query("SELECT 1").await.is_err()),
    }
    served.stop().await;
}
