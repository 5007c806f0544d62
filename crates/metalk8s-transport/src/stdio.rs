//! Standard input and output of a running command, shared by the SSH and local hosts.

use std::io;

use crate::OnLine;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A script may exit without reading all its input; that is its business, not an error.
pub(crate) async fn write_ignoring_early_exit(
    pipe: &mut (impl AsyncWrite + Unpin),
    input: &[u8],
) -> io::Result<()> {
    let written = async {
        pipe.write_all(input).await?;
        pipe.shutdown().await
    };
    match written.await {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

pub(crate) async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

/// Reads a pipe to its end, handing each complete line to `on_line` as it arrives.
pub(crate) async fn read_lines(
    pipe: Option<impl AsyncRead + Unpin>,
    on_line: &OnLine<'_>,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(bytes);
    };
    let mut chunk = [0u8; 8192];
    let mut line_start = 0;
    loop {
        let read = pipe.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
        while let Some(end) = bytes[line_start..].iter().position(|b| *b == b'\n') {
            on_line(&String::from_utf8_lossy(
                &bytes[line_start..line_start + end],
            ));
            line_start += end + 1;
        }
    }
    if line_start < bytes.len() {
        on_line(&String::from_utf8_lossy(&bytes[line_start..]));
    }
    Ok(bytes)
}
