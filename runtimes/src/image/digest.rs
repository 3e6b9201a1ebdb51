//! sha256 digests: hashing readers and writers, chain ids, and content checks.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a validated `sha256:<hex>` digest.
pub(crate) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Fails with `DataLoss` naming `what` when `bytes` do not hash to `expected`.
pub(crate) fn verify(what: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(Error::DataLoss {
            what: format!("{what} {expected}"),
            message: format!("content has digest {actual}"),
        })
    }
}

/// The chain ids of a layer stack, bottom first: `chain(0) = diff(0)`,
/// `chain(n) = sha256(chain(n-1) + " " + diff(n))` (OCI image spec).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => sha256(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Incremental sha256.
#[derive(Default)]
pub(crate) struct Hasher {
    sha: Sha256,
}

impl Hasher {
    /// Adds `bytes`.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
    }

    /// `sha256:<hex>` of everything seen.
    pub(crate) fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.sha.finalize()))
    }
}

/// A reader that hashes what passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::default(),
        }
    }

    /// Reads the rest of the stream (a tar's trailing padding counts) and returns its digest.
    pub(crate) fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A copy of `error` for each waiter of a shared operation (`Error` is not `Clone`
/// because `std::io::Error` is not).
pub(crate) fn share_error(error: &Error) -> Error {
    match error {
        Error::RouteToPeer {
            service,
            required_os,
            handler,
            container_id,
            reason,
        } => Error::RouteToPeer {
            service: service.clone(),
            required_os: required_os.clone(),
            handler: handler.clone(),
            container_id: container_id.clone(),
            reason: reason.clone(),
        },
        Error::Delegated {
            delegate,
            code,
            message,
        } => Error::Delegated {
            delegate: delegate.clone(),
            code: *code,
            message: message.clone(),
        },
        Error::NotFound { kind, id } => Error::NotFound {
            kind,
            id: id.clone(),
        },
        Error::AlreadyExists { kind, id } => Error::AlreadyExists {
            kind,
            id: id.clone(),
        },
        Error::InvalidSpec(m) => Error::InvalidSpec(m.clone()),
        Error::Unsupported { backend, operation } => Error::Unsupported {
            backend: backend.clone(),
            operation,
        },
        Error::WrongPlatform {
            image,
            platform,
            backend,
            supported,
        } => Error::WrongPlatform {
            image: image.clone(),
            platform: platform.clone(),
            backend: backend.clone(),
            supported: supported.clone(),
        },
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::Unavailable { service, message } => Error::Unavailable {
            service: service.clone(),
            message: message.clone(),
        },
        Error::Unauthenticated { service, message } => Error::Unauthenticated {
            service: service.clone(),
            message: message.clone(),
        },
        Error::DeadlineExceeded { operation, after } => Error::DeadlineExceeded {
            operation: operation.clone(),
            after: *after,
        },
        Error::DataLoss { what, message } => Error::DataLoss {
            what: what.clone(),
            message: message.clone(),
        },
        Error::Backend { backend, message } => Error::Backend {
            backend: backend.clone(),
            message: message.clone(),
        },
        Error::Failures { what, failures } => Error::Failures {
            what: what.clone(),
            failures: failures.iter().map(share_error).collect(),
        },
        // The source's kind is lost; its text (and its sources') is kept.
        Error::Internal {
            backend,
            what,
            source,
        } => Error::Internal {
            backend: backend.clone(),
            what: what.clone(),
            source: crate::error::error_chain(source.as_ref()).into(),
        },
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
        // Image operations never fail with one; its text is kept.
        Error::Cni(e) => Error::backend("cni", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = sha256(b"a");
        let b = sha256(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha256(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn verify_names_the_expected_digest() {
        let good = sha256(b"x");
        assert!(verify("blob", b"x", &good).is_ok());
        match verify("blob", b"y", &good) {
            Err(Error::DataLoss { what, message }) => {
                assert_eq!(what, format!("blob {good}"));
                assert!(message.contains(&sha256(b"y")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hashing_reader_counts_the_tail() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), sha256(b"hello world"));
    }
}
