//! `toktra admin --server URL --api-key KEY` against a real `toktra server` on
//! loopback: the same operations and output contract as `--data`, server errors shown
//! with their HTTP status, and https with the server's own CA via --ca-file.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use toktra_server::Admin;
use toktra_server::store::{Device, DeviceStatus, StoredEvent};

const BIN: &str = env!("CARGO_BIN_EXE_toktra");

/// Two distinct free loopback ports (both held while choosing, so they differ).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    (port(&a), port(&b))
}

/// A `toktra server` child process, killed on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    data: PathBuf,
    admin_port: u16,
}

impl Server {
    fn start(admin_tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let (admin_port, agent_port) = free_ports();
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--data"])
            .arg(&data)
            .args(["--agent-listen", &format!("127.0.0.1:{agent_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if admin_tls {
            cmd.arg("--admin-tls");
        }
        let mut child = cmd.spawn().expect("spawning toktra server");
        // Readiness, not speed: wait until the admin port accepts, bounded so a server
        // that never comes up fails the test instead of hanging it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("toktra server exited early: {status}");
            }
            if TcpStream::connect(("127.0.0.1", admin_port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "toktra server did not listen on 127.0.0.1:{admin_port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Server {
            child,
            _dir: dir,
            data,
            admin_port,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("TOKTRA_SERVER")
        .env_remove("TOKTRA_API_KEY")
        .env_remove("TOKTRA_DATA")
        .env_remove("TOKTRA_DATABASE_URL")
        .output()
        .expect("running toktra")
}

/// stdout of a successful run, trimmed.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "toktra {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(&a)).expect("--json prints JSON")
}

fn remote<'a>(url: &'a str, key: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["admin", "--server", url, "--api-key", key];
    v.extend_from_slice(rest);
    v
}

/// An enrolled device and one event, written into the running server's SQLite store
/// (WAL: safe beside the server), so device and usage commands have something to show.
fn seed_device_and_usage(data: &Path, org: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let admin = Admin::open(data, None).await.expect("open store");
        let now = chrono::Utc::now();
        admin
            .store()
            .insert_device(&Device {
                org_id: org.into(),
                id: "laptop-1".into(),
                hostname: Some("laptop-1.acme".into()),
                platform: Some("linux".into()),
                agent_version: Some("test".into()),
                status: DeviceStatus::Enrolled,
                cert_serial: Some("01".into()),
                prev_cert_serial: None,
                cert_expires_at: Some(now + chrono::Duration::days(90)),
                enrolled_at: now,
                last_seen: None,
            })
            .await
            .expect("insert device");
        let event = serde_json::from_value(serde_json::json!({
            "event_id": uuid::Uuid::now_v7(),
            "source": "linux",
            "started_at": now,
            "duration_ms": 100,
            "transport": "tcp",
            "sni": "api.openai.com",
            "bytes_out": 10,
            "bytes_in": 20,
            "est_input_tokens": 120,
            "est_output_tokens": 30,
            "user": "jsmith",
        }))
        .expect("a FlowEvent");
        let stored = StoredEvent {
            event,
            provider: Some("openai".into()),
            product: Some("OpenAI API".into()),
            category: Some("api".into()),
            cost_usd: 0.25,
        };
        admin
            .store()
            .ingest(
                org,
                "laptop-1",
                uuid::Uuid::now_v7(),
                "test",
                None,
                &[stored],
                now,
            )
            .await
            .expect("ingest");
    });
}

#[test]
fn admin_over_http_matches_the_data_directory_contract() {
    let srv = Server::start(false);
    let data = srv.data.to_str().expect("utf-8 path");
    let url = format!("http://127.0.0.1:{}", srv.admin_port);
    let key = ok(&["admin", "--data", data, "api-key", "create"]);
    assert!(
        key.starts_with("tka_") && !key.contains(char::is_whitespace),
        "{key:?}"
    );

    // org create prints the id alone, and the org is visible both ways.
    let org = ok(&remote(&url, &key, &["org", "create", "Acme"]));
    assert!(
        !org.is_empty() && !org.contains(char::is_whitespace),
        "{org:?}"
    );
    let orgs = json(&remote(&url, &key, &["org", "list"]));
    assert_eq!(orgs[0]["id"], org.as_str());
    assert_eq!(orgs[0]["name"], "Acme");
    assert!(ok(&["admin", "--data", data, "org", "list"]).contains(&org));

    // token create prints the token alone; list shows it (never the secret); revoke
    // without --org finds the owning organization.
    let token = ok(&remote(
        &url,
        &key,
        &["token", "create", "--org", &org, "--max-uses", "3"],
    ));
    assert!(
        token.starts_with("tkn_") && !token.contains(char::is_whitespace),
        "{token:?}"
    );
    let tokens = json(&remote(&url, &key, &["token", "list", "--org", &org]));
    assert_eq!(tokens.as_array().map(Vec::len), Some(1));
    assert_eq!(tokens[0]["max_uses"], 3);
    assert!(
        !tokens.to_string().contains(&token),
        "a listed token leaks its secret"
    );
    let token_id = tokens[0]["id"].as_str().expect("id").to_string();
    ok(&remote(&url, &key, &["token", "revoke", &token_id]));
    let tokens = json(&remote(&url, &key, &["token", "list", "--org", &org]));
    assert_eq!(tokens[0]["revoked"], true);

    // Devices and usage.
    seed_device_and_usage(&srv.data, &org);
    let devices = json(&remote(&url, &key, &["device", "list"]));
    assert_eq!(devices[0]["id"], "laptop-1");
    assert_eq!(devices[0]["status"], "enrolled");
    let locked = ok(&remote(
        &url,
        &key,
        &["device", "lock", "--org", &org, "laptop-1"],
    ));
    assert_eq!(locked, "laptop-1 locked");
    let text = ok(&remote(&url, &key, &["device", "list", "--org", &org]));
    assert!(text.contains("laptop-1\tlocked"), "{text}");
    let unlocked = json(&remote(
        &url,
        &key,
        &["device", "unlock", "--org", &org, "laptop-1"],
    ));
    assert_eq!(unlocked["status"], "enrolled");
    let usage = json(&remote(&url, &key, &["usage", "--org", &org]));
    assert_eq!(usage["total_count"], 1);
    assert_eq!(usage["items"][0]["user_id"], "jsmith");
    assert_eq!(usage["items"][0]["total_input_tokens"], 120);
    assert_eq!(usage["items"][0]["total_output_tokens"], 30);
    // The same page as the data directory gives.
    let local = json(&["admin", "--data", data, "usage", "--org", &org]);
    assert_eq!(usage, local);

    // Budgets, departments, users.
    ok(&remote(
        &url,
        &key,
        &["department", "create", "--org", &org, "Engineering"],
    ));
    ok(&remote(
        &url,
        &key,
        &[
            "user",
            "set",
            "--org",
            &org,
            "jsmith",
            "--department",
            "Engineering",
        ],
    ));
    let users = json(&remote(&url, &key, &["user", "list", "--org", &org]));
    assert_eq!(users[0]["department"], "Engineering");
    ok(&remote(
        &url,
        &key,
        &[
            "budget",
            "set",
            "--org",
            &org,
            "--monthly-tokens",
            "100",
            "--hard-cap",
        ],
    ));
    let status = json(&remote(&url, &key, &["budget", "status", "--org", &org]));
    assert_eq!(status[0]["used"], 150);
    assert_eq!(status[0]["state"], "exceeded");
    assert_eq!(
        status,
        json(&["admin", "--data", data, "budget", "status", "--org", &org])
    );
    ok(&remote(&url, &key, &["budget", "delete", "--org", &org]));
    assert_eq!(
        json(&remote(&url, &key, &["budget", "list", "--org", &org])),
        serde_json::json!([])
    );

    // api-key create over the API prints a key that works.
    let key2 = ok(&remote(&url, &key, &["api-key", "create", "--name", "ci"]));
    assert!(key2.starts_with("tka_"), "{key2:?}");
    assert!(ok(&remote(&url, &key2, &["org", "list"])).contains(&org));

    // Server errors carry their HTTP status and message; the exit code is non-zero.
    let o = run(&remote(
        &url,
        &key,
        &["device", "lock", "--org", &org, "nope"],
    ));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("HTTP 404") && err.contains("nope"), "{err}");

    let o = run(&remote(&url, "tka_wrong", &["org", "list"]));
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("unknown or revoked"),
        "{err}"
    );

    // No key at all: refused before any request, saying what to do.
    let o = run(&["admin", "--server", &url, "org", "list"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--api-key"));

    // The environment works like the flags.
    let o = Command::new(BIN)
        .args(["admin", "org", "list"])
        .env("TOKTRA_SERVER", &url)
        .env("TOKTRA_API_KEY", &key)
        .output()
        .expect("running toktra");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&org));

    // No HTTP endpoint for dashboard users: a clear error, nothing done.
    let o = run(&remote(
        &url,
        &key,
        &[
            "dashboard-user",
            "create",
            "--org",
            &org,
            "--email",
            "a@acme.test",
            "--password-stdin",
        ],
    ));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --data"));
}

#[test]
fn admin_over_https_trusts_the_server_ca_given_with_ca_file() {
    let srv = Server::start(true);
    let data = srv.data.to_str().expect("utf-8 path");
    let key = ok(&["admin", "--data", data, "api-key", "create"]);
    let url = format!("https://localhost:{}", srv.admin_port);
    let root = srv.data.join("ca/root.pem");
    let root = root.to_str().expect("utf-8 path");

    // The server's private CA is not a public root: refused without --ca-file.
    let o = run(&remote(&url, &key, &["org", "list"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("connecting to the server"), "{err}");

    let mut args = remote(&url, &key, &["--ca-file", root, "org", "create", "Acme"]);
    let org = ok(&args);
    args = remote(&url, &key, &["--ca-file", root, "org", "list"]);
    assert!(ok(&args).contains(&org));
}
