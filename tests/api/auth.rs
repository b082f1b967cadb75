//! Authentication failures are 401 with a challenge; development mode only
//! fills in missing credentials.

use amplifier_sessions::settings::{DEV_APP_ID, DEV_USER_ID};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

fn signed(claims: &Value, key: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

#[tokio::test]
async fn bad_user_tokens_are_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let now = get_current_timestamp();
    let user = Uuid::new_v4().to_string();
    let secret = SECRET_KEY.as_bytes();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some("Basic abc".to_owned())),
        ("garbage", Some("Bearer not.a.jwt".to_owned())),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                signed(&json!({"sub": user, "exp": now - 600}), secret)
            )),
        ),
        (
            "no exp",
            Some(format!("Bearer {}", signed(&json!({"sub": user}), secret))),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                signed(
                    &json!({"sub": user, "exp": now + 600, "nbf": now + 300}),
                    secret
                )
            )),
        ),
        (
            "wrong signature",
            Some(format!(
                "Bearer {}",
                signed(
                    &json!({"sub": user, "exp": now + 600}),
                    b"some other secret"
                )
            )),
        ),
        (
            "alg none",
            Some(format!(
                "Bearer {}",
                unsigned(&json!({"sub": user, "exp": now + 600}))
            )),
        ),
        (
            "non-uuid subject",
            Some(format!(
                "Bearer {}",
                signed(&json!({"sub": "alice", "exp": now + 600}), secret)
            )),
        ),
        (
            "missing subject",
            Some(format!(
                "Bearer {}",
                signed(&json!({"exp": now + 600}), secret)
            )),
        ),
    ];
    for (case, authorization) in cases {
        let mut request = app
            .get(&format!("/api/sessions/{}", f.session_id))
            .header("X-API-Key", &f.key);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{case}: {challenge:?}");
        expect_problem(response, StatusCode::UNAUTHORIZED).await;
    }
}

/// RFC 7515 §4.1.11: a token whose header lists extensions in `crit` must
/// be refused by a recipient that does not understand them; this service
/// understands none. The same token without `crit` is accepted.
#[tokio::test]
async fn a_token_requiring_unknown_extensions_is_401_saying_so() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let claims = json!({"sub": f.owner.to_string(), "exp": get_current_timestamp() + 600});
    let key = EncodingKey::from_secret(SECRET_KEY.as_bytes());
    let call = |token: String| {
        app.get(&format!("/api/sessions/{}", f.session_id))
            .header("X-API-Key", &f.key)
            .bearer_auth(token)
            .send()
    };
    let mut header = Header::new(Algorithm::HS256);
    expect_status(
        call(encode(&header, &claims, &key).unwrap()).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    header.crit = Some(vec!["exp".to_owned()]);
    let response = call(encode(&header, &claims, &key).unwrap()).await.unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let detail = expect_problem(response, StatusCode::UNAUTHORIZED).await;
    assert!(detail.contains("crit"), "{detail}");
}

#[tokio::test]
async fn tampered_payload_is_401() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let token = app.token(f.owner);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let stranger = Uuid::new_v4();
    parts[1] = URL_SAFE_NO_PAD.encode(
        json!({"sub": stranger.to_string(), "exp": get_current_timestamp() + 600}).to_string(),
    );
    let response = app
        .get(&format!("/api/sessions/{}", f.session_id))
        .header("X-API-Key", &f.key)
        .bearer_auth(parts.join("."))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn bad_api_keys_are_401() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let path = format!("/api/sessions/{}", f.session_id);
    let token = app.token(f.owner);

    let missing = app.get(&path).bearer_auth(&token).send().await.unwrap();
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("ApiKey")
    );
    expect_problem(missing, StatusCode::UNAUTHORIZED).await;

    let invalid = app
        .get(&path)
        .header(
            "X-API-Key",
            "amp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_problem(invalid, StatusCode::UNAUTHORIZED).await;

    app.db()
        .await
        .execute("UPDATE applications SET is_active = false", &[])
        .await
        .unwrap();
    let inactive = app
        .get(&path)
        .header("X-API-Key", &f.key)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let detail = expect_problem(inactive, StatusCode::UNAUTHORIZED).await;
    assert!(detail.contains("deactivated"), "{detail}");
}

#[tokio::test]
async fn without_auth_required_missing_credentials_act_as_the_dev_app_and_user() {
    let app = spawn_app_with(&[("AUTH_REQUIRED", "false")]).await;
    let (config, session) = app.keyless_session().await;
    assert_eq!(session["owner_user_id"], DEV_USER_ID.to_string());
    assert_eq!(session["created_by_app_id"], DEV_APP_ID);

    // Another user's session, asked for without a token: the 404 says the
    // call acted as the development user.
    let other = Uuid::new_v4();
    let theirs = expect_status(
        app.post("/api/sessions")
            .bearer_auth(app.token(other))
            .json(&json!({"config_id": config["config_id"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let path = format!("/api/sessions/{}", theirs["session_id"].as_str().unwrap());
    let detail = expect_problem(app.get(&path).send().await.unwrap(), StatusCode::NOT_FOUND).await;
    assert!(
        detail.contains("acted as the development user")
            && detail.contains(&DEV_USER_ID.to_string()),
        "{detail}"
    );
    // With a token, a 404 is a plain 404.
    let detail = expect_problem(
        app.get(&path)
            .bearer_auth(app.token(Uuid::new_v4()))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(!detail.contains("development user"), "{detail}");

    // Credentials that are supplied are still verified.
    let response = app
        .post("/api/configs")
        .header("X-API-Key", "amp_wrong")
        .json(&json!({"name": "c", "yaml_content": "a: 1"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .get(&format!(
            "/api/sessions/{}",
            session["session_id"].as_str().unwrap()
        ))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}
