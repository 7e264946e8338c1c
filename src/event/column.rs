//! How one Rust field type becomes one Arrow column.
//!
//! Every event struct is declared once (in `tables.rs`); its Arrow schema and its
//! batch builder are derived from the field types through [`Column`], so names and
//! types cannot drift apart.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};

/// Timezone of every timestamp column.
pub const UTC: &str = "UTC";

/// A point in time as microseconds since the Unix epoch, UTC.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Ts(pub i64);

impl Ts {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Ts(chrono::Utc::now().timestamp_micros())
    }

    pub fn from_millis(ms: i64) -> Self {
        Ts(ms.saturating_mul(1_000))
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// The UTC calendar day, `YYYY-MM-DD`, used as the lake's `date=` partition.
    pub fn date(self) -> Option<chrono::NaiveDate> {
        chrono::DateTime::from_timestamp_micros(self.0).map(|t| t.date_naive())
    }
}

/// The Arrow type of a timestamp column.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// A field type that maps to one Arrow column.
pub trait Column {
    type Builder;
    fn data_type() -> DataType;
    const NULLABLE: bool;
    fn builder(capacity: usize) -> Self::Builder;
    fn append_to(&self, builder: &mut Self::Builder);
    fn finish(builder: &mut Self::Builder) -> ArrayRef;
}

macro_rules! plain_column {
    ($ty:ty, $builder:ty, $dt:expr) => {
        impl Column for $ty {
            type Builder = $builder;
            fn data_type() -> DataType {
                $dt
            }
            const NULLABLE: bool = false;
            fn builder(capacity: usize) -> Self::Builder {
                <$builder>::with_capacity(capacity)
            }
            fn append_to(&self, builder: &mut Self::Builder) {
                builder.append_value(*self);
            }
            fn finish(builder: &mut Self::Builder) -> ArrayRef {
                Arc::new(builder.finish())
            }
        }
        impl Column for Option<$ty> {
            type Builder = $builder;
            fn data_type() -> DataType {
                $dt
            }
            const NULLABLE: bool = true;
            fn builder(capacity: usize) -> Self::Builder {
                <$builder>::with_capacity(capacity)
            }
            fn append_to(&self, builder: &mut Self::Builder) {
                builder.append_option(*self);
            }
            fn finish(builder: &mut Self::Builder) -> ArrayRef {
                Arc::new(builder.finish())
            }
        }
    };
}

plain_column!(f64, Float64Builder, DataType::Float64);
plain_column!(i64, Int64Builder, DataType::Int64);
plain_column!(i32, Int32Builder, DataType::Int32);
plain_column!(bool, BooleanBuilder, DataType::Boolean);

impl Column for String {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    const NULLABLE: bool = false;
    fn builder(capacity: usize) -> Self::Builder {
        StringBuilder::with_capacity(capacity, capacity * 16)
    }
    fn append_to(&self, builder: &mut Self::Builder) {
        builder.append_value(self);
    }
    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
}

impl Column for Option<String> {
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    const NULLABLE: bool = true;
    fn builder(capacity: usize) -> Self::Builder {
        StringBuilder::with_capacity(capacity, capacity * 8)
    }
    fn append_to(&self, builder: &mut Self::Builder) {
        builder.append_option(self.as_deref());
    }
    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        Arc::new(builder.finish())
    }
}

impl Column for Ts {
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        ts_type()
    }
    const NULLABLE: bool = false;
    fn builder(capacity: usize) -> Self::Builder {
        TimestampMicrosecondBuilder::with_capacity(capacity)
    }
    fn append_to(&self, builder: &mut Self::Builder) {
        builder.append_value(self.0);
    }
    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        Arc::new(builder.finish().with_timezone(UTC))
    }
}

impl Column for Option<Ts> {
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        ts_type()
    }
    const NULLABLE: bool = true;
    fn builder(capacity: usize) -> Self::Builder {
        TimestampMicrosecondBuilder::with_capacity(capacity)
    }
    fn append_to(&self, builder: &mut Self::Builder) {
        builder.append_option(self.map(|t| t.0));
    }
    fn finish(builder: &mut Self::Builder) -> ArrayRef {
        Arc::new(builder.finish().with_timezone(UTC))
    }
}

/// Closed vocabularies (mode, regime, side, ...) are stored as their canonical
/// upper- or lower-case spelling in a Utf8 column, readable by any engine.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "expected one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl $crate::event::column::ReadColumn for $name {
            fn read_all(
                array: &dyn arrow::array::Array,
                field: &'static str,
            ) -> Result<Vec<Self>, $crate::event::column::ReadError> {
                $crate::event::column::read_enum(array, field)
            }
        }

        impl $crate::event::column::Column for $name {
            type Builder = arrow::array::StringBuilder;
            fn data_type() -> arrow::datatypes::DataType {
                arrow::datatypes::DataType::Utf8
            }
            const NULLABLE: bool = false;
            fn builder(capacity: usize) -> Self::Builder {
                arrow::array::StringBuilder::with_capacity(capacity, capacity * 8)
            }
            fn append_to(&self, builder: &mut Self::Builder) {
                builder.append_value(self.as_str());
            }
            fn finish(builder: &mut Self::Builder) -> arrow::array::ArrayRef {
                std::sync::Arc::new(builder.finish())
            }
        }
    };
}
pub(crate) use string_enum;

/// A value that could not be read back from an Arrow column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("row {row}: {field}: {message}")]
pub struct ReadError {
    /// Row index within the batch, from 0.
    pub row: usize,
    pub field: &'static str,
    pub message: String,
}

/// Reading a column back into Rust values: the inverse of [`Column`], for
/// batches that arrive from outside (Flight SQL ingest). The array must already
/// have [`Column::data_type`]; callers cast first.
pub trait ReadColumn: Sized {
    fn read_all(
        array: &dyn arrow::array::Array,
        field: &'static str,
    ) -> Result<Vec<Self>, ReadError>;
}

fn type_mismatch(
    array: &dyn arrow::array::Array,
    field: &'static str,
    want: &DataType,
) -> ReadError {
    ReadError {
        row: 0,
        field,
        message: format!("has type {}, expected {want}", array.data_type()),
    }
}

fn null_at(row: usize, field: &'static str) -> ReadError {
    ReadError {
        row,
        field,
        message: "is null but is required".into(),
    }
}

/// Every required column is its optional reader plus this check.
fn require<T>(values: Vec<Option<T>>, field: &'static str) -> Result<Vec<T>, ReadError> {
    values
        .into_iter()
        .enumerate()
        .map(|(row, v)| v.ok_or_else(|| null_at(row, field)))
        .collect()
}

fn downcast<'a, A: 'static>(
    array: &'a dyn arrow::array::Array,
    field: &'static str,
    want: DataType,
) -> Result<&'a A, ReadError> {
    array
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| type_mismatch(array, field, &want))
}

/// A column type with a reader for its nullable form gets both impls.
macro_rules! read_via_optional {
    ($ty:ty, |$array:ident, $field:ident| $optional:expr) => {
        impl ReadColumn for Option<$ty> {
            fn read_all(
                $array: &dyn arrow::array::Array,
                $field: &'static str,
            ) -> Result<Vec<Self>, ReadError> {
                $optional
            }
        }
        impl ReadColumn for $ty {
            fn read_all(
                array: &dyn arrow::array::Array,
                field: &'static str,
            ) -> Result<Vec<Self>, ReadError> {
                require(Option::<$ty>::read_all(array, field)?, field)
            }
        }
    };
}

macro_rules! primitive_read {
    ($ty:ty, $arrow:ty) => {
        read_via_optional!($ty, |array, field| {
            let values = downcast::<arrow::array::PrimitiveArray<$arrow>>(
                array,
                field,
                <$ty as Column>::data_type(),
            )?;
            Ok(values.iter().map(|v| v.map(<$ty>::from)).collect())
        });
    };
}

impl From<i64> for Ts {
    fn from(us: i64) -> Self {
        Ts(us)
    }
}

primitive_read!(f64, arrow::datatypes::Float64Type);
primitive_read!(i64, arrow::datatypes::Int64Type);
primitive_read!(i32, arrow::datatypes::Int32Type);
primitive_read!(Ts, arrow::datatypes::TimestampMicrosecondType);

read_via_optional!(bool, |array, field| {
    let values = downcast::<arrow::array::BooleanArray>(array, field, DataType::Boolean)?;
    Ok(values.iter().collect())
});

/// Reads a Utf8 column as optional strings; the building block of every
/// string-typed column (plain strings and closed vocabularies).
pub fn read_strings<'a>(
    array: &'a dyn arrow::array::Array,
    field: &'static str,
) -> Result<impl Iterator<Item = (usize, Option<&'a str>)> + 'a, ReadError> {
    let values = downcast::<arrow::array::StringArray>(array, field, DataType::Utf8)?;
    Ok(values.iter().enumerate())
}

read_via_optional!(String, |array, field| {
    Ok(read_strings(array, field)?
        .map(|(_, v)| v.map(str::to_owned))
        .collect())
});

/// Reads a closed vocabulary, naming the allowed spellings on a bad value.
pub fn read_enum<T: std::str::FromStr<Err = String>>(
    array: &dyn arrow::array::Array,
    field: &'static str,
) -> Result<Vec<T>, ReadError> {
    read_strings(array, field)?
        .map(|(row, v)| {
            let text = v.ok_or_else(|| null_at(row, field))?;
            text.parse().map_err(|message: String| ReadError {
                row,
                field,
                message: format!("{text:?}: {message}"),
            })
        })
        .collect()
}
