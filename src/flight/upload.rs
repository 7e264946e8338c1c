//! DoPut bodies (ingest rows, prepared-statement parameters), bounded in bytes
//! and in the time between two messages, before anything decodes them.
//!
//! The bytes counted are those of the IPC messages as sent (each FlightData's
//! header and body), so a limit means the same whatever the batches decode to.
//! One message is itself at most `message_bytes_max` (tonic refuses more), so
//! the server never holds more than one message past a limit.

use std::time::Duration;

use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::{Stream, StreamExt};

use super::error::FlightError;

/// The bounds of one upload, and the config key each comes from.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// What is uploaded, for messages (`"ingest"`, `"parameters"`).
    pub what: &'static str,
    pub bytes_max: usize,
    /// The config key of `bytes_max`.
    pub bytes_key: &'static str,
    pub idle_timeout: Duration,
}

/// Why an upload was cut short. Travels inside the decoder's error
/// (`ExternalError`) and comes back out with [`UploadError::from_decode`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    #[error("{what}: the upload exceeds {key} ({max} bytes); split it")]
    TooLarge {
        what: &'static str,
        key: &'static str,
        max: usize,
    },
    #[error("{what}: the upload sent nothing for {timeout:?} (flight.upload_idle_timeout)")]
    Idle {
        what: &'static str,
        timeout: Duration,
    },
}

impl UploadError {
    /// The upload error inside a decoder error, if that is what it is.
    pub fn from_decode(e: &arrow_flight::error::FlightError) -> Option<Self> {
        match e {
            arrow_flight::error::FlightError::ExternalError(inner) => {
                inner.downcast_ref::<UploadError>().cloned()
            }
            _ => None,
        }
    }
}

impl From<UploadError> for FlightError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge { .. } => FlightError::UploadTooLarge(e.to_string()),
            UploadError::Idle { .. } => FlightError::UploadIdle(e.to_string()),
        }
    }
}

/// `upload`'s messages, ended by an error at the first one past the byte
/// limit or after `idle_timeout` without one.
pub fn bounded<S>(
    upload: S,
    limits: UploadLimits,
) -> impl Stream<Item = Result<FlightData, arrow_flight::error::FlightError>> + Send + Unpin
where
    S: Stream<Item = Result<FlightData, tonic::Status>> + Send + Unpin + 'static,
{
    struct State<S> {
        upload: S,
        bytes: usize,
        done: bool,
    }
    let state = State {
        upload,
        bytes: 0,
        done: false,
    };
    let cut = |e: UploadError| Err(arrow_flight::error::FlightError::ExternalError(Box::new(e)));
    Box::pin(futures::stream::unfold(
        state,
        move |mut state| async move {
            if state.done {
                return None;
            }
            let next = match tokio::time::timeout(limits.idle_timeout, state.upload.next()).await {
                Ok(next) => next?,
                Err(_) => {
                    state.done = true;
                    let idle = UploadError::Idle {
                        what: limits.what,
                        timeout: limits.idle_timeout,
                    };
                    return Some((cut(idle), state));
                }
            };
            let item = match next {
                Ok(data) => {
                    state.bytes = state
                        .bytes
                        .saturating_add(data.data_header.len() + data.data_body.len());
                    if state.bytes > limits.bytes_max {
                        state.done = true;
                        cut(UploadError::TooLarge {
                            what: limits.what,
                            key: limits.bytes_key,
                            max: limits.bytes_max,
                        })
                    } else {
                        Ok(data)
                    }
                }
                Err(status) => {
                    state.done = true;
                    Err(arrow_flight::error::FlightError::Tonic(Box::new(status)))
                }
            };
            Some((item, state))
        },
    ))
}

/// The batches of a bounded upload.
pub fn batches(upload: PeekableFlightDataStream, limits: UploadLimits) -> FlightRecordBatchStream {
    FlightRecordBatchStream::new_from_flight_data(bounded(upload, limits))
}

/// A decoder error as the client should see it: the limit it hit, or what
/// could not be read.
pub fn decode_error(what: &str, e: arrow_flight::error::FlightError) -> FlightError {
    match UploadError::from_decode(&e) {
        Some(limit) => limit.into(),
        None => FlightError::BadRequest(format!("{what}: reading the upload: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes_max: usize) -> UploadLimits {
        UploadLimits {
            what: "ingest",
            bytes_max,
            bytes_key: "flight.ingest_bytes_max",
            idle_timeout: Duration::from_millis(50),
        }
    }

    fn message(body_bytes: usize) -> FlightData {
        FlightData::new().with_data_body(vec![0u8; body_bytes])
    }

    #[tokio::test]
    async fn messages_pass_up_to_the_byte_limit_and_the_next_one_ends_the_upload() {
        let upload = futures::stream::iter((0..5).map(|_| Ok(message(100))));
        let got: Vec<_> = bounded(upload, limits(250)).collect().await;
        assert_eq!(got.len(), 3, "two messages, then the error, then nothing");
        assert!(got[0].is_ok() && got[1].is_ok());
        let e = got[2].as_ref().unwrap_err();
        assert!(matches!(
            UploadError::from_decode(e),
            Some(UploadError::TooLarge { max: 250, .. })
        ));
        // Exactly at the limit is allowed.
        let upload = futures::stream::iter((0..5).map(|_| Ok(message(100))));
        assert!(
            bounded(upload, limits(500))
                .collect::<Vec<_>>()
                .await
                .iter()
                .all(Result::is_ok)
        );
    }

    #[tokio::test]
    async fn an_upload_that_sends_nothing_is_ended() {
        let upload = futures::stream::iter([Ok(message(1))]).chain(futures::stream::pending());
        let got: Vec<_> = bounded(upload, limits(1 << 20)).collect().await;
        assert_eq!(got.len(), 2);
        assert!(matches!(
            UploadError::from_decode(got[1].as_ref().unwrap_err()),
            Some(UploadError::Idle { .. })
        ));
    }

    #[test]
    fn the_limit_comes_back_out_of_the_decoder_error() {
        let limit = UploadError::TooLarge {
            what: "ingest",
            key: "flight.ingest_bytes_max",
            max: 10,
        };
        let wrapped = arrow_flight::error::FlightError::ExternalError(Box::new(limit));
        let e = decode_error("ingest", wrapped);
        assert!(matches!(e, FlightError::UploadTooLarge(_)), "{e:?}");
        let status = tonic::Status::from(e);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "ingest: the upload exceeds flight.ingest_bytes_max (10 bytes); split it"
        );
        let idle = UploadError::Idle {
            what: "parameters",
            timeout: Duration::from_secs(2),
        };
        let wrapped = arrow_flight::error::FlightError::ExternalError(Box::new(idle));
        let status = tonic::Status::from(decode_error("parameters", wrapped));
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("flight.upload_idle_timeout"));
        let other = arrow_flight::error::FlightError::protocol("bad message");
        assert!(matches!(
            decode_error("ingest", other),
            FlightError::BadRequest(_)
        ));
    }
}
