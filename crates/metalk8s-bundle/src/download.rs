//! Downloads pinned by sha256 into a cache that survives interrupted runs.
//!
//! The cache holds `sha256/<hex>` (complete and checked) and `sha256/<hex>.partial` (bytes
//! received so far). An interrupted download resumes with an HTTP `Range` request; a
//! server that ignores it sends the whole file again. A complete file whose sha256 is not
//! the pinned one is deleted. Two builds sharing a cache take turns on a file (`flock`).
//!
//! HTTP(S) goes through rustls on the aws-lc-rs provider with the system's trusted
//! certificates; `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` are honoured.

use std::cell::OnceCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, HeaderMap, RANGE};

use crate::progress::Progress;
use crate::walk::sha256_file;

/// Why a download failed. Each names the URL; a cache problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot start the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("download cache {}: cannot read or write", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{url}: request failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: server answered {status}")]
    Status { url: String, status: StatusCode },
    #[error(
        "{url}: transfer interrupted after {received} bytes\n    \
         hint: run the build again, it resumes from the download cache"
    )]
    Interrupted {
        url: String,
        received: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "{url}: sha256 mismatch (expected {expected}, got {actual}); the downloaded file was \
         deleted\n    hint: check the pinned sha256 in the spec against the publisher's"
    )]
    Sha256Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{url}: server sent a range starting at {found}, not the {expected} bytes already received"
    )]
    BadRange {
        url: String,
        expected: u64,
        found: String,
    },
}

/// Fetches URLs into a download cache.
pub struct Downloader {
    client: Client,
    cache: PathBuf,
}

impl Downloader {
    /// A downloader caching into `cache` (created when missing).
    pub fn new(cache: &Path) -> Result<Self, DownloadError> {
        let client = Client::builder()
            .user_agent(concat!("metalk8s/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // In the blocking client this bounds each wait: for the response headers, then
            // for every read of the body, so a slow but moving transfer never times out.
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(DownloadError::Client)?;
        let blobs = cache.join("sha256");
        fs::create_dir_all(&blobs).map_err(|source| DownloadError::Cache {
            path: blobs.clone(),
            source,
        })?;
        Ok(Downloader {
            client,
            cache: cache.to_owned(),
        })
    }

    /// The cached copy of `url`, downloaded (or resumed) when it is not complete yet, and
    /// always checked against `sha256` (lower-case hex).
    pub fn fetch(
        &self,
        url: &str,
        sha256: &str,
        progress: &dyn Progress,
    ) -> Result<PathBuf, DownloadError> {
        self.fetch_with(url, &HeaderMap::new(), sha256, progress)
    }

    /// The HTTP client downloads go through (proxies and timeouts included).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// [`Self::fetch`], sending `headers` (a registry's `Authorization`) with the request.
    /// They go to `url`'s host only: a redirect elsewhere does not carry them.
    pub(crate) fn fetch_with(
        &self,
        url: &str,
        headers: &HeaderMap,
        sha256: &str,
        progress: &dyn Progress,
    ) -> Result<PathBuf, DownloadError> {
        let done = self.cache.join("sha256").join(sha256);
        let cache_error = |path: &Path| {
            let path = path.to_owned();
            move |source| DownloadError::Cache { path, source }
        };
        if self.cached(&done, sha256)? {
            progress.step(&format!("{url}: in the download cache"));
            return Ok(done);
        }
        let partial = self.cache.join("sha256").join(format!("{sha256}.partial"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial)
            .map_err(cache_error(&partial))?;
        // Another build downloading the same file holds the lock until it is done.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|errno| cache_error(&partial)(errno.into()))?;
        if self.cached(&done, sha256)? {
            return Ok(done);
        }
        self.transfer(url, headers, sha256, &mut file, &partial, progress)?;
        file.sync_all().map_err(cache_error(&partial))?;
        let (_, actual) = sha256_file(&partial).map_err(cache_error(&partial))?;
        if actual != sha256 {
            fs::remove_file(&partial).map_err(cache_error(&partial))?;
            return Err(DownloadError::Sha256Mismatch {
                url: url.to_owned(),
                expected: sha256.to_owned(),
                actual,
            });
        }
        fs::rename(&partial, &done).map_err(cache_error(&done))?;
        Ok(done)
    }

    /// Whether a complete, correct copy is cached; a corrupt one is removed.
    fn cached(&self, done: &Path, sha256: &str) -> Result<bool, DownloadError> {
        if !done.is_file() {
            return Ok(false);
        }
        let matches = sha256_file(done).is_ok_and(|(_, actual)| actual == sha256);
        if !matches {
            fs::remove_file(done).map_err(|source| DownloadError::Cache {
                path: done.to_owned(),
                source,
            })?;
        }
        Ok(matches)
    }

    /// Appends the rest of `url` to `file`, which holds the bytes received so far.
    fn transfer(
        &self,
        url: &str,
        headers: &HeaderMap,
        sha256: &str,
        file: &mut File,
        partial: &Path,
        progress: &dyn Progress,
    ) -> Result<(), DownloadError> {
        let cache_error = |source| DownloadError::Cache {
            path: partial.to_owned(),
            source,
        };
        let mut already = file.metadata().map_err(cache_error)?.len();
        let mut response = self.get(url, headers, already)?;
        if already > 0 && response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // The partial file is as long as the whole: complete (a run stopped just
            // before renaming it), or wrong, and then it starts again.
            let (_, actual) = sha256_file(partial).map_err(cache_error)?;
            if actual == sha256 {
                return Ok(());
            }
            already = 0;
            response = self.get(url, headers, 0)?;
        }
        let status = response.status();
        if !status.is_success() {
            return Err(DownloadError::Status {
                url: url.to_owned(),
                status,
            });
        }
        if already > 0 && status == StatusCode::PARTIAL_CONTENT {
            check_range_start(url, &response, already)?;
        } else {
            // A full body: the server ignored the range, or nothing was cached.
            already = 0;
        }
        file.set_len(already).map_err(cache_error)?;
        file.seek(SeekFrom::Start(already)).map_err(cache_error)?;
        let total = response.content_length().map(|length| length + already);
        let bar = progress.transfer(url, total, already);
        let mut received = already;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let count = match response.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    bar.finish();
                    file.flush().ok();
                    return Err(DownloadError::Interrupted {
                        url: url.to_owned(),
                        received,
                        source,
                    });
                }
            };
            file.write_all(&buffer[..count]).map_err(cache_error)?;
            received += count as u64;
            bar.advance(count as u64);
        }
        bar.finish();
        Ok(())
    }

    fn get(&self, url: &str, headers: &HeaderMap, from: u64) -> Result<Response, DownloadError> {
        let mut request = self.client.get(url).headers(headers.clone());
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        request.send().map_err(|source| DownloadError::Request {
            url: url.to_owned(),
            source,
        })
    }
}

/// A [`Downloader`] made on first use: a build from local files never opens the cache.
pub(crate) struct LazyDownloader<'a> {
    cache: &'a Path,
    downloader: OnceCell<Downloader>,
}

impl<'a> LazyDownloader<'a> {
    pub(crate) fn new(cache: &'a Path) -> Self {
        LazyDownloader {
            cache,
            downloader: OnceCell::new(),
        }
    }

    pub(crate) fn get(&self) -> Result<&Downloader, DownloadError> {
        if let Some(downloader) = self.downloader.get() {
            return Ok(downloader);
        }
        let downloader = Downloader::new(self.cache)?;
        Ok(self.downloader.get_or_init(|| downloader))
    }
}

/// A 206 answer must continue exactly where the cached bytes end.
fn check_range_start(url: &str, response: &Response, expected: u64) -> Result<(), DownloadError> {
    let header = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let start = header
        .strip_prefix("bytes ")
        .and_then(|rest| rest.split('-').next())
        .and_then(|start| start.trim().parse::<u64>().ok());
    if start == Some(expected) {
        Ok(())
    } else {
        Err(DownloadError::BadRange {
            url: url.to_owned(),
            expected,
            found: header.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::progress::Silent;

    /// How the test server answers the n-th request.
    #[derive(Clone, Copy)]
    enum Answer {
        /// Announces the whole length, sends `n` bytes, hangs up.
        Truncated(usize),
        /// Honours `Range` with a 206.
        Ranges,
        /// Ignores `Range`: always 200 with the whole body.
        Whole,
        /// 416 to any `Range` (as for one starting at the end), else the whole body.
        Unsatisfiable,
    }

    /// Serves `body` on 127.0.0.1, answering request n with `answers[n]` (the last one
    /// repeats); returns the URL and the `Range` headers received (empty when absent).
    fn serve(body: Vec<u8>, answers: Vec<Answer>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file", listener.local_addr().unwrap());
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges.clone();
        std::thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut range = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("range:") {
                        range = value.trim().to_owned();
                    }
                }
                seen.lock().unwrap().push(range.clone());
                let answer = answers[index.min(answers.len() - 1)];
                let start: usize = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                let (head, data) = match answer {
                    Answer::Truncated(n) => (
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()),
                        &body[..n],
                    ),
                    Answer::Ranges if start > 0 => (
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
                            body.len() - start,
                            body.len() - 1,
                            body.len()
                        ),
                        &body[start..],
                    ),
                    Answer::Unsatisfiable if !range.is_empty() => (
                        format!(
                            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n\r\n",
                            body.len()
                        ),
                        &body[..0],
                    ),
                    Answer::Ranges | Answer::Whole | Answer::Unsatisfiable => (
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()),
                        &body[..],
                    ),
                };
                // One answer per connection: the client must not reuse it.
                let head = head.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(data).unwrap();
                stream.flush().unwrap();
            }
        });
        (url, ranges)
    }

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn body() -> Vec<u8> {
        (0..200_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn an_interrupted_download_resumes_with_a_range_request() {
        let cache = tempfile::tempdir().unwrap();
        let body = body();
        let (url, ranges) = serve(
            body.clone(),
            vec![Answer::Truncated(70_000), Answer::Ranges],
        );
        let downloader = Downloader::new(cache.path()).unwrap();
        let digest = sha256(&body);
        let error = downloader.fetch(&url, &digest, &Silent).unwrap_err();
        assert!(
            matches!(
                error,
                DownloadError::Interrupted {
                    received: 70_000,
                    ..
                }
            ),
            "{error:?}"
        );
        let path = downloader.fetch(&url, &digest, &Silent).unwrap();
        assert_eq!(fs::read(&path).unwrap(), body);
        assert_eq!(*ranges.lock().unwrap(), vec!["", "bytes=70000-"]);
        // A third fetch is served from the cache without asking the server.
        downloader.fetch(&url, &digest, &Silent).unwrap();
        assert_eq!(ranges.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_server_ignoring_ranges_sends_the_whole_file_again() {
        let cache = tempfile::tempdir().unwrap();
        let body = body();
        let (url, ranges) = serve(body.clone(), vec![Answer::Truncated(1000), Answer::Whole]);
        let downloader = Downloader::new(cache.path()).unwrap();
        let digest = sha256(&body);
        downloader.fetch(&url, &digest, &Silent).unwrap_err();
        let path = downloader.fetch(&url, &digest, &Silent).unwrap();
        assert_eq!(fs::read(path).unwrap(), body);
        assert_eq!(*ranges.lock().unwrap(), vec!["", "bytes=1000-"]);
    }

    #[test]
    fn a_wrong_checksum_names_both_and_deletes_the_file() {
        let cache = tempfile::tempdir().unwrap();
        let (url, _) = serve(b"not what was pinned".to_vec(), vec![Answer::Whole]);
        let downloader = Downloader::new(cache.path()).unwrap();
        let pinned = sha256(b"something else");
        let error = downloader.fetch(&url, &pinned, &Silent).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&url), "{message}");
        assert!(message.contains(&pinned), "{message}");
        assert!(
            message.contains(&sha256(b"not what was pinned")),
            "{message}"
        );
        let leftovers: Vec<_> = fs::read_dir(cache.path().join("sha256")).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_complete_partial_file_is_kept_when_the_range_is_past_the_end() {
        let cache = tempfile::tempdir().unwrap();
        let body = body();
        let digest = sha256(&body);
        let (url, ranges) = serve(body.clone(), vec![Answer::Unsatisfiable]);
        let downloader = Downloader::new(cache.path()).unwrap();
        let partial = cache
            .path()
            .join("sha256")
            .join(format!("{digest}.partial"));
        fs::write(&partial, &body).unwrap();
        let path = downloader.fetch(&url, &digest, &Silent).unwrap();
        assert_eq!(fs::read(path).unwrap(), body);
        assert_eq!(
            *ranges.lock().unwrap(),
            vec![format!("bytes={}-", body.len())]
        );

        // A wrong partial file of the same length is downloaded again from the start.
        let (url, ranges) = serve(body.clone(), vec![Answer::Unsatisfiable]);
        fs::remove_file(cache.path().join("sha256").join(&digest)).unwrap();
        fs::write(&partial, vec![0u8; body.len()]).unwrap();
        let path = downloader.fetch(&url, &digest, &Silent).unwrap();
        assert_eq!(fs::read(path).unwrap(), body);
        let ranges = ranges.lock().unwrap().clone();
        assert_eq!(
            ranges,
            vec![format!("bytes={}-", body.len()), String::new()]
        );
    }

    #[test]
    fn a_corrupt_cache_entry_is_downloaded_again() {
        let cache = tempfile::tempdir().unwrap();
        let body = body();
        let digest = sha256(&body);
        let (url, ranges) = serve(body.clone(), vec![Answer::Whole]);
        let downloader = Downloader::new(cache.path()).unwrap();
        fs::write(cache.path().join("sha256").join(&digest), b"rotten").unwrap();
        let path = downloader.fetch(&url, &digest, &Silent).unwrap();
        assert_eq!(fs::read(path).unwrap(), body);
        assert_eq!(ranges.lock().unwrap().len(), 1);
    }
}
