//! Standard input and output of a running command, shared by the SSH and local hosts.

use std::io;

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
