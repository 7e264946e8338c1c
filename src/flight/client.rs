//! A small Flight SQL client for `quiver sql --server`: connect, handshake
//! when credentials are given, run one query, collect the batches; or follow
//! a live tail.

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor, HandshakeRequest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion::common::ScalarValue;
use futures::TryStreamExt;
use prost::Message;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use super::auth::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server URL {0:?}: expected grpc://HOST:PORT or grpc+tls://HOST:PORT")]
    Url(String),
    #[error("reading the CA certificate {path}")]
    Ca {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {url}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{0}")]
    Flight(String),
}

fn status(e: Status) -> ClientError {
    ClientError::Flight(format!("{:?}: {}", e.code(), e.message()))
}

pub struct Client {
    inner: FlightServiceClient<Channel>,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Client {
    /// Connects to `grpc://host:port` (plaintext) or `grpc+tls://host:port`
    /// (TLS; `ca` is the certificate to trust, e.g. a self-signed server's own).
    pub async fn connect(
        url: &str,
        credentials: Option<&Credentials>,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let (http, tls) = if let Some(rest) = url.strip_prefix("grpc://") {
            (format!("http://{rest}"), false)
        } else if let Some(rest) = url.strip_prefix("grpc+tls://") {
            (format!("https://{rest}"), true)
        } else {
            return Err(ClientError::Url(url.to_string()));
        };
        let mut endpoint =
            Endpoint::from_shared(http).map_err(|_| ClientError::Url(url.to_string()))?;
        if tls {
            let mut config = ClientTlsConfig::new();
            if let Some(path) = ca {
                let pem = std::fs::read(path).map_err(|source| ClientError::Ca {
                    path: path.to_path_buf(),
                    source,
                })?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|source| ClientError::Connect {
                    url: url.to_string(),
                    source,
                })?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                url: url.to_string(),
                source,
            })?;
        let mut client = Self {
            inner: FlightServiceClient::new(channel),
            authorization: None,
        };
        if let Some(c) = credentials {
            client.handshake(c).await?;
        }
        Ok(client)
    }

    async fn handshake(&mut self, c: &Credentials) -> Result<(), ClientError> {
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", c.username, c.password))
        );
        let mut request = Request::new(futures::stream::iter([HandshakeRequest::default()]));
        request.metadata_mut().insert(
            "authorization",
            basic
                .parse()
                .map_err(|_| ClientError::Flight("credentials are not a header value".into()))?,
        );
        let response = self.inner.handshake(request).await.map_err(status)?;
        self.authorization = response.metadata().get("authorization").cloned();
        if self.authorization.is_none() {
            return Err(ClientError::Flight(
                "the server's handshake returned no authorization header".into(),
            ));
        }
        Ok(())
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Runs one query and collects its result.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, ClientError> {
        let command = CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        self.fetch(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()))
            .await
    }

    /// Runs one query with its parameters (`$1`, `$2`, ... or `?`) bound to
    /// `params`: a prepared statement, its parameters uploaded as one row.
    pub async fn query_with(
        &mut self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<Vec<RecordBatch>, ClientError> {
        if params.is_empty() {
            return self.query(sql).await;
        }
        let create = ActionCreatePreparedStatementRequest {
            query: sql.to_string(),
            transaction_id: None,
        };
        let action = Action {
            r#type: "CreatePreparedStatement".to_string(),
            body: create.as_any().encode_to_vec().into(),
        };
        let mut results = self
            .inner
            .do_action(self.request(action))
            .await
            .map_err(status)?
            .into_inner();
        let body = results
            .message()
            .await
            .map_err(status)?
            .ok_or_else(|| ClientError::Flight("no prepared statement came back".into()))?
            .body;
        let prepared: ActionCreatePreparedStatementResult = Any::decode(body)
            .map_err(|e| ClientError::Flight(format!("decoding the prepared statement: {e}")))?
            .unpack()
            .map_err(|e| ClientError::Flight(format!("decoding the prepared statement: {e}")))?
            .ok_or_else(|| ClientError::Flight("not a prepared statement result".into()))?;
        let mut handle = prepared.prepared_statement_handle;

        let columns = params
            .iter()
            .map(|p| p.to_array_of_size(1))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Flight(format!("parameters: {e}")))?;
        let fields: Vec<arrow::datatypes::Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                arrow::datatypes::Field::new(format!("${}", i + 1), c.data_type().clone(), true)
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
            .map_err(|e| ClientError::Flight(format!("parameters: {e}")))?;
        let command = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.clone(),
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let upload: Vec<arrow_flight::FlightData> = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(futures::stream::iter([Ok(batch)]))
            .try_collect()
            .await
            .map_err(|e| ClientError::Flight(format!("encoding the parameters: {e}")))?;
        let mut put = self
            .inner
            .do_put(self.request(futures::stream::iter(upload)))
            .await
            .map_err(status)?
            .into_inner();
        if let Some(result) = put.message().await.map_err(status)? {
            let bound = DoPutPreparedStatementResult::decode(result.app_metadata)
                .map_err(|e| ClientError::Flight(format!("decoding the bound statement: {e}")))?;
            if let Some(new) = bound.prepared_statement_handle {
                handle = new;
            }
        }
        let command = CommandPreparedStatementQuery {
            prepared_statement_handle: handle,
        };
        self.fetch(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()))
            .await
    }

    /// Gets the flight info of `descriptor` and collects every endpoint.
    async fn fetch(
        &mut self,
        descriptor: FlightDescriptor,
    ) -> Result<Vec<RecordBatch>, ClientError> {
        let info = self
            .inner
            .get_flight_info(self.request(descriptor))
            .await
            .map_err(status)?
            .into_inner();
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint.ticket.ok_or_else(|| {
                ClientError::Flight("the server sent an endpoint without a ticket".into())
            })?;
            let data = self
                .inner
                .do_get(self.request(ticket))
                .await
                .map_err(status)?
                .into_inner()
                .map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(e)));
            let part: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
                .try_collect()
                .await
                .map_err(|e| match e {
                    arrow_flight::error::FlightError::Tonic(s) => status(*s),
                    other => ClientError::Flight(other.to_string()),
                })?;
            batches.extend(part);
        }
        Ok(batches)
    }

    /// Opens a live tail ([`super::tail`]): its batches, as they commit,
    /// until the server ends the stream or the caller drops it.
    pub async fn tail(
        &mut self,
        request: &super::tail::TailRequest,
    ) -> Result<
        impl futures::Stream<Item = Result<RecordBatch, ClientError>> + Send + use<>,
        ClientError,
    > {
        let ticket = arrow_flight::Ticket::new(request.ticket());
        let data = self
            .inner
            .do_get(self.request(ticket))
            .await
            .map_err(status)?
            .into_inner()
            .map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(e)));
        Ok(
            FlightRecordBatchStream::new_from_flight_data(data).map_err(|e| match e {
                arrow_flight::error::FlightError::Tonic(s) => status(*s),
                other => ClientError::Flight(other.to_string()),
            }),
        )
    }
}
