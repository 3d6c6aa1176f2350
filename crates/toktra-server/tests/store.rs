//! One suite, two stores: every test runs on SQLite and on PostgreSQL.
//!
//! The PostgreSQL variants are `#[ignore]`d for a plain `cargo test` (no database
//! there); `scripts/test.d/30-server.sh` starts a throw-away cluster, sets
//! `TOKTRA_TEST_DATABASE_URL` and runs them with `--include-ignored`. Run that way
//! without the variable, they fail rather than skip.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use toktra_proto::BudgetState;
use toktra_server::Admin;
use toktra_server::store::{
    Budget, DeviceStatus, Period, StoreError, StoredEvent, UsageQuery, User,
};
use toktra_server::{Store, ops::secret_hash};
use uuid::Uuid;

#[macro_use]
mod common;

both!(
    tokens_and_keys,
    devices,
    ingest_is_idempotent,
    concurrent_batches_never_undercount,
    usage_pages_and_filters,
    budgets_follow_departments,
);

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn event(user: &str, product: &str, at: DateTime<Utc>, tin: u64, tout: u64) -> StoredEvent {
    common::event(user, "openai", product, at, (tin, tout), 0.5)
}

fn budget(
    org: &str,
    department: Option<String>,
    monthly_tokens: i64,
    hard_cap: bool,
    rollover: bool,
) -> Budget {
    Budget {
        org_id: org.into(),
        department,
        monthly_tokens,
        hard_cap,
        rollover,
    }
}

async fn org_with_device(s: &Arc<dyn Store>) -> (String, String) {
    common::org_with_device(s, "host", "linux").await
}

async fn tokens_and_keys(s: Arc<dyn Store>) {
    let admin = Admin::new(s.clone());
    let org = admin.create_org("Acme", None).await.unwrap();
    let other = admin.create_org("Other", None).await.unwrap();
    assert_eq!(org.cert_subject, "Toktra Device");

    let once = admin
        .create_enrollment_token(&org.id, None, Some(1))
        .await
        .unwrap();
    let h = secret_hash(&once.token);
    assert_eq!(
        s.use_enrollment_token(Some(&other.id), &h, now())
            .await
            .unwrap(),
        None,
        "another org's id"
    );
    assert_eq!(
        s.use_enrollment_token(Some(&org.id), &h, now())
            .await
            .unwrap(),
        Some(org.id.clone())
    );
    assert_eq!(
        s.use_enrollment_token(Some(&org.id), &h, now())
            .await
            .unwrap(),
        None,
        "use limit"
    );

    let expiring = admin
        .create_enrollment_token(&org.id, Some(now() + Duration::hours(1)), None)
        .await
        .unwrap();
    let h = secret_hash(&expiring.token);
    assert_eq!(
        s.use_enrollment_token(None, &h, now()).await.unwrap(),
        Some(org.id.clone()),
        "Bearer finds the org"
    );
    assert_eq!(
        s.use_enrollment_token(None, &h, now() + Duration::hours(2))
            .await
            .unwrap(),
        None,
        "expired"
    );
    s.revoke_enrollment_token(&expiring.info.id).await.unwrap();
    assert_eq!(
        s.use_enrollment_token(None, &h, now()).await.unwrap(),
        None,
        "revoked"
    );
    let listed = s.list_enrollment_tokens(&org.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|t| t.revoked && t.uses == 1));
    assert!(
        admin
            .create_enrollment_token("no-such-org", None, None)
            .await
            .is_err()
    );

    let key = admin.create_api_key("ci").await.unwrap();
    assert!(s.api_key_valid(&secret_hash(&key.key)).await.unwrap());
    assert!(!s.api_key_valid(&secret_hash("tka_wrong")).await.unwrap());
    s.revoke_api_key(&key.info.id).await.unwrap();
    assert!(!s.api_key_valid(&secret_hash(&key.key)).await.unwrap());
}

async fn devices(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let d = s.get_device(&org, &dev).await.unwrap().unwrap();
    let err = s.insert_device(&d).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    s.set_device_status(&org, &dev, DeviceStatus::Locked)
        .await
        .unwrap();
    assert_eq!(
        s.get_device(&org, &dev).await.unwrap().unwrap().status,
        DeviceStatus::Locked
    );
    s.renew_device_cert(&org, &dev, "bb", now() + Duration::days(90))
        .await
        .unwrap();
    let d = s.get_device(&org, &dev).await.unwrap().unwrap();
    assert_eq!(d.cert_serial.as_deref(), Some("bb"));
    assert_eq!(
        d.prev_cert_serial.as_deref(),
        Some("01"),
        "the fixture's serial"
    );
    assert!(
        s.set_device_status(&org, "missing", DeviceStatus::Locked)
            .await
            .is_err()
    );
    assert_eq!(s.list_devices(Some(&org)).await.unwrap().len(), 1);
}

async fn ingest_is_idempotent(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let t = now();
    let events: Vec<_> = (0..50)
        .map(|_| event("alice", "ChatGPT", t, 10, 20))
        .collect();
    let b1 = Uuid::now_v7();
    let r = s
        .ingest(&org, &dev, b1, "0.1.0", None, &events, t)
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (50, 0));
    let r = s
        .ingest(&org, &dev, b1, "0.1.0", None, &events, t)
        .await
        .unwrap();
    assert_eq!(
        (r.accepted, r.duplicates),
        (0, 50),
        "a retried batch is not counted again"
    );

    // A new batch carrying ten old events and five new ones (and one repeated inside).
    let mut mixed: Vec<_> = events[..10].to_vec();
    let fresh: Vec<_> = (0..5)
        .map(|_| event("alice", "ChatGPT", t, 10, 20))
        .collect();
    mixed.extend(fresh.iter().cloned());
    mixed.push(fresh[0].clone());
    let r = s
        .ingest(&org, &dev, Uuid::now_v7(), "0.1.0", Some(3), &mixed, t)
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (5, 11));
    assert_eq!(s.count_events(&org).await.unwrap(), 55);
    let used = s
        .tokens_used(&org, None, t - Duration::hours(2), t + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(used, 55 * 30);
    assert_eq!(
        s.device_users(&org, &dev).await.unwrap(),
        vec!["alice".to_string()]
    );
    assert!(
        s.get_device(&org, &dev)
            .await
            .unwrap()
            .unwrap()
            .last_seen
            .is_some()
    );
}

async fn concurrent_batches_never_undercount(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let t = now();
    let mut tasks = Vec::new();
    // 40 distinct batches plus each of them sent a second time, all at once.
    let batches: Vec<(Uuid, Vec<StoredEvent>)> = (0..40)
        .map(|i| {
            (
                Uuid::now_v7(),
                (0..25)
                    .map(|_| event("bob", "Claude", t, 7 + i, 3))
                    .collect(),
            )
        })
        .collect();
    for (id, evs) in batches.iter().chain(batches.iter()) {
        let (s, org, dev, id, evs) = (s.clone(), org.clone(), dev.clone(), *id, evs.clone());
        tasks.push(tokio::spawn(async move {
            s.ingest(&org, &dev, id, "0.1.0", None, &evs, t)
                .await
                .unwrap()
        }));
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    for t in tasks {
        let r = t.await.unwrap();
        accepted += r.accepted;
        duplicates += r.duplicates;
    }
    assert_eq!(accepted, 40 * 25);
    assert_eq!(duplicates, 40 * 25);
    let expected: i64 = (0..40).map(|i| 25 * (7 + i + 3)).sum();
    let used = s
        .tokens_used(&org, None, t - Duration::hours(2), t + Duration::hours(2))
        .await
        .unwrap();
    assert_eq!(used, expected);
    assert_eq!(s.count_events(&org).await.unwrap(), 1000);
}

async fn usage_pages_and_filters(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let admin = Admin::new(s.clone());
    admin
        .set_user(&User {
            org_id: org.clone(),
            user_id: "u0".into(),
            email: Some("u0@acme.test".into()),
            department: Some("eng".into()),
        })
        .await
        .unwrap();
    // Three users x two products x three days (Mon 2026-11-23 .. Wed 2026-11-25).
    let day0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
    let mut events = Vec::new();
    for u in 0..3 {
        for p in ["ChatGPT", "Claude"] {
            for d in 0..3 {
                events.push(event(
                    &format!("u{u}"),
                    p,
                    day0 + Duration::days(d),
                    100,
                    50,
                ));
                events.push(event(
                    &format!("u{u}"),
                    p,
                    day0 + Duration::days(d) + Duration::hours(1),
                    100,
                    50,
                ));
            }
        }
    }
    common::ingest(&s, &org, &dev, &events, now()).await;

    let mut q = UsageQuery {
        org_id: Some(org.clone()),
        period: Period::Daily,
        limit: 4,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.usage(&q).await.unwrap();
        assert_eq!(page.total_count, 18);
        for r in &page.rows {
            assert_eq!((r.requests, r.input_tokens, r.output_tokens), (2, 200, 100));
            assert!((r.cost_usd - 1.0).abs() < 1e-9);
            seen.push((r.bucket, r.user_id.clone(), r.product.clone()));
        }
        if !page.has_more {
            break;
        }
        let last = page.rows.last().unwrap();
        q.after = Some(toktra_server::store::UsageCursor {
            bucket: last.bucket,
            org: last.org_id.clone(),
            user: last.user_id.clone(),
            provider: last.provider.clone(),
            product: last.product.clone(),
        });
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(seen.len(), 18);
    assert_eq!(dedup.len(), 18, "pages neither repeat nor skip");

    let base = UsageQuery {
        org_id: Some(org.clone()),
        limit: 100,
        ..Default::default()
    };
    let weekly = s
        .usage(&UsageQuery {
            period: Period::Weekly,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(weekly.total_count, 6);
    assert_eq!(
        weekly.rows[0].bucket,
        "2026-11-23T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp()
    );
    assert_eq!(weekly.rows[0].requests, 6);
    let monthly = s
        .usage(&UsageQuery {
            period: Period::Monthly,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        monthly.rows[0].bucket,
        "2026-11-01T00:00:00Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp()
    );
    let hourly = s
        .usage(&UsageQuery {
            period: Period::Hourly,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(hourly.total_count, 36);

    let by_dept = s
        .usage(&UsageQuery {
            department: Some("eng".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert!(by_dept.rows.iter().all(|r| r.user_id == "u0"));
    assert_eq!(by_dept.rows[0].user_email.as_deref(), Some("u0@acme.test"));
    assert_eq!(by_dept.total_count, 6);
    let by_model = s
        .usage(&UsageQuery {
            model: Some("Claude".into()),
            user_id: Some("u1".into()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(by_model.total_count, 3);
    let ranged = s
        .usage(&UsageQuery {
            start: Some("2026-11-24T00:00:00Z".parse().unwrap()),
            end: Some("2026-11-25T00:00:00Z".parse().unwrap()),
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(ranged.total_count, 6);
    let none = s
        .usage(&UsageQuery {
            provider: Some("nobody".into()),
            ..base
        })
        .await
        .unwrap();
    assert_eq!(
        (none.total_count, none.rows.len(), none.has_more),
        (0, 0, false)
    );
}

async fn budgets_follow_departments(s: Arc<dyn Store>) {
    let (org, dev) = org_with_device(&s).await;
    let admin = Admin::new(s.clone());
    let n = admin
        .import_users_csv(
            &org,
            "user_id,email,department\nalice,alice@acme.test,eng\ncarol,,\n",
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    admin
        .set_budget(&budget(&org, None, 10_000, false, false))
        .await
        .unwrap();
    admin
        .set_budget(&budget(&org, Some("eng".into()), 1_000, true, false))
        .await
        .unwrap();
    let t = now();
    let evs = vec![
        event("alice", "ChatGPT", t, 700, 100),
        event("carol", "ChatGPT", t, 100, 0),
    ];
    common::ingest(&s, &org, &dev, &evs, t).await;

    let st = toktra_server::budget::device_status(s.as_ref(), &org, &dev, t)
        .await
        .unwrap();
    let whole = st.entries.iter().find(|e| e.user.is_none()).unwrap();
    assert_eq!(
        (whole.used, whole.limit, whole.state),
        (900, 10_000, BudgetState::Ok)
    );
    let alice = st.for_user("alice").unwrap();
    assert_eq!(alice.department.as_deref(), Some("eng"));
    assert_eq!(
        (alice.used, alice.limit, alice.state, alice.threshold_pct),
        (800, 1000, BudgetState::Warning, Some(75))
    );
    assert!(alice.hard_cap);
    let carol = st.for_user("carol").unwrap();
    assert_eq!(
        carol.department, None,
        "unmapped users fall under the organization budget"
    );

    common::ingest(&s, &org, &dev, &[event("alice", "ChatGPT", t, 200, 0)], t).await;
    let st = toktra_server::budget::device_status(s.as_ref(), &org, &dev, t)
        .await
        .unwrap();
    let alice = st.for_user("alice").unwrap();
    assert_eq!(
        (alice.state, alice.remaining, alice.threshold_pct),
        (BudgetState::Exceeded, 0, Some(100))
    );

    // Rollover: last month used 400 of 1000, so this month allows 1600.
    let last_month = toktra_server::budget::month_start(t, -1) + Duration::days(2);
    common::ingest(
        &s,
        &org,
        &dev,
        &[event("alice", "ChatGPT", last_month, 400, 0)],
        t,
    )
    .await;
    admin
        .set_budget(&budget(&org, Some("eng".into()), 1_000, true, true))
        .await
        .unwrap();
    let st = toktra_server::budget::device_status(s.as_ref(), &org, &dev, t)
        .await
        .unwrap();
    let alice = st.for_user("alice").unwrap();
    assert_eq!(
        (alice.limit, alice.used, alice.state),
        (1600, 1000, BudgetState::Ok)
    );
}
