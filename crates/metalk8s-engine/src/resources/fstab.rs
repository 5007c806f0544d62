//! /etc/fstab as `SwapOff` and `Mount` read and edit it.

use metalk8s_transport::Host;

use super::shell;
use crate::resource::ResourceError;

pub(crate) const FSTAB: &str = "/etc/fstab";

/// The fields of an entry; `None` for comments and blank lines.
pub(crate) fn fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(line.split_whitespace().collect())
}

/// Octal escapes of fstab(5) and /proc/swaps: `\040` for a space.
pub(crate) fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|code| u8::from_str_radix(code, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

/// systemd generates mount and swap units from fstab; after an edit they are stale.
pub(crate) async fn reload_systemd(host: &dyn Host) -> Result<(), ResourceError> {
    let script = "if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi";
    shell::run_checked(host, &shell::root(script), || {
        format!("reloading systemd after editing {FSTAB}")
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        assert_eq!(escape("/mnt/my disk"), "/mnt/my\\040disk");
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape(&escape("x\\ y")), "x\\ y");
    }

    #[test]
    fn comments_and_blanks_have_no_fields() {
        assert_eq!(fields("  # UUID=1 / ext4"), None);
        assert_eq!(fields("   "), None);
        assert_eq!(
            fields("UUID=1\t/ ext4  defaults 0 1"),
            Some(vec!["UUID=1", "/", "ext4", "defaults", "0", "1"])
        );
    }
}
