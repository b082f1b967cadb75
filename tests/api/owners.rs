//! update-participant, remove-participant, and the last-owner rule.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

async fn patch_role(
    app: &TestApp,
    f: &Fixture,
    caller: Uuid,
    user: Uuid,
    role: &str,
) -> reqwest::Response {
    let path = format!("/api/sessions/{}/participants/{user}", f.session_id);
    app.as_user(app.http.patch(app.url(&path)), &f.key, caller)
        .json(&json!({"role": role}))
        .send()
        .await
        .unwrap()
}

async fn remove(app: &TestApp, f: &Fixture, caller: Uuid, user: Uuid) -> reqwest::Response {
    let path = format!("/api/sessions/{}/participants/{user}", f.session_id);
    app.as_user(app.http.delete(app.url(&path)), &f.key, caller)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let detail = expect_problem(
        patch_role(&app, &f, f.owner, f.owner, "editor").await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(detail.contains("owner"), "{detail}");
    expect_problem(
        remove(&app, &f, f.owner, f.owner).await,
        StatusCode::CONFLICT,
    )
    .await;

    // With a second owner, the first may step down.
    let second = Uuid::new_v4();
    app.add_participant(&f.key, f.owner, &f.session_id, second, "editor")
        .await;
    let promoted = expect_status(
        patch_role(&app, &f, f.owner, second, "owner").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(promoted["role"], "owner");
    let demoted = expect_status(
        patch_role(&app, &f, f.owner, f.owner, "viewer").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(demoted["role"], "viewer");
    expect_problem(remove(&app, &f, second, second).await, StatusCode::CONFLICT).await;
    let owners: i64 = app
        .scalar(
            "SELECT count(*) FROM session_participants WHERE role = 'owner'",
            &[],
        )
        .await;
    assert_eq!(owners, 1);
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_leave_one() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let f = app.fixture().await;
        let second = Uuid::new_v4();
        app.add_participant(&f.key, f.owner, &f.session_id, second, "owner")
            .await;
        let (a, b) = tokio::join!(
            patch_role(&app, &f, f.owner, second, "viewer"),
            patch_role(&app, &f, second, f.owner, "viewer"),
        );
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        // One wins; the other either finds itself no longer an owner (403)
        // or would remove the last owner (409). Never both succeed.
        assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::CONFLICT].contains(&statuses[1]),
            "{statuses:?}"
        );
        let owners: i64 = app
            .scalar(
                "SELECT count(*) FROM session_participants WHERE role = 'owner' AND session_id = $1::text::uuid",
                &[&f.session_id],
            )
            .await;
        assert_eq!(owners, 1);
    }
}

#[tokio::test]
async fn participants_may_leave_and_owners_may_remove_others() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let (viewer, editor) = (Uuid::new_v4(), Uuid::new_v4());
    app.add_participant(&f.key, f.owner, &f.session_id, viewer, "viewer")
        .await;
    app.add_participant(&f.key, f.owner, &f.session_id, editor, "editor")
        .await;

    expect_problem(
        remove(&app, &f, editor, viewer).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        remove(&app, &f, viewer, viewer).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remove(&app, &f, f.owner, editor).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.count_rows("session_participants", None).await, 1);
    // Gone means gone: the removed user no longer sees the session.
    let response = app
        .as_user(
            app.get(&format!("/api/sessions/{}", f.session_id)),
            &f.key,
            viewer,
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND).await;
    // Acting on someone who is not a participant.
    let nobody = Uuid::new_v4();
    let detail = expect_problem(
        remove(&app, &f, f.owner, nobody).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(detail.contains(&nobody.to_string()), "{detail}");
    expect_problem(
        patch_role(&app, &f, f.owner, nobody, "editor").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        patch_role(&app, &f, f.owner, f.owner, "admin").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}
