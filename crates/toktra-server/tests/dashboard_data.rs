//! The dashboard's data source over both stores: administrator accounts (migration 2),
//! usage rows equal to the usage API's, device locks, budgets, user mapping and
//! enrollment tokens scoped to the signed-in organization.
//!
//! The PostgreSQL variants are `#[ignore]`d for a plain `cargo test`;
//! `scripts/test.d/50-dashboard.sh` starts a throw-away cluster and runs them.

use chrono::{Duration, Utc};
use std::sync::Arc;
use toktra_server::admin_api::{UsageParams, query_usage};
use toktra_server::dashboard::data::{
    BudgetInput, DashboardData, DataError, DeviceStatus, UsageFilter,
};
use toktra_server::dashboard::store_data::StoreData;
use toktra_server::dashboard::{CreateAdminError, auth, create_admin};
use toktra_server::store::{StoredEvent, User};
use toktra_server::{Admin, Store};
use uuid::Uuid;

#[macro_use]
mod common;

both!(
    admin_accounts,
    usage_matches_the_api,
    devices_budgets_users_tokens
);

fn event(
    user: &str,
    provider: &str,
    product: &str,
    at: chrono::DateTime<Utc>,
    tin: u64,
    tout: u64,
) -> StoredEvent {
    common::event(user, provider, product, at, (tin, tout), 0.25)
}

async fn org_with_device(s: &Arc<dyn Store>) -> (String, String) {
    common::org_with_device(s, "FIN-LT-0203", "Windows 11").await
}

async fn admin_accounts(s: Arc<dyn Store>) {
    let (org, _) = org_with_device(&s).await;
    let data = StoreData::new(s.clone());
    let email = format!("Lead.{}@Example.com", Uuid::now_v7());
    let a = create_admin(&data, &org, &email, "correct horse battery")
        .await
        .unwrap();
    // Stored lower-case, found by the lower-case address, hash verifies the password only.
    let found = data
        .admin_by_email(&email.to_lowercase())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a.id);
    assert_eq!(found.org_id, org);
    assert!(found.password_hash.starts_with("$argon2id$"));
    assert!(auth::verify_password("correct horse battery", &found.password_hash).unwrap());
    assert!(!auth::verify_password("correct horse batter", &found.password_hash).unwrap());
    // The same e-mail twice, a short password, a bad address, an unknown org: refused.
    assert!(matches!(
        create_admin(&data, &org, &email, "another long password").await,
        Err(CreateAdminError::Data(DataError::Invalid(_)))
    ));
    assert!(matches!(
        create_admin(&data, &org, "x@example.com", "short").await,
        Err(CreateAdminError::Password(
            auth::AuthError::PasswordTooShort
        ))
    ));
    assert!(matches!(
        create_admin(&data, &org, "not-an-address", "long enough password").await,
        Err(CreateAdminError::BadEmail(_))
    ));
    assert!(matches!(
        create_admin(
            &data,
            "no-such-org",
            "y@example.com",
            "long enough password"
        )
        .await,
        Err(CreateAdminError::Data(DataError::NotFound(_)))
    ));
    assert!(
        data.admin_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );

    // What `toktra up` does at first start: a random password, shown once.
    let first = format!("first.{}@example.com", Uuid::now_v7());
    let pw = toktra_server::dashboard::create_first_admin(&data, &org, &first)
        .await
        .unwrap();
    assert_eq!(pw.len(), 24);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw}");
    let stored = data.admin_by_email(&first).await.unwrap().unwrap();
    assert!(auth::verify_password(&pw, &stored.password_hash).unwrap());
}

async fn usage_matches_the_api(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let admin = Admin::new(s.clone());
    admin
        .set_user(&User {
            org_id: org.clone(),
            user_id: "ann".into(),
            email: Some("ann@example.com".into()),
            department: Some("Finance".into()),
        })
        .await
        .unwrap();
    let now = Utc::now();
    let events = vec![
        event(
            "ann",
            "openai",
            "ChatGPT",
            now - Duration::hours(1),
            100,
            10,
        ),
        event(
            "ann",
            "anthropic",
            "Anthropic API",
            now - Duration::days(3),
            300,
            30,
        ),
        event(
            "bob",
            "github",
            "GitHub Copilot",
            now - Duration::days(6),
            50,
            5,
        ),
        // Outside a 7-day window (and inside 30).
        event(
            "bob",
            "openai",
            "OpenAI API",
            now - Duration::days(10),
            999,
            1,
        ),
    ];
    common::ingest(&s, &org, &dev, &events, now).await;

    let data = StoreData::new(s.clone());
    let today = now.date_naive();
    for days in [7i64, 30] {
        let filter = UsageFilter {
            start: today - Duration::days(days - 1),
            end: today,
        };
        let rows = data.usage(&org, &filter).await.unwrap();
        let page = query_usage(
            s.as_ref(),
            UsageParams {
                org_id: Some(org.clone()),
                start_date: Some(filter.start.to_string()),
                end_date: Some(filter.end.to_string()),
                limit: Some("100".into()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.message)
        .unwrap();
        let api: i64 = page
            .items
            .iter()
            .map(|i| i.total_input_tokens + i.total_output_tokens)
            .sum();
        let ours: u64 = rows.iter().map(|r| r.input_tokens + r.output_tokens).sum();
        assert_eq!(ours as i64, api, "{days} days");
        let want = if days == 7 { 495 } else { 1495 };
        assert_eq!(ours, want, "{days} days");
    }
    let rows = data
        .usage(
            &org,
            &UsageFilter {
                start: today - Duration::days(29),
                end: today,
            },
        )
        .await
        .unwrap();
    let chat = rows
        .iter()
        .find(|r| r.provider == "openai" && r.user_id == "ann")
        .unwrap();
    assert_eq!(
        chat.category, "chat",
        "category from the catalog by product"
    );
    assert_eq!(chat.department.as_deref(), Some("Finance"));
    assert_eq!(chat.user_email.as_deref(), Some("ann@example.com"));
    assert_eq!(
        rows.iter()
            .find(|r| r.provider == "github")
            .unwrap()
            .category,
        "coding"
    );
    assert!(
        rows.iter()
            .all(|r| r.user_id != "bob" || r.department.is_none())
    );

    let activity = data.recent_activity(&org, 10).await.unwrap();
    assert_eq!(activity.len(), 1, "only the last 48 hours");
    assert_eq!(activity[0].product, "ChatGPT");
    assert_eq!(activity[0].input_tokens + activity[0].output_tokens, 110);
}

async fn devices_budgets_users_tokens(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let (other_org, _) = org_with_device(&s).await;
    let data = StoreData::new(s.clone());

    data.set_device_locked(&org, &dev, true).await.unwrap();
    assert_eq!(
        data.devices(&org).await.unwrap()[0].status,
        DeviceStatus::Locked
    );
    assert_eq!(
        s.get_device(&org, &dev).await.unwrap().unwrap().status,
        toktra_server::store::DeviceStatus::Locked
    );
    data.set_device_locked(&org, &dev, false).await.unwrap();
    assert_eq!(
        data.devices(&org).await.unwrap()[0].status,
        DeviceStatus::Enrolled
    );
    assert!(matches!(
        data.set_device_locked(&other_org, &dev, true).await,
        Err(DataError::NotFound(_))
    ));

    data.upsert_budget(
        &org,
        &BudgetInput {
            department: None,
            limit_tokens: 1_000,
            hard_cap: false,
            rollover: false,
        },
    )
    .await
    .unwrap();
    data.upsert_budget(
        &org,
        &BudgetInput {
            department: Some("Sales".into()),
            limit_tokens: 500,
            hard_cap: true,
            rollover: true,
        },
    )
    .await
    .unwrap();
    let b = data.budgets(&org, Utc::now()).await.unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].department, None, "organization first");
    assert_eq!(
        (b[1].limit_tokens, b[1].hard_cap, b[1].rollover),
        (1_000, true, true),
        "rollover adds last month's unused 500"
    );
    assert!(
        data.budgets(&other_org, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        data.import_users_csv(
            &org,
            "user_id,email,department\nann,ann@example.com,Sales\nbob,,\n"
        )
        .await
        .unwrap(),
        2
    );
    data.set_user_department(&org, "ann", "Finance")
        .await
        .unwrap();
    let users = data.users(&org).await.unwrap();
    let ann = users.iter().find(|u| u.user_id == "ann").unwrap();
    assert_eq!(ann.department.as_deref(), Some("Finance"));
    assert_eq!(
        ann.email.as_deref(),
        Some("ann@example.com"),
        "moving a user keeps their e-mail"
    );
    assert!(matches!(
        data.import_users_csv(&org, "a,b,c,d\n").await,
        Err(DataError::Invalid(_))
    ));

    let t = data
        .create_enrollment_token(&org, Some(Utc::now() + Duration::days(7)), Some(3))
        .await
        .unwrap();
    assert!(t.secret.starts_with("tkn_"));
    let list = data.enrollment_tokens(&org).await.unwrap();
    assert_eq!(
        (list.len(), list[0].max_uses, list[0].revoked),
        (1, Some(3), false)
    );
    // Another organization's administrator cannot revoke it.
    assert!(matches!(
        data.revoke_enrollment_token(&other_org, &t.id).await,
        Err(DataError::NotFound(_))
    ));
    data.revoke_enrollment_token(&org, &t.id).await.unwrap();
    assert!(data.enrollment_tokens(&org).await.unwrap()[0].revoked);
}
