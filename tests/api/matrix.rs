//! Every caller role × every session and participant function.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

#[derive(Clone, Copy, Debug)]
enum Caller {
    Owner,
    Editor,
    Viewer,
    Stranger,
}

/// A session with an owner, an editor, a viewer and one more viewer to act on.
struct Cast {
    session: String,
    owner: Uuid,
    editor: Uuid,
    viewer: Uuid,
    target: Uuid,
}

async fn cast(app: &TestApp, key: &str, config_id: Uuid) -> Cast {
    let owner = Uuid::new_v4();
    let session = app.create_session(key, owner, config_id).await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    let (editor, viewer, target) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (user, role) in [(editor, "editor"), (viewer, "viewer"), (target, "viewer")] {
        let response = app.add_participant(key, owner, &session, user, role).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    Cast {
        session,
        owner,
        editor,
        viewer,
        target,
    }
}

/// (operation, method, path suffix, body, expected for owner, editor, viewer, stranger)
type Case = (
    &'static str,
    Method,
    &'static str,
    Option<Value>,
    [StatusCode; 4],
);

#[tokio::test]
async fn role_by_operation_matrix() {
    use Caller::*;
    use StatusCode as S;
    let app = spawn_app().await;
    let key = app.create_application("matrix-app").await;
    let config_id = app.create_config(&key).await;

    let operations: Vec<Case> = vec![
        (
            "get-session",
            Method::GET,
            "",
            None,
            [S::OK, S::OK, S::OK, S::NOT_FOUND],
        ),
        (
            "update-session",
            Method::PATCH,
            "",
            Some(json!({"status": "completed"})),
            [S::OK, S::OK, S::FORBIDDEN, S::NOT_FOUND],
        ),
        (
            "delete-session",
            Method::DELETE,
            "",
            None,
            [S::NO_CONTENT, S::FORBIDDEN, S::FORBIDDEN, S::NOT_FOUND],
        ),
        (
            "append-messages",
            Method::POST,
            "/messages",
            Some(json!({"messages": [{"text": "hi"}]})),
            [S::OK, S::OK, S::FORBIDDEN, S::NOT_FOUND],
        ),
        (
            "list-messages",
            Method::GET,
            "/messages",
            None,
            [S::OK, S::OK, S::OK, S::NOT_FOUND],
        ),
        (
            "export-session",
            Method::GET,
            "/export",
            None,
            [S::OK, S::OK, S::OK, S::NOT_FOUND],
        ),
        (
            "fork-session",
            Method::POST,
            "/fork",
            Some(json!({})),
            [S::CREATED, S::CREATED, S::CREATED, S::NOT_FOUND],
        ),
        (
            "add-participant",
            Method::POST,
            "/participants",
            Some(json!({"user_id": Uuid::new_v4(), "role": "viewer"})),
            [S::CREATED, S::CREATED, S::FORBIDDEN, S::NOT_FOUND],
        ),
        (
            "list-participants",
            Method::GET,
            "/participants",
            None,
            [S::OK, S::OK, S::OK, S::NOT_FOUND],
        ),
        (
            "update-participant",
            Method::PATCH,
            "/participants/{target}",
            Some(json!({"role": "editor"})),
            [S::OK, S::FORBIDDEN, S::FORBIDDEN, S::NOT_FOUND],
        ),
        (
            "remove-participant",
            Method::DELETE,
            "/participants/{target}",
            None,
            [S::NO_CONTENT, S::FORBIDDEN, S::FORBIDDEN, S::NOT_FOUND],
        ),
    ];
    for (name, method, suffix, body, expected) in operations {
        for (caller, status) in [Owner, Editor, Viewer, Stranger].into_iter().zip(expected) {
            let c = cast(&app, &key, config_id).await;
            let user = match caller {
                Owner => c.owner,
                Editor => c.editor,
                Viewer => c.viewer,
                Stranger => Uuid::new_v4(),
            };
            let path = format!(
                "/api/sessions/{}{}",
                c.session,
                suffix.replace("{target}", &c.target.to_string())
            );
            let mut request =
                app.as_user(app.http.request(method.clone(), app.url(&path)), &key, user);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let actual = response.status();
            let text = response.text().await.unwrap();
            assert_eq!(actual, status, "{name} by {caller:?}: {text}");
            if !status.is_success() {
                // Denied calls change nothing.
                let state: Value = serde_json::from_str(
                    &app.scalar::<String>(
                        "SELECT json_build_object('status', status, 'count', message_count,
                                'participants', (SELECT json_agg(role || user_id::text ORDER BY user_id)
                                                 FROM session_participants p WHERE p.session_id = s.session_id))::text
                         FROM sessions s WHERE session_id = $1::text::uuid",
                        &[&c.session],
                    )
                    .await,
                )
                .unwrap();
                assert_eq!(state["status"], "active", "{name} by {caller:?}");
                assert_eq!(state["count"], 0, "{name} by {caller:?}");
                assert_eq!(
                    state["participants"].as_array().unwrap().len(),
                    4,
                    "{name} by {caller:?}"
                );
                assert!(
                    state["participants"]
                        .to_string()
                        .contains(&format!("viewer{}", c.target)),
                    "{name} by {caller:?}"
                );
            }
        }
    }
}
