//! Sending a checked file: the whole of it or one byte range, streamed from the very
//! descriptor that was verified, never read whole into memory.
//!
//! One blocking thread per download reads the file ahead in large chunks, each into a
//! buffer of its own that becomes the body chunk as is, a few chunks ahead of the socket.
//! That costs one copy less than `tokio::fs::File` (which reads into its own buffer, then
//! copies) and one thread hand-off per chunk rather than per read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::range::RangeRequest;
use crate::verify::VerifiedFile;

/// Size of the reads the body is made of: large enough that a 1 GiB blob is a few
/// thousand reads, small enough to keep memory per download low.
pub const CHUNK_SIZE: usize = 512 * 1024;
/// Chunks read ahead of the socket: at most this many plus one are in memory per download.
const READ_AHEAD: usize = 4;

/// Answers a GET or HEAD for `verified`, honouring a `Range` request, with `headers`
/// (content type, digest) added.
pub(crate) fn file_response(
    verified: VerifiedFile,
    request_headers: &HeaderMap,
    head: bool,
    mut headers: HeaderMap,
) -> Response {
    let length = verified.length;
    let range = request_headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, start, count) = match RangeRequest::parse(range, length) {
        RangeRequest::Full => (StatusCode::OK, 0, length),
        RangeRequest::Partial { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{length}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{length}")),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    headers.insert(header::CONTENT_LENGTH, header_value(&count.to_string()));
    if head {
        return (status, headers).into_response();
    }
    let path = verified.path;
    let body = file_body(verified.file, start, count, path);
    (status, headers, body).into_response()
}

fn file_body(file: File, start: u64, count: u64, path: std::path::PathBuf) -> Body {
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(error) = send_chunks(file, start, count, &sender) {
            tracing::error!(path = %path.display(), %error, "cannot read bundle file");
            // The body ends with an error: the client sees a truncated transfer.
            let _ = sender.blocking_send(Err(error));
        }
    });
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    Body::from_stream(chunks)
}

/// Reads `count` bytes from `start` and sends them as chunks; stops early, without error,
/// when the client has gone.
fn send_chunks(
    mut file: File,
    start: u64,
    count: u64,
    sender: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(start))?;
    let mut remaining = count;
    while remaining > 0 {
        let length = remaining.min(CHUNK_SIZE as u64);
        let mut chunk = Vec::with_capacity(length as usize);
        let read = (&file).take(length).read_to_end(&mut chunk)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was being sent",
            ));
        }
        remaining -= read as u64;
        if sender.blocking_send(Ok(Bytes::from(chunk))).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A header value from text this crate formatted (digits, digests, media types).
pub(crate) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
