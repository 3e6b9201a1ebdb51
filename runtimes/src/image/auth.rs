//! Registry credentials: CRI's `AuthConfig` shapes turned into what oci-client sends,
//! including the OAuth2 refresh-token exchange for Docker identity tokens.

use std::time::Duration;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth as OciAuth;

use super::config::Endpoint;
use crate::error::{Error, Result};
use crate::types::RegistryAuth;

/// The client id berth announces to token services.
const CLIENT_ID: &str = "berth";

/// A credential in one of the forms a registry accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// No credentials.
    Anonymous,
    /// HTTP basic auth (or the basic part of a token exchange).
    Basic(String, String),
    /// A refresh token to exchange for a bearer token.
    Identity(String),
    /// A bearer token to send as is.
    Bearer(String),
}

impl Credential {
    /// Reads `auth` in containerd's order of precedence: username, identity token,
    /// `auth` (base64 `user:password`), registry token.
    pub(crate) fn from_auth(auth: Option<&RegistryAuth>) -> Result<Credential> {
        let Some(auth) = auth else {
            return Ok(Credential::Anonymous);
        };
        if !auth.username.is_empty() {
            return Ok(Credential::Basic(
                auth.username.clone(),
                auth.password.clone(),
            ));
        }
        if !auth.identity_token.is_empty() {
            return Ok(Credential::Identity(auth.identity_token.clone()));
        }
        if !auth.auth.is_empty() {
            let bad = || Error::InvalidSpec("auth: not base64 of \"username:password\"".into());
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.auth.trim())
                .map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (user, password) = text.split_once(':').ok_or_else(bad)?;
            return Ok(Credential::Basic(user.to_string(), password.to_string()));
        }
        if !auth.registry_token.is_empty() {
            return Ok(Credential::Bearer(auth.registry_token.clone()));
        }
        Ok(Credential::Anonymous)
    }

    /// True when the request carried no usable credentials.
    pub(crate) fn is_anonymous(&self) -> bool {
        matches!(self, Credential::Anonymous)
    }

    /// What oci-client sends to `endpoint` for repository `path`; an identity token
    /// is exchanged for a bearer token first.
    pub(crate) async fn to_oci(&self, endpoint: &Endpoint, path: &str) -> Result<OciAuth> {
        Ok(match self {
            Credential::Anonymous => OciAuth::Anonymous,
            Credential::Basic(u, p) => OciAuth::Basic(u.clone(), p.clone()),
            Credential::Bearer(t) => OciAuth::Bearer(t.clone()),
            Credential::Identity(t) => OciAuth::Bearer(exchange(endpoint, path, t).await?),
        })
    }
}

/// Exchanges a refresh token for an access token at the realm the registry names in
/// its `WWW-Authenticate: Bearer` challenge (Docker's token spec, `grant_type=refresh_token`).
async fn exchange(endpoint: &Endpoint, path: &str, refresh_token: &str) -> Result<String> {
    let service = endpoint.describe();
    let unavailable = |e: reqwest::Error| Error::Unavailable {
        service: service.clone(),
        message: crate::error::error_chain(&e),
    };
    let refused = |message: String| Error::Unauthenticated {
        service: service.clone(),
        message,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(unavailable)?;
    let scheme = if endpoint.plain_http { "http" } else { "https" };
    let ping = client
        .get(format!("{scheme}://{}/v2/", endpoint.host))
        .send()
        .await
        .map_err(unavailable)?;
    let challenge = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_bearer_challenge)
        .ok_or_else(|| {
            refused("an identity token needs a registry that asks for bearer tokens".into())
        })?;
    let mut form =
        reqwest::Url::parse("http://form.invalid/").map_err(|e| refused(e.to_string()))?;
    form.query_pairs_mut()
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token)
        .append_pair("client_id", CLIENT_ID)
        .append_pair("scope", &format!("repository:{path}:pull"));
    if let Some(svc) = &challenge.service {
        form.query_pairs_mut().append_pair("service", svc);
    }
    let response = client
        .post(&challenge.realm)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form.query().unwrap_or_default().to_string())
        .send()
        .await
        .map_err(unavailable)?;
    let status = response.status();
    let body = response.text().await.map_err(unavailable)?;
    if !status.is_success() {
        return Err(refused(format!(
            "token service {} answered {status}: {body}",
            challenge.realm
        )));
    }
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        token: String,
    }
    let parsed: TokenResponse = serde_json::from_str(&body).map_err(|e| {
        refused(format!(
            "token service {} sent no token: {e}",
            challenge.realm
        ))
    })?;
    match (parsed.access_token, parsed.token) {
        (a, _) if !a.is_empty() => Ok(a),
        (_, t) if !t.is_empty() => Ok(t),
        _ => Err(refused(format!(
            "token service {} sent an empty token",
            challenge.realm
        ))),
    }
}

/// `realm` and `service` of a `Bearer` challenge.
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, t)| (v, t)),
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(f: impl FnOnce(&mut RegistryAuth)) -> RegistryAuth {
        let mut a = RegistryAuth::default();
        f(&mut a);
        a
    }

    #[test]
    fn precedence_and_decoding() {
        assert_eq!(Credential::from_auth(None).unwrap(), Credential::Anonymous);
        assert_eq!(
            Credential::from_auth(Some(&RegistryAuth::default())).unwrap(),
            Credential::Anonymous
        );
        let a = auth(|a| {
            a.username = "u".into();
            a.password = "p".into();
            a.identity_token = "i".into();
        });
        assert_eq!(
            Credential::from_auth(Some(&a)).unwrap(),
            Credential::Basic("u".into(), "p".into())
        );
        let a = auth(|a| a.auth = base64::engine::general_purpose::STANDARD.encode("user:pa:ss"));
        assert_eq!(
            Credential::from_auth(Some(&a)).unwrap(),
            Credential::Basic("user".into(), "pa:ss".into())
        );
        let a = auth(|a| a.registry_token = "t".into());
        assert_eq!(
            Credential::from_auth(Some(&a)).unwrap(),
            Credential::Bearer("t".into())
        );
        let a = auth(|a| a.identity_token = "r".into());
        assert_eq!(
            Credential::from_auth(Some(&a)).unwrap(),
            Credential::Identity("r".into())
        );
        let a = auth(|a| a.auth = "!!!".into());
        assert!(matches!(
            Credential::from_auth(Some(&a)),
            Err(Error::InvalidSpec(_))
        ));
    }

    #[test]
    fn bearer_challenges_are_parsed() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="reg.example",scope="x""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("reg.example".into())
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer service=x"), None);
    }
}
