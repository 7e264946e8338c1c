//! Every Flight SQL failure, and its gRPC status: the one place where errors
//! become statuses. Messages stay short (old JDBC drivers break on large error
//! metadata) and say what was wrong and where.

use std::time::Duration;

use datafusion::error::DataFusionError;
use tonic::{Code, Status};

use crate::ingest::SubmitError;
use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum FlightError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Plan(#[source] QueryError),
    #[error("{0}")]
    Execute(#[source] QueryError),
    #[error("too many queries running (at most {max}); retry shortly")]
    TooManyQueries { max: usize },
    #[error("{max} live tails are open (flight.tails_max); close one or retry shortly")]
    TooManyTails { max: usize },
    #[error("the query ran past its deadline of {0:?}")]
    Deadline(Duration),
    #[error("the result exceeds {limit}; add a LIMIT or filter")]
    ResultTooLarge { limit: String },
    #[error("ingest into {table}: {source}")]
    IngestRejected {
        table: String,
        #[source]
        source: SubmitError,
    },
    #[error("ingest into {table}: {message}")]
    IngestBadBatch { table: String, message: String },
    #[error(
        "ingest: more than {max} rows in one request (flight.ingest_rows_max); split the upload"
    )]
    IngestTooLarge { max: usize },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("planning ran past its deadline of {0:?}")]
    PlanDeadline(Duration),
    #[error("the client stopped reading the result for {0:?}")]
    ResultStalled(Duration),
    /// An upload past its byte limit; the message names the limit's key.
    #[error("{0}")]
    UploadTooLarge(String),
    /// An upload that sent nothing for too long.
    #[error("{0}")]
    UploadIdle(String),
}

impl FlightError {
    fn code(&self) -> Code {
        match self {
            FlightError::Unauthenticated(_) => Code::Unauthenticated,
            FlightError::BadRequest(_) | FlightError::IngestBadBatch { .. } => {
                Code::InvalidArgument
            }
            FlightError::NotFound(_) => Code::NotFound,
            FlightError::AlreadyExists(_) => Code::AlreadyExists,
            FlightError::Refused(_) => Code::PermissionDenied,
            FlightError::Unsupported(_) => Code::Unimplemented,
            FlightError::Plan(e) | FlightError::Execute(e) => query_code(e),
            FlightError::TooManyQueries { .. }
            | FlightError::TooManyTails { .. }
            | FlightError::ResultTooLarge { .. }
            | FlightError::IngestTooLarge { .. }
            | FlightError::UploadTooLarge(_) => Code::ResourceExhausted,
            FlightError::Deadline(_)
            | FlightError::PlanDeadline(_)
            | FlightError::ResultStalled(_)
            | FlightError::UploadIdle(_) => Code::DeadlineExceeded,
            FlightError::IngestRejected { source, .. } => match source {
                SubmitError::Invalid(_) => Code::InvalidArgument,
                SubmitError::Closed => Code::Unavailable,
                SubmitError::Flush(_) => Code::Internal,
            },
            FlightError::Internal(_) => Code::Internal,
        }
    }
}

/// Client mistakes (bad SQL, unknown tables, writes) are the client's to fix;
/// running out of memory is a limit; anything else is ours.
fn query_code(e: &QueryError) -> Code {
    if e.is_read_only_violation() {
        return Code::PermissionDenied;
    }
    if matches!(e, QueryError::TooDeep { .. }) {
        return Code::ResourceExhausted;
    }
    match e.datafusion() {
        None => Code::InvalidArgument,
        Some(DataFusionError::ResourcesExhausted(_)) => Code::ResourceExhausted,
        Some(
            DataFusionError::Plan(_)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_),
        ) => Code::InvalidArgument,
        Some(DataFusionError::Execution(_) | DataFusionError::ArrowError(..)) => {
            // Casts of bad values, division by zero and the like: the query's data.
            Code::InvalidArgument
        }
        Some(_) => Code::Internal,
    }
}

impl From<FlightError> for Status {
    fn from(e: FlightError) -> Self {
        let code = e.code();
        let message = e.to_string();
        if code == Code::Internal || code == Code::Unavailable {
            tracing::warn!(%message, "flight request failed");
        } else {
            tracing::info!(?code, %message, "flight request refused");
        }
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_client_mistakes_get_their_own_codes() {
        let status = Status::from(FlightError::TooManyQueries { max: 4 });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("at most 4"));
        let status = Status::from(FlightError::Deadline(Duration::from_secs(2)));
        assert_eq!(status.code(), Code::DeadlineExceeded);
        let plan = QueryError::Plan(DataFusionError::Plan("DDL not supported: x".into()));
        assert_eq!(
            Status::from(FlightError::Plan(plan)).code(),
            Code::PermissionDenied
        );
        let oom = QueryError::Execute(DataFusionError::ResourcesExhausted("x".into()));
        assert_eq!(
            Status::from(FlightError::Execute(oom)).code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn time_limits_name_themselves() {
        let status = Status::from(FlightError::ResultStalled(Duration::from_secs(30)));
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(
            status.message(),
            "the client stopped reading the result for 30s"
        );
        let status = Status::from(FlightError::PlanDeadline(Duration::from_secs(30)));
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("planning"), "{status:?}");
    }
}
