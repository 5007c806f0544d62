//! Reading the control paragraph of a `.deb`: an `ar` archive whose `control.tar` member
//! (uncompressed, gzip, xz or zstd, as dpkg-deb writes them) holds a `control` file.
//! Pure over bytes; the caller reads the file.

use std::io::{self, Read};

/// Why the control paragraph could not be read from a package.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("not a Debian package: no `!<arch>` ar header")]
    NotAnArchive,
    #[error("malformed ar member header at byte {offset}")]
    MalformedMember { offset: usize },
    #[error("no control.tar member")]
    NoControlMember,
    #[error("member {member}: unsupported compression")]
    UnsupportedCompression { member: String },
    #[error("member {member}: cannot decompress or read the tar archive")]
    Extract {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("member {member}: no `control` file")]
    NoControlFile { member: String },
    #[error("control file is not UTF-8")]
    NotUtf8,
    #[error("control file has no {field} field")]
    MissingField { field: &'static str },
    #[error("control file line {line}: not `Field: value` nor a continuation line")]
    MalformedLine { line: usize },
}

/// Fields the repository computes itself: any copy in a control file is dropped.
const REPOSITORY_FIELDS: [&str; 6] = ["Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512"];

/// A package's control paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The paragraph as found (trailing blank lines removed), each line ending in `\n`,
    /// without the fields in `REPOSITORY_FIELDS`.
    pub paragraph: String,
    pub package: String,
    pub version: String,
    pub architecture: String,
}

impl Control {
    /// Parses a control paragraph and checks the fields an index needs.
    pub fn parse(text: &str) -> Result<Control, DebError> {
        let mut paragraph = String::new();
        let (mut package, mut version, mut architecture) = (None, None, None);
        let mut skipping = false;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                // The first paragraph ends at the first blank line.
                if paragraph.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with([' ', '\t']) {
                if paragraph.is_empty() && !skipping {
                    return Err(DebError::MalformedLine { line: number + 1 });
                }
                if !skipping {
                    paragraph.push_str(line);
                    paragraph.push('\n');
                }
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(DebError::MalformedLine { line: number + 1 });
            };
            let value = value.trim();
            skipping = REPOSITORY_FIELDS
                .iter()
                .any(|field| field.eq_ignore_ascii_case(name));
            if skipping {
                continue;
            }
            match name.to_ascii_lowercase().as_str() {
                "package" => package = Some(value.to_owned()),
                "version" => version = Some(value.to_owned()),
                "architecture" => architecture = Some(value.to_owned()),
                _ => {}
            }
            paragraph.push_str(line);
            paragraph.push('\n');
        }
        let require = |value: Option<String>, field| {
            value
                .filter(|value| !value.is_empty())
                .ok_or(DebError::MissingField { field })
        };
        Ok(Control {
            package: require(package, "Package")?,
            version: require(version, "Version")?,
            architecture: require(architecture, "Architecture")?,
            paragraph,
        })
    }
}

/// The control paragraph of the `.deb` whose whole content is `deb`.
pub fn read_control(deb: &[u8]) -> Result<Control, DebError> {
    let (member, data) = ar_members(deb)?
        .into_iter()
        .find(|(name, _)| name.starts_with("control.tar"))
        .ok_or(DebError::NoControlMember)?;
    let extract = |source| DebError::Extract {
        member: member.to_owned(),
        source,
    };
    let tar = decompress(member, data).map_err(|error| match error {
        Decompress::Unsupported => DebError::UnsupportedCompression {
            member: member.to_owned(),
        },
        Decompress::Io(source) => extract(source),
    })?;
    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().map_err(extract)? {
        let mut entry = entry.map_err(extract)?;
        let path = entry.path().map_err(extract)?;
        let is_control = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .map(|c| c.as_os_str())
            .eq([std::ffi::OsStr::new("control")]);
        if is_control {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(extract)?;
            let text = String::from_utf8(text).map_err(|_| DebError::NotUtf8)?;
            return Control::parse(&text);
        }
    }
    Err(DebError::NoControlFile {
        member: member.to_owned(),
    })
}

const AR_MAGIC: &[u8] = b"!<arch>\n";
const AR_HEADER_LENGTH: usize = 60;

/// The members of an ar archive: (name, data). GNU `name/` endings are trimmed.
fn ar_members(archive: &[u8]) -> Result<Vec<(&str, &[u8])>, DebError> {
    let mut rest = archive
        .strip_prefix(AR_MAGIC)
        .ok_or(DebError::NotAnArchive)?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        let offset = archive.len() - rest.len();
        let malformed = DebError::MalformedMember { offset };
        if rest.len() < AR_HEADER_LENGTH || &rest[58..60] != b"`\n" {
            return Err(malformed);
        }
        let header = &rest[..AR_HEADER_LENGTH];
        let name = std::str::from_utf8(&header[..16]).map_err(|_| malformed)?;
        let name = name.trim_end().trim_end_matches('/');
        let size = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|size| size.trim_end().parse::<usize>().ok())
            .ok_or(DebError::MalformedMember { offset })?;
        let body = &rest[AR_HEADER_LENGTH..];
        if body.len() < size {
            return Err(DebError::MalformedMember { offset });
        }
        members.push((name, &body[..size]));
        // Members are padded to an even length.
        let next = (size + size % 2).min(body.len());
        rest = &body[next..];
    }
    Ok(members)
}

enum Decompress {
    Unsupported,
    Io(io::Error),
}

fn decompress(member: &str, data: &[u8]) -> Result<Vec<u8>, Decompress> {
    let mut out = Vec::new();
    match member.strip_prefix("control.tar") {
        Some("") => out.extend_from_slice(data),
        Some(".gz") => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(Decompress::Io)?;
        }
        Some(".xz") => {
            lzma_rs::xz_decompress(&mut io::BufReader::new(data), &mut out)
                .map_err(|error| Decompress::Io(io::Error::other(error.to_string())))?;
        }
        Some(".zst") => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|error| Decompress::Io(io::Error::other(error.to_string())))?;
            decoder.read_to_end(&mut out).map_err(Decompress::Io)?;
        }
        _ => return Err(Decompress::Unsupported),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROL: &str = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\n\
        Maintainer: Someone <someone@example.com>\nDescription: says hello\n \
        a longer description\n .\n second paragraph\n";

    fn control_tar(control: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(control.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "./control", control.as_bytes())
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                "100644",
                data.len()
            );
            assert_eq!(header.len(), AR_HEADER_LENGTH);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn deb(member: &str, compressed: &[u8]) -> Vec<u8> {
        ar(&[
            ("debian-binary", b"2.0\n"),
            (member, compressed),
            ("data.tar", b"x"),
        ])
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut encoder, data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn control_is_read_whatever_the_compression() {
        let tar = control_tar(CONTROL);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut tar.as_slice(), &mut xz).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            tar.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for (member, data) in [
            ("control.tar", tar.clone()),
            ("control.tar.gz", gzip(&tar)),
            ("control.tar.xz", xz),
            ("control.tar.zst", zst),
        ] {
            let control = read_control(&deb(member, &data)).unwrap();
            assert_eq!(control.package, "hello", "{member}");
            assert_eq!(control.version, "1.0-1");
            assert_eq!(control.architecture, "amd64");
            assert_eq!(control.paragraph, CONTROL);
        }
    }

    #[test]
    fn broken_packages_say_what_is_wrong() {
        assert!(matches!(
            read_control(b"not an archive"),
            Err(DebError::NotAnArchive)
        ));
        assert!(matches!(
            read_control(&ar(&[("debian-binary", b"2.0\n")])),
            Err(DebError::NoControlMember)
        ));
        assert!(matches!(
            read_control(&deb("control.tar.bz2", b"x")),
            Err(DebError::UnsupportedCompression { .. })
        ));
        assert!(matches!(
            read_control(&deb("control.tar.gz", b"not gzip")),
            Err(DebError::Extract { .. })
        ));
        // The second member starts at 72: magic (8), header (60), "2.0\n" (4).
        let mut truncated = deb("control.tar", &control_tar(CONTROL));
        truncated.truncate(200);
        assert!(matches!(
            read_control(&truncated),
            Err(DebError::MalformedMember { offset: 72 })
        ));
    }

    #[test]
    fn repository_fields_are_dropped_and_required_ones_checked() {
        let control = Control::parse(
            "Package: a\nVersion: 1\nArchitecture: all\nSize: 9\nSHA256: x\n continued\n\
             Depends: b\n\nPackage: second paragraph ignored\n",
        )
        .unwrap();
        assert_eq!(
            control.paragraph,
            "Package: a\nVersion: 1\nArchitecture: all\nDepends: b\n"
        );
        assert!(matches!(
            Control::parse("Package: a\nVersion: 1\n"),
            Err(DebError::MissingField {
                field: "Architecture"
            })
        ));
        assert!(matches!(
            Control::parse("Package: a\nno colon here\n"),
            Err(DebError::MalformedLine { line: 2 })
        ));
    }
}
