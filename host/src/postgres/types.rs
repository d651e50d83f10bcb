//! Conversions between `spin:postgres@4.0.0` values and PostgreSQL's wire
//! types, with the same mapping Spin uses so a component sees identical
//! values on every runtime.

use std::error::Error as StdError;

use anyhow::{Context, anyhow};
use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use postgres_range::{BoundSided, BoundType, Normalizable, Range, RangeBound};
use rust_decimal::Decimal;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::bindings::{DbDataType, DbValue, Interval, ParameterValue, RangeBoundKind};

type BoxError = Box<dyn StdError + Sync + Send>;

/// The WIT data type reported for a column of the given PostgreSQL type.
pub fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSON | Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(ty.name().to_string()),
    }
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> anyhow::Result<Option<T>> {
    row.try_get::<_, Option<T>>(index)
        .with_context(|| format!("column {index}"))
}

fn map<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    wrap: impl FnOnce(T) -> anyhow::Result<DbValue>,
) -> anyhow::Result<DbValue> {
    match get::<T>(row, index)? {
        Some(value) => wrap(value),
        None => Ok(DbValue::DbNull),
    }
}

/// Converts one cell of a result row.
pub fn cell(row: &Row, index: usize) -> anyhow::Result<DbValue> {
    let ty = row.columns()[index].type_().clone();
    match ty {
        Type::BOOL => map(row, index, |v| Ok(DbValue::Boolean(v))),
        Type::CHAR => map(row, index, |v| Ok(DbValue::Int8(v))),
        Type::INT2 => map(row, index, |v| Ok(DbValue::Int16(v))),
        Type::INT4 => map(row, index, |v| Ok(DbValue::Int32(v))),
        Type::INT8 => map(row, index, |v| Ok(DbValue::Int64(v))),
        Type::FLOAT4 => map(row, index, |v| Ok(DbValue::Floating32(v))),
        Type::FLOAT8 => map(row, index, |v| Ok(DbValue::Floating64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            map(row, index, |v: String| Ok(DbValue::Str(v)))
        }
        Type::BYTEA => map(row, index, |v: Vec<u8>| Ok(DbValue::Binary(v))),
        Type::DATE => map(row, index, |v: NaiveDate| {
            Ok(DbValue::Date(date_to_wit(v)?))
        }),
        Type::TIME => map(row, index, |v: NaiveTime| {
            Ok(DbValue::Time(time_to_wit(v)?))
        }),
        Type::TIMESTAMP => map(row, index, |v: NaiveDateTime| {
            Ok(DbValue::Datetime(datetime_to_wit(v)?))
        }),
        // Date-times cross the interface as UTC without a zone.
        Type::TIMESTAMPTZ => map(row, index, |v: chrono::DateTime<chrono::Utc>| {
            Ok(DbValue::Datetime(datetime_to_wit(v.naive_utc())?))
        }),
        Type::UUID => map(row, index, |v: uuid::Uuid| Ok(DbValue::Uuid(v.to_string()))),
        Type::JSON | Type::JSONB => map(row, index, |v: serde_json::Value| {
            Ok(DbValue::Jsonb(serde_json::to_vec(&v)?))
        }),
        Type::NUMERIC => map(row, index, |v: Decimal| Ok(DbValue::Decimal(v.to_string()))),
        Type::INT4_RANGE => map(row, index, |v: Range<i32>| {
            Ok(DbValue::RangeInt32(range_to_wit(&v, |x| *x)))
        }),
        Type::INT8_RANGE => map(row, index, |v: Range<i64>| {
            Ok(DbValue::RangeInt64(range_to_wit(&v, |x| *x)))
        }),
        Type::NUM_RANGE => map(row, index, |v: Range<RangeDecimal>| {
            Ok(DbValue::RangeDecimal(range_to_wit(&v, |x| x.0.to_string())))
        }),
        Type::INT4_ARRAY => map(row, index, |v| Ok(DbValue::ArrayInt32(v))),
        Type::INT8_ARRAY => map(row, index, |v| Ok(DbValue::ArrayInt64(v))),
        Type::NUMERIC_ARRAY => map(row, index, |v: Vec<Option<Decimal>>| {
            Ok(DbValue::ArrayDecimal(
                v.into_iter().map(|d| d.map(|d| d.to_string())).collect(),
            ))
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            map(row, index, |v| Ok(DbValue::ArrayStr(v)))
        }
        Type::INTERVAL => map(row, index, |v: PgInterval| Ok(DbValue::Interval(v.0))),
        _ => map(row, index, |v: RawValue| Ok(DbValue::Unsupported(v.0))),
    }
}

/// Converts a guest parameter into something the driver can bind.
pub fn parameter(value: &ParameterValue) -> anyhow::Result<Box<dyn ToSql + Send + Sync>> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date(v) => Box::new(date_from_wit(*v)?),
        ParameterValue::Time(v) => Box::new(time_from_wit(*v)?),
        ParameterValue::Datetime(v) => Box::new(PgDatetime(datetime_from_wit(*v)?)),
        ParameterValue::Timestamp(secs) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(*secs, 0)
                .ok_or_else(|| anyhow!("timestamp {secs} is out of range"))?,
        ),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(v).with_context(|| format!("invalid UUID `{v}`"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(v).context("invalid JSON parameter")?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(v)?),
        ParameterValue::RangeInt32(v) => Box::new(range_from_wit(v, |x| Ok(*x))?),
        ParameterValue::RangeInt64(v) => Box::new(range_from_wit(v, |x| Ok(*x))?),
        ParameterValue::RangeDecimal(v) => {
            Box::new(range_from_wit(v, |x| decimal(x).map(RangeDecimal))?)
        }
        ParameterValue::ArrayInt32(v) => Box::new(v.clone()),
        ParameterValue::ArrayInt64(v) => Box::new(v.clone()),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<anyhow::Result<Vec<Option<Decimal>>>>()?,
        ),
        ParameterValue::ArrayStr(v) => Box::new(v.clone()),
        ParameterValue::Interval(v) => Box::new(PgInterval(*v)),
        ParameterValue::DbNull => Box::new(Null),
    })
}

fn decimal(text: &str) -> anyhow::Result<Decimal> {
    Decimal::from_str_exact(text).with_context(|| format!("invalid decimal `{text}`"))
}

type WitDate = (i32, u8, u8);
type WitTime = (u8, u8, u8, u32);
type WitDatetime = (i32, u8, u8, u8, u8, u8, u32);

fn date_to_wit(d: NaiveDate) -> anyhow::Result<WitDate> {
    Ok((d.year(), u8::try_from(d.month())?, u8::try_from(d.day())?))
}

fn time_to_wit(t: NaiveTime) -> anyhow::Result<WitTime> {
    Ok((
        u8::try_from(t.hour())?,
        u8::try_from(t.minute())?,
        u8::try_from(t.second())?,
        t.nanosecond(),
    ))
}

fn datetime_to_wit(dt: NaiveDateTime) -> anyhow::Result<WitDatetime> {
    let (y, mo, d) = date_to_wit(dt.date())?;
    let (h, mi, s, ns) = time_to_wit(dt.time())?;
    Ok((y, mo, d, h, mi, s, ns))
}

fn date_from_wit((y, m, d): WitDate) -> anyhow::Result<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m.into(), d.into())
        .ok_or_else(|| anyhow!("invalid date {y}-{m}-{d}"))
}

fn time_from_wit((h, m, s, ns): WitTime) -> anyhow::Result<NaiveTime> {
    NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| anyhow!("invalid time {h}:{m}:{s}.{ns}"))
}

fn datetime_from_wit((y, mo, d, h, mi, s, ns): WitDatetime) -> anyhow::Result<NaiveDateTime> {
    Ok(NaiveDateTime::new(
        date_from_wit((y, mo, d))?,
        time_from_wit((h, mi, s, ns))?,
    ))
}

type WitRange<T> = (Option<(T, RangeBoundKind)>, Option<(T, RangeBoundKind)>);

fn kind_to_wit(kind: BoundType) -> RangeBoundKind {
    match kind {
        BoundType::Inclusive => RangeBoundKind::Inclusive,
        BoundType::Exclusive => RangeBoundKind::Exclusive,
    }
}

fn kind_from_wit(kind: RangeBoundKind) -> BoundType {
    match kind {
        RangeBoundKind::Inclusive => BoundType::Inclusive,
        RangeBoundKind::Exclusive => BoundType::Exclusive,
    }
}

fn range_to_wit<T: PartialOrd + Normalizable, U>(
    range: &Range<T>,
    convert: impl Fn(&T) -> U,
) -> WitRange<U> {
    fn bound<S: BoundSided, T, U>(
        b: &RangeBound<S, T>,
        convert: &impl Fn(&T) -> U,
    ) -> (U, RangeBoundKind) {
        (convert(&b.value), kind_to_wit(b.type_))
    }
    (
        range.lower().map(|b| bound(b, &convert)),
        range.upper().map(|b| bound(b, &convert)),
    )
}

fn range_from_wit<T: PartialOrd + Normalizable, U>(
    (lower, upper): &WitRange<U>,
    convert: impl Fn(&U) -> anyhow::Result<T>,
) -> anyhow::Result<Range<T>> {
    let lower = match lower {
        Some((v, k)) => Some(RangeBound::new(convert(v)?, kind_from_wit(*k))),
        None => None,
    };
    let upper = match upper {
        Some((v, k)) => Some(RangeBound::new(convert(v)?, kind_from_wit(*k))),
        None => None,
    };
    Ok(Range::new(lower, upper))
}

/// NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// A date-time parameter: binds to `timestamp`, and to `timestamptz` as UTC.
#[derive(Debug)]
struct PgDatetime(NaiveDateTime);

impl ToSql for PgDatetime {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::TIMESTAMPTZ {
            self.0.and_utc().to_sql(ty, out)
        } else {
            self.0.to_sql(ty, out)
        }
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }
    to_sql_checked!();
}

/// `interval` in PostgreSQL's binary format: microseconds, days, months.
#[derive(Debug)]
struct PgInterval(Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let bytes: [u8; 16] = raw
            .try_into()
            .map_err(|_| format!("interval of {} bytes", raw.len()))?;
        let (micros, rest) = bytes.split_at(8);
        let (days, months) = rest.split_at(4);
        Ok(PgInterval(Interval {
            micros: i64::from_be_bytes(micros.try_into()?),
            days: i32::from_be_bytes(days.try_into()?),
            months: i32::from_be_bytes(months.try_into()?),
        }))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// `numeric` as a range element; numeric ranges are continuous, so bounds
/// need no normalisation.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct RangeDecimal(Decimal);

impl Normalizable for RangeDecimal {
    fn normalize<S: BoundSided>(bound: RangeBound<S, Self>) -> RangeBound<S, Self> {
        bound
    }
}

impl ToSql for RangeDecimal {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.0.to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        <Decimal as ToSql>::accepts(ty)
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for RangeDecimal {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Decimal::from_sql(ty, raw).map(RangeDecimal)
    }
    fn accepts(ty: &Type) -> bool {
        <Decimal as FromSql>::accepts(ty)
    }
}

/// Any other type, passed through in its binary wire format.
struct RawValue(Vec<u8>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(RawValue(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_round_trips_through_wit_tuples() {
        let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_nano_opt(23, 59, 58, 123_456_000)
            .unwrap();
        let wit = datetime_to_wit(dt).unwrap();
        assert_eq!(wit, (2024, 2, 29, 23, 59, 58, 123_456_000));
        assert_eq!(datetime_from_wit(wit).unwrap(), dt);
        assert!(datetime_from_wit((2023, 2, 29, 0, 0, 0, 0)).is_err());
    }

    #[test]
    fn interval_encodes_in_wire_order() {
        let interval = PgInterval(Interval {
            micros: 1_500_000,
            days: -2,
            months: 14,
        });
        let mut buf = BytesMut::new();
        interval.to_sql(&Type::INTERVAL, &mut buf).unwrap();
        let back = PgInterval::from_sql(&Type::INTERVAL, &buf).unwrap();
        assert_eq!(
            (back.0.micros, back.0.days, back.0.months),
            (interval.0.micros, interval.0.days, interval.0.months)
        );
        assert!(PgInterval::from_sql(&Type::INTERVAL, &buf[..15]).is_err());
    }

    #[test]
    fn invalid_parameters_are_reported() {
        assert!(parameter(&ParameterValue::Uuid("nope".into())).is_err());
        assert!(parameter(&ParameterValue::Decimal("1.2.3".into())).is_err());
        assert!(parameter(&ParameterValue::Jsonb(b"{".to_vec())).is_err());
        assert!(parameter(&ParameterValue::Date((2023, 13, 1))).is_err());
        assert!(parameter(&ParameterValue::Str("ok".into())).is_ok());
    }
}
