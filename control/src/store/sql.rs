//! One statement API over both backends: what the store modules call.
//!
//! The store functions are written once, in the SQL both SQLite and
//! PostgreSQL understand (`?N` placeholders, `ON CONFLICT`, `RETURNING`,
//! `CAST(... AS BIGINT)`), against this small surface modelled on
//! rusqlite's: [`Tx::prepare_cached`], then `execute`, `query_row`,
//! `query_map`, `query` or `exists` with [`params!`](crate::store::params)
//! and rows read with [`Row::get`]. On PostgreSQL a statement's placeholders
//! are renumbered (`?N` to `$N`) once, when it is first prepared on a
//! connection.
//!
//! Values cross the seam as a handful of kinds ([`Value`]): integers (every
//! integer column is 64-bit on both backends, and booleans are stored as
//! 0 or 1 on both, so a statement's literals mean the same), text, bytes
//! and NULL. Reading converts back, checking ranges: a negative number read
//! as `u64` is an error, never a wrapped value.

/// A statement-level failure, from either backend or from a conversion.
#[derive(Debug)]
pub(crate) enum SqlError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// `query_row` found no row (see [`Optional::optional`]).
    NoRow,
    /// A value could not become what the store asked for.
    Conversion(String),
    /// The store broke a rule of the seam (a bug).
    Misuse(&'static str),
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlError::Sqlite(e) => write!(f, "{e}"),
            SqlError::Postgres(e) => write!(f, "{e}"),
            SqlError::NoRow => f.write_str("no row"),
            SqlError::Conversion(m) => f.write_str(m),
            SqlError::Misuse(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => SqlError::NoRow,
            e => SqlError::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for SqlError {
    fn from(e: postgres::Error) -> Self {
        SqlError::Postgres(e)
    }
}

/// A statement's result.
pub(crate) type Result<T, E = SqlError> = std::result::Result<T, E>;

/// `query_row(..).optional()`: no row is `None`, as with rusqlite.
pub(crate) trait Optional<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> Optional<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(SqlError::NoRow) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A value bound to a placeholder.
#[derive(Clone, Debug)]
pub(crate) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Something that can be bound to a placeholder.
pub(crate) trait Param {
    fn value(&self) -> Result<Value<'_>>;
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Result<Value<'_>> {
        (**self).value()
    }
}

impl Param for str {
    fn value(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl Param for String {
    fn value(&self) -> Result<Value<'_>> {
        Ok(Value::Text(self))
    }
}

impl Param for [u8] {
    fn value(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl<const N: usize> Param for [u8; N] {
    fn value(&self) -> Result<Value<'_>> {
        Ok(Value::Blob(self))
    }
}

impl Param for bool {
    fn value(&self) -> Result<Value<'_>> {
        Ok(Value::Int(i64::from(*self)))
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Result<Value<'_>> {
        match self {
            Some(v) => v.value(),
            None => Ok(Value::Null),
        }
    }
}

impl Param for Value<'_> {
    fn value(&self) -> Result<Value<'_>> {
        Ok(self.clone())
    }
}

/// An owned value, for statements whose placeholders are decided at run
/// time (listing filters).
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

impl Param for Arg {
    fn value(&self) -> Result<Value<'_>> {
        Ok(match self {
            Arg::Int(i) => Value::Int(*i),
            Arg::Text(t) => Value::Text(t),
        })
    }
}

/// `&dyn Param`s of owned arguments, for a call's `params` slice.
pub(crate) fn args(args: &[Arg]) -> Vec<&dyn Param> {
    args.iter().map(|a| a as &dyn Param).collect()
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Result<Value<'_>> {
                i64::try_from(*self).map(Value::Int).map_err(|_| {
                    SqlError::Conversion(format!("{} does not fit a 64-bit column", self))
                })
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, usize, u16, u8);

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

pub(super) fn bind<'p>(params: &'p [&'p dyn Param]) -> Result<Vec<Value<'p>>> {
    params.iter().map(|p| p.value()).collect()
}

/// A row being read.
#[derive(Clone, Copy)]
pub(crate) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `i`, converted to `T` (rusqlite's signature, so that call
    /// sites read the same).
    pub(crate) fn get<I: Index, T: Column>(&self, i: I) -> Result<T> {
        let i = i.index();
        match self {
            Row::Sqlite(r) => T::sqlite(r, i).map_err(SqlError::from),
            Row::Postgres(r) => T::postgres(r, i),
        }
    }
}

/// A column's position (a trait, as rusqlite's, so that a literal `0` is
/// taken for a `usize`).
pub(crate) trait Index {
    fn index(self) -> usize;
}

impl Index for usize {
    fn index(self) -> usize {
        self
    }
}

/// A type a column can be read as.
pub(crate) trait Column: Sized {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self>;
}

/// A PostgreSQL column's type and bytes, whatever its type: decoded below
/// into the few kinds the store uses.
struct Raw<'a> {
    ty: postgres::types::Type,
    bytes: Option<&'a [u8]>,
}

impl<'a> postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw {
            ty: ty.clone(),
            bytes: Some(raw),
        })
    }

    fn from_sql_null(
        ty: &postgres::types::Type,
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw {
            ty: ty.clone(),
            bytes: None,
        })
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
}

/// Column `i` of a PostgreSQL row as one of the seam's kinds.
fn pg_value(row: &postgres::Row, i: usize) -> Result<Option<Owned>> {
    use postgres::types::{FromSql, Type};
    let raw: Raw<'_> = row.try_get(i)?;
    let Some(bytes) = raw.bytes else {
        return Ok(None);
    };
    let bad = |e: Box<dyn std::error::Error + Sync + Send>| {
        SqlError::Conversion(format!("column {i}: {e}"))
    };
    Ok(Some(match raw.ty {
        Type::INT8 => Owned::Int(i64::from_sql(&raw.ty, bytes).map_err(bad)?),
        Type::INT4 => Owned::Int(i32::from_sql(&raw.ty, bytes).map_err(bad)?.into()),
        Type::INT2 => Owned::Int(i16::from_sql(&raw.ty, bytes).map_err(bad)?.into()),
        Type::BOOL => Owned::Int(bool::from_sql(&raw.ty, bytes).map_err(bad)?.into()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            Owned::Text(String::from_sql(&raw.ty, bytes).map_err(bad)?)
        }
        Type::BYTEA => Owned::Blob(bytes.to_vec()),
        ty => {
            return Err(SqlError::Conversion(format!(
                "column {i} has type {ty}, which the store does not read"
            )));
        }
    }))
}

enum Owned {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

fn kind_error(i: usize, want: &str) -> SqlError {
    SqlError::Conversion(format!("column {i} is not {want}"))
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
            fn postgres(row: &postgres::Row, i: usize) -> Result<Self> {
                match pg_value(row, i)? {
                    Some(Owned::Int(v)) => <$t>::try_from(v).map_err(|_| {
                        SqlError::Conversion(format!("column {i}: {v} is out of range"))
                    }),
                    _ => Err(kind_error(i, "an integer")),
                }
            }
        }
    )*};
}
int_column!(i64, i32, u32, u64, usize, u16, u8);

impl Column for bool {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self> {
        match pg_value(row, i)? {
            Some(Owned::Int(v)) => Ok(v != 0),
            _ => Err(kind_error(i, "a boolean")),
        }
    }
}

impl Column for String {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self> {
        match pg_value(row, i)? {
            Some(Owned::Text(v)) => Ok(v),
            _ => Err(kind_error(i, "text")),
        }
    }
}

impl Column for Vec<u8> {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        row.get(i)
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self> {
        match pg_value(row, i)? {
            Some(Owned::Blob(v)) => Ok(v),
            _ => Err(kind_error(i, "bytes")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        match row.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => T::sqlite(row, i).map(Some),
        }
    }
    fn postgres(row: &postgres::Row, i: usize) -> Result<Self> {
        let raw: Raw<'_> = row.try_get(i)?;
        match raw.bytes {
            None => Ok(None),
            Some(_) => T::postgres(row, i).map(Some),
        }
    }
}

/// The placeholders of a statement written for SQLite (`?N`, or `?` in
/// order), renumbered for PostgreSQL (`$N`). Quoted text is left alone.
pub(crate) fn renumber(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1u32;
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::renumber;

    #[test]
    fn placeholders_are_renumbered_outside_quotes_only() {
        assert_eq!(
            renumber("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?3'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?3'"
        );
        assert_eq!(renumber("x = ? AND y = ?"), "x = $1 AND y = $2");
    }
}
