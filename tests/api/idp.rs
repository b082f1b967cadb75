//! A local identity provider (Entra ID style): RSA signing keys made by
//! openssl, an OpenID discovery document and a JWKS that can be taken down.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub public_pem: Vec<u8>,
}

pub fn signing_key(kid: &str) -> SigningKey {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("key.pem");
    let public = dir.path().join("pub.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl could not make a key");
    SigningKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap(),
        public_pem: std::fs::read(&public).unwrap(),
    }
}

pub fn jwk(key: &SigningKey) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&key.encoding, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(key.kid.clone());
    jwk
}

/// A local identity provider: discovery document, JWKS, fetch counter.
/// `up` false answers 503; `hanging` true never answers (and counts the
/// requests left hanging).
#[derive(Clone)]
pub struct Idp {
    pub base: String,
    pub keys: Arc<std::sync::Mutex<JwkSet>>,
    pub fetches: Arc<AtomicUsize>,
    pub up: Arc<AtomicBool>,
    pub hanging: Arc<AtomicBool>,
    pub hung: Arc<AtomicUsize>,
}

pub async fn start_idp(keys: Vec<Jwk>) -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let idp = Idp {
        base: format!("http://{}", listener.local_addr().unwrap()),
        keys: Arc::new(std::sync::Mutex::new(JwkSet { keys })),
        fetches: Arc::new(AtomicUsize::new(0)),
        up: Arc::new(AtomicBool::new(true)),
        hanging: Arc::new(AtomicBool::new(false)),
        hung: Arc::new(AtomicUsize::new(0)),
    };
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(idp): State<Idp>| async move {
                Json(json!({"issuer": idp.base, "jwks_uri": format!("{}/keys", idp.base)}))
            }),
        )
        .route(
            "/keys",
            get(|State(idp): State<Idp>| async move {
                if idp.hanging.load(Ordering::SeqCst) {
                    idp.hung.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                if !idp.up.load(Ordering::SeqCst) {
                    return Err(AxumStatus::SERVICE_UNAVAILABLE);
                }
                idp.fetches.fetch_add(1, Ordering::SeqCst);
                Ok(Json(
                    serde_json::to_value(&*idp.keys.lock().unwrap()).unwrap(),
                ))
            }),
        )
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    idp
}

/// A token signed with `key`, naming it in `kid`.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &key.encoding).unwrap()
}
