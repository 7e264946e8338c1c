//! A small Flight SQL client for `quiver sql --server`: connect, handshake
//! when credentials are given, run one query, collect the batches.

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightDescriptor, HandshakeRequest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
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
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
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
}
