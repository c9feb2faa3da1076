//! Writing an issued certificate into the certificate directory under Istio's names, and
//! [`provision`]: request one and write it (at startup and on every renewal).
//!
//! The three files are first written to temporary names in the same directory; only when
//! all three are written (a full disk fails here) are they renamed over the old ones, so a
//! reader never sees half a file, and a failed write never leaves a new key beside the old
//! certificate. The key is created with mode 0600 before any byte is written.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tracing::info;

use super::super::cert_dir::CertDir;
use super::client::{CaClient, IssuedCertificate, Validity};
use super::error::CaError;

/// Requests a certificate and writes `cert-chain.pem`, `key.pem` and `root-cert.pem` into
/// `dir` (created if missing). Returns the new leaf's validity, from which the renewal is
/// scheduled.
pub async fn provision(client: &CaClient, dir: &CertDir) -> Result<Validity, CaError> {
    let issued = client.fetch_certificate().await?;
    let root_pem = client.read_root_pem()?;
    write_cert_dir(dir, &issued, &root_pem)?;
    info!(
        ca = %client.address(),
        identity = %client.identity(),
        serial = %hex(&issued.serial),
        dir = %dir.path().display(),
        "certificate issued by Istio's CA"
    );
    Ok(issued.validity)
}

/// Writes `key.pem`, `cert-chain.pem` (leaf and intermediates) and `root-cert.pem` (the
/// mesh roots) into `dir`, creating the directory if needed.
pub(crate) fn write_cert_dir(
    dir: &CertDir,
    issued: &IssuedCertificate,
    root_pem: &str,
) -> Result<(), CaError> {
    std::fs::create_dir_all(dir.path()).map_err(|source| CaError::Write {
        file: dir.path().to_owned(),
        source,
    })?;
    let chain = issued.chain_pem();
    let files = [
        (dir.key_path(), issued.key_pem.as_bytes(), 0o600),
        (dir.cert_chain_path(), chain.as_bytes(), 0o644),
        (dir.root_cert_path(), root_pem.as_bytes(), 0o644),
    ];
    let mut staged = Vec::new();
    for (file, content, mode) in &files {
        match stage(file, content, *mode) {
            Ok(tmp) => staged.push((tmp, file)),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(e);
            }
        }
    }
    for (tmp, file) in staged {
        std::fs::rename(&tmp, file).map_err(|source| CaError::Write {
            file: file.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Writes `content` to a temporary file beside `file`; returns its path.
fn stage(file: &Path, content: &[u8], mode: u32) -> Result<std::path::PathBuf, CaError> {
    let name = file
        .file_name()
        .expect("cert dir paths end in a file name")
        .to_string_lossy();
    let tmp = file.with_file_name(format!(".{name}.tmp"));
    let err = |source| CaError::Write {
        file: file.to_owned(),
        source,
    };
    // A leftover temporary file from a crash may have other permissions; start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(content).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(tmp)
}

/// Lower-case hex of a serial number, as `openssl x509 -serial` would show it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::SystemTime;

    use super::*;

    fn issued() -> IssuedCertificate {
        IssuedCertificate {
            key_pem: "KEY\n".into(),
            chain: vec!["LEAF\n".into(), "INTERMEDIATE\n".into()],
            serial: vec![1],
            validity: Validity {
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH,
            },
        }
    }

    #[test]
    fn writes_the_three_files_with_a_private_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertDir::new(tmp.path().join("new/certs"));
        write_cert_dir(&dir, &issued(), "ROOT\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.key_path()).unwrap(), "KEY\n");
        assert_eq!(
            std::fs::read_to_string(dir.cert_chain_path()).unwrap(),
            "LEAF\nINTERMEDIATE\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.root_cert_path()).unwrap(),
            "ROOT\n"
        );
        let mode = std::fs::metadata(dir.key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem readable by its owner only");
        // Rewriting replaces the files and leaves no temporaries behind.
        write_cert_dir(&dir, &issued(), "ROOT2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.root_cert_path()).unwrap(),
            "ROOT2\n"
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["cert-chain.pem", "key.pem", "root-cert.pem"]);
    }
}
