//! Talking to registries with oci-client: one client per endpoint and pull (its auth
//! and token caches are per client), mirror fallback, and the mapping of protocol
//! failures onto `runtimes::Error`.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth as OciAuth;

use super::auth::Credential;
use super::config::{Endpoint, RegistryConfig};
use super::manifest::{Descriptor, ACCEPTED};
use super::reference::Reference;
use crate::error::{error_chain, Error, Result};
use crate::types::RegistryAuth;

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a registry may go silent mid-response; bounds a pull that nobody awaits.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest image config read into memory.
const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// One endpoint that answered for an image: the place its manifests and blobs come from.
pub(crate) struct Source {
    client: oci_client::Client,
    reference: oci_client::Reference,
    auth: OciAuth,
    /// The endpoint, for messages.
    pub endpoint: Endpoint,
    /// The image as the user named it, for messages.
    pub image: String,
}

impl Source {
    async fn new(endpoint: Endpoint, image: &Reference, credential: &Credential) -> Result<Source> {
        let protocol = if endpoint.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // Index entries are chosen by the store, which knows the host platform.
            platform_resolver: None,
            ..ClientConfig::default()
        });
        let host = endpoint.host.clone();
        let path = image.path().to_string();
        let reference = match (image.digest(), image.tag()) {
            (Some(digest), _) => oci_client::Reference::with_digest(host, path, digest.to_string()),
            (None, tag) => {
                oci_client::Reference::with_tag(host, path, tag.unwrap_or("latest").to_string())
            }
        };
        let auth = credential.to_oci(&endpoint, image.path()).await?;
        Ok(Source {
            client,
            reference,
            auth,
            endpoint,
            image: image.to_string(),
        })
    }

    /// The manifest the reference names (`digest: None`) or the one with `digest`;
    /// oci-client checks the body against the digest asked for and the registry's
    /// `Docker-Content-Digest`.
    pub(crate) async fn manifest(&self, digest: Option<&str>) -> Result<Bytes> {
        let reference = match digest {
            Some(d) => self.reference.clone_with_digest(d.to_string()),
            None => self.reference.clone(),
        };
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, ACCEPTED)
            .await
            .map_err(|e| self.error(e))?;
        Ok(bytes)
    }

    /// The bytes of blob `desc` as they arrive; the stream ends with an error (a
    /// DigestError, DATA_LOSS in [`stream_error`]) when they are not `desc.digest`.
    pub(crate) async fn blob_stream(
        &self,
        desc: &Descriptor,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let stream = self
            .client
            .pull_blob_stream(&self.reference, desc.digest.as_str())
            .await
            .map_err(|e| self.error(e))?;
        let endpoint = self.endpoint.clone();
        let digest = desc.digest.clone();
        Ok(stream
            .stream
            .map(move |chunk| chunk.map_err(|e| stream_error(&endpoint, &digest, e)))
            .boxed())
    }

    /// A small blob (an image config) read whole, at most `desc.size` bytes.
    pub(crate) async fn blob_bytes(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size > MAX_CONFIG_SIZE {
            return Err(Error::InvalidSpec(format!(
                "image {}: its config {} declares {} bytes, more than the {MAX_CONFIG_SIZE} berth reads",
                self.image, desc.digest, desc.size
            )));
        }
        let mut stream = self.blob_stream(desc).await?;
        let mut out = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0).min(1 << 20));
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
            if out.len() as u64 > desc.size {
                return Err(too_long(&desc.digest, desc.size));
            }
        }
        Ok(out)
    }

    fn error(&self, error: OciDistributionError) -> Error {
        map_error(error, &self.endpoint, &self.image)
    }
}

/// The `DataLoss` for a blob longer than its descriptor says.
pub(crate) fn too_long(digest: &str, size: u64) -> Error {
    Error::DataLoss {
        what: format!("blob {digest}"),
        message: format!("registry sent more than the {size} bytes the manifest declares"),
    }
}

/// Finds the first endpoint (mirrors, then the registry) that serves `image`'s
/// manifest; blobs are then fetched from that endpoint.
pub(crate) async fn resolve(
    config: &RegistryConfig,
    image: &Reference,
    request_auth: Option<&RegistryAuth>,
) -> Result<(Source, Bytes)> {
    let requested = Credential::from_auth(request_auth)?;
    let mut failures: Vec<(Endpoint, Error)> = Vec::new();
    for endpoint in config.endpoints(image.domain()) {
        let credential = if requested.is_anonymous() {
            Credential::from_auth(config.credentials_for(&endpoint.host))?
        } else {
            requested.clone()
        };
        let attempt = async {
            let source = Source::new(endpoint.clone(), image, &credential).await?;
            let bytes = source.manifest(None).await?;
            Ok::<_, Error>((source, bytes))
        };
        match attempt.await {
            Ok(found) => return Ok(found),
            Err(e) => {
                tracing::debug!(image = %image, endpoint = %endpoint.describe(), error = %e, "endpoint failed");
                failures.push((endpoint, e));
            }
        }
    }
    Err(combine(image, failures))
}

/// One error for a pull every endpoint failed: not found wins over unreachable
/// (a mirror that lacks the image is an answer), any other answer wins over both,
/// and all-unreachable names every endpoint tried.
fn combine(image: &Reference, failures: Vec<(Endpoint, Error)>) -> Error {
    let summary = failures
        .iter()
        .map(|(endpoint, e)| match e {
            // Its `service` is this endpoint already; say it once.
            Error::Unavailable { message, .. } => format!("{}: {message}", endpoint.describe()),
            e => format!("{}: {e}", endpoint.describe()),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut not_found = None;
    let mut other = None;
    for (_, error) in failures {
        match error {
            Error::Unavailable { .. } => {}
            e @ Error::NotFound { .. } => not_found = not_found.or(Some(e)),
            e => other = other.or(Some(e)),
        }
    }
    other.or(not_found).unwrap_or_else(|| Error::Unavailable {
        service: format!("registry {}", image.domain()),
        message: summary,
    })
}

/// Maps an oci-client failure at `endpoint` while pulling `image`.
pub(crate) fn map_error(error: OciDistributionError, endpoint: &Endpoint, image: &str) -> Error {
    let service = endpoint.describe();
    let unavailable = |message: String| Error::Unavailable {
        service: service.clone(),
        message,
    };
    let refused = |message: String| Error::Unauthenticated {
        service: service.clone(),
        message,
    };
    let not_found = || Error::not_found("image", image);
    match error {
        OciDistributionError::RequestError(e) => unavailable(error_chain(&e)),
        OciDistributionError::UnauthorizedError { url } => {
            refused(format!("{url} answered 401 Unauthorized"))
        }
        OciDistributionError::AuthenticationFailure(reason) => refused(reason),
        OciDistributionError::RegistryError { envelope, url } => {
            let codes = &envelope.errors;
            if codes.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                not_found()
            } else if codes
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                refused(format!("{url}: {envelope}"))
            } else if codes
                .iter()
                .any(|e| e.code == OciErrorCode::Toomanyrequests)
            {
                unavailable(format!("{url}: {envelope}"))
            } else {
                Error::backend(service, format!("{url}: {envelope}"))
            }
        }
        OciDistributionError::ServerError { code, url, message } => match code {
            404 => not_found(),
            401 | 403 => refused(format!("{url} answered {code}: {message}")),
            429 | 500..=599 => unavailable(format!("{url} answered {code}: {message}")),
            _ => Error::backend(service, format!("{url} answered {code}: {message}")),
        },
        OciDistributionError::DigestError(e) => Error::DataLoss {
            what: format!("manifest of {image} from {service}"),
            message: e.to_string(),
        },
        OciDistributionError::IoError(e) => unavailable(e.to_string()),
        other => Error::internal(service, image, other),
    }
}

/// A failure while streaming blob `digest`: oci-client's own digest check surfaces
/// as an I/O error wrapping a `DigestError`.
fn stream_error(endpoint: &Endpoint, digest: &str, error: std::io::Error) -> Error {
    let is_digest = error
        .get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
    if is_digest {
        Error::DataLoss {
            what: format!("blob {digest}"),
            message: format!(
                "{} sent content that does not match: {error}",
                endpoint.describe()
            ),
        }
    } else {
        Error::Unavailable {
            service: endpoint.describe(),
            message: format!("reading blob {digest}: {}", error_chain(&error)),
        }
    }
}
