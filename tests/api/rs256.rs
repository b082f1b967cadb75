//! RS256 user tokens from an identity provider (Entra ID style): a local
//! OpenID discovery + JWKS server, and the attacks that must all be 401.

use std::sync::atomic::Ordering;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::idp::*;

const AUDIENCE: &str = "api://amplifier-sessions";

async fn rs256_app(idp: &Idp, extra: &[(&str, &str)]) -> (TestApp, String) {
    let mut settings = vec![
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_ISSUER", idp.base.as_str()),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_USER_CLAIM", "oid"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(&settings).await;
    let key = app.create_application("entra-app").await;
    (app, key)
}

fn claims(idp: &Idp, user: Uuid) -> Value {
    json!({
        "oid": user.to_string(),
        "iss": idp.base,
        "aud": AUDIENCE,
        "exp": get_current_timestamp() + 600,
        "iat": get_current_timestamp(),
    })
}

async fn call(app: &TestApp, key: &str, token: &str) -> reqwest::Response {
    app.get("/api/users/me/sessions")
        .header("X-API-Key", key)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn entra_style_tokens_are_accepted_and_every_attack_is_401() {
    let signer = signing_key("key-1");
    let idp = start_idp(vec![jwk(&signer)]).await;
    let (app, key) = rs256_app(&idp, &[]).await;
    let user = Uuid::new_v4();

    let body = expect_status(
        call(&app, &key, &sign(&signer, &claims(&idp, user))).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        body["user_id"],
        user.to_string(),
        "the user is the oid claim"
    );

    let now = get_current_timestamp();
    let mut expired = claims(&idp, user);
    expired["exp"] = json!(now - 600);
    let mut wrong_issuer = claims(&idp, user);
    wrong_issuer["iss"] = json!("https://login.example/other-tenant/v2.0");
    let mut wrong_audience = claims(&idp, user);
    wrong_audience["aud"] = json!("api://someone-else");
    let mut no_audience = claims(&idp, user);
    no_audience.as_object_mut().unwrap().remove("aud");

    let stranger = signing_key("key-1");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"key-1"}"#),
        URL_SAFE_NO_PAD.encode(claims(&idp, user).to_string())
    );
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("key-1".into());
    let confusion = encode(
        &confused,
        &claims(&idp, user),
        &EncodingKey::from_secret(&signer.public_pem),
    )
    .unwrap();
    let tampered = {
        let token = sign(&signer, &claims(&idp, user));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(claims(&idp, Uuid::new_v4()).to_string());
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let mut no_kid_header = Header::new(Algorithm::RS256);
    no_kid_header.kid = None;
    let no_kid = encode(&no_kid_header, &claims(&idp, user), &signer.encoding).unwrap();
    // A valid signature, but the header requires an extension (RFC 7515
    // §4.1.11) this service does not understand.
    let mut crit_header = Header::new(Algorithm::RS256);
    crit_header.kid = Some(signer.kid.clone());
    crit_header.crit = Some(vec!["exp".into()]);
    let crit = encode(&crit_header, &claims(&idp, user), &signer.encoding).unwrap();

    let attacks = [
        ("alg none", unsigned),
        ("HS256 signed with the RSA public key", confusion),
        ("expired", sign(&signer, &expired)),
        ("wrong issuer", sign(&signer, &wrong_issuer)),
        ("wrong audience", sign(&signer, &wrong_audience)),
        ("no audience", sign(&signer, &no_audience)),
        (
            "unknown kid",
            sign(
                &SigningKey {
                    kid: "key-9".into(),
                    ..signing_key("x")
                },
                &claims(&idp, user),
            ),
        ),
        ("right kid, other key", sign(&stranger, &claims(&idp, user))),
        ("tampered payload", tampered),
        ("no kid", no_kid),
        ("unknown critical extension", crit),
    ];
    for (name, token) in attacks {
        let response = call(&app, &key, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{name}"
        );
        expect_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

#[tokio::test]
async fn keys_are_cached_and_unknown_kids_refresh_at_most_once_a_minute() {
    let first = signing_key("key-1");
    let idp = start_idp(vec![jwk(&first)]).await;
    let (app, key) = rs256_app(&idp, &[]).await;
    let user = Uuid::new_v4();
    for _ in 0..5 {
        assert_eq!(
            call(&app, &key, &sign(&first, &claims(&idp, user)))
                .await
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        idp.fetches.load(Ordering::SeqCst),
        1,
        "cached after the first fetch"
    );

    // The provider rotates in a new key: the first token naming it triggers
    // one refresh and is accepted.
    let second = signing_key("key-2");
    idp.keys.lock().unwrap().keys.push(jwk(&second));
    assert_eq!(
        call(&app, &key, &sign(&second, &claims(&idp, user)))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);

    // Made-up kids cannot make us fetch again within the minute.
    for i in 0..10 {
        let bogus = SigningKey {
            kid: format!("bogus-{i}"),
            ..signing_key("x")
        };
        let response = call(&app, &key, &sign(&bogus, &claims(&idp, user))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_explicit_jwks_url_works_and_an_unreachable_one_is_503() {
    let signer = signing_key("key-1");
    let idp = start_idp(vec![jwk(&signer)]).await;
    let jwks = format!("{}/keys", idp.base);
    let (app, key) = rs256_app(&idp, &[("JWT_JWKS_URL", jwks.as_str())]).await;
    let token = sign(&signer, &claims(&idp, Uuid::new_v4()));

    idp.up.store(false, Ordering::SeqCst);
    let response = call(&app, &key, &token).await;
    assert_eq!(response.headers()["retry-after"], "2");
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    idp.up.store(true, Ordering::SeqCst);
    // A failure is shared for a second (callers do not each wait for their
    // own timeout), then the keys are fetched again: a failed fetch is not
    // kept.
    wait_for("the keys are fetched again", || async {
        call(&app, &key, &token).await.status() == StatusCode::OK
    })
    .await;
}
