//! PostgreSQL's binary `COPY` format: the rows of one table, encoded as the walk goes.

use super::FLUSH_BYTES;

/// The binary `COPY` header: signature, flags, length of the header extension.
pub(super) const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows of one table in PostgreSQL's binary `COPY` format, behind the format's header.
#[derive(Debug, Default)]
pub struct CopyRows {
    pub(super) buf: Vec<u8>,
    rows: u64,
    /// Where the last row started.
    last_row: usize,
}

impl CopyRows {
    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.start_row();
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    pub(super) fn start_row(&mut self) {
        if self.buf.is_empty() {
            // Room for a whole batch at once: growing by doubling copied every batch's bytes
            // again and touched fresh pages each time.
            self.buf.reserve(FLUSH_BYTES + (64 << 10));
            self.buf.extend_from_slice(COPY_HEADER);
        }
        self.rows += 1;
        self.last_row = self.buf.len();
    }

    /// Appends a row another `CopyRows` encoded.
    pub(super) fn raw_row(&mut self, row: &[u8]) {
        self.start_row();
        self.buf.extend_from_slice(row);
    }

    /// Where the last row lies: its start and length.
    pub(super) fn last_row(&self) -> (usize, usize) {
        (self.last_row, self.buf.len() - self.last_row)
    }

    pub(super) fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    /// A SQL NULL.
    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    /// An `integer`.
    pub fn int4(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    /// A `bigint`.
    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    /// A nullable `bigint`.
    pub fn opt_int8(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int8(value),
            None => self.null(),
        }
    }

    /// A nullable `integer`.
    pub fn opt_int4(&mut self, value: Option<i32>) -> &mut Self {
        match value {
            Some(value) => self.int4(value),
            None => self.null(),
        }
    }

    /// A `bytea`: the exact bytes.
    pub fn bytea(&mut self, value: &[u8]) -> &mut Self {
        self.field(value)
    }

    /// A nullable `bytea`.
    pub fn opt_bytea(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(value) => self.field(value),
            None => self.null(),
        }
    }

    /// A `text` or an enum label (both travel as UTF-8 text in binary `COPY`).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    /// A nullable `text`.
    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// Rows held.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The complete `COPY ... (FORMAT binary)` payload (header, rows, trailer); empties `self`.
    pub fn take_payload(&mut self) -> Vec<u8> {
        let mut payload = std::mem::take(&mut self.buf);
        if payload.is_empty() {
            payload.extend_from_slice(COPY_HEADER);
        }
        payload.extend_from_slice(&(-1i16).to_be_bytes());
        self.rows = 0;
        self.last_row = 0;
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn binary_copy_payload_has_header_rows_and_trailer() {
        let mut rows = CopyRows::default();
        rows.row(3).int8(42).bytea(b"a\nb").null();
        assert_eq!(rows.rows(), 1);
        let payload = rows.take_payload();
        assert!(payload.starts_with(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"));
        let body = &payload[19..];
        assert_eq!(&body[..2], &3i16.to_be_bytes());
        assert_eq!(&body[2..6], &8i32.to_be_bytes());
        assert_eq!(&body[6..14], &42i64.to_be_bytes());
        assert_eq!(&body[14..18], &3i32.to_be_bytes());
        assert_eq!(&body[18..21], b"a\nb");
        assert_eq!(&body[21..25], &(-1i32).to_be_bytes());
        assert_eq!(&body[25..], &(-1i16).to_be_bytes());
        assert!(rows.is_empty(), "taking the payload empties the rows");
    }
}
