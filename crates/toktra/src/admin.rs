//! `toktra admin`: organizations, enrollment tokens, API keys, devices, budgets,
//! departments, users and usage, against a server's data directory or PostgreSQL
//! ([`Backend::Local`]) or a running server's admin API ([`Backend::Remote`]).

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use toktra_server::Admin;
use toktra_server::admin_api::{
    BudgetStatusItem, Department, ErrorBody, ImportResult, NewApiKey, NewOrg, NewToken, SetBudget,
    SetUser, UsagePage, UsageParams, budget_status_items, query_usage,
};
use toktra_server::ops::{CreatedApiKey, CreatedToken};
use toktra_server::store::{ApiKeyInfo, Budget, Device, EnrollmentToken, Org, User};

/// Administer a Toktra server (the help text is `AFTER_HELP`; `main.rs` names the
/// subcommand).
#[derive(clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// A running server's admin API, e.g. http://127.0.0.1:8080 (the address of
    /// `toktra server --admin-listen`; https when it runs with --admin-tls). With it,
    /// --data and --database-url are not used.
    #[arg(long, value_name = "URL", env = "TOKTRA_SERVER", global = true)]
    server: Option<String>,
    /// The API key for --server (sent as a Bearer token).
    #[arg(
        long,
        value_name = "KEY",
        env = "TOKTRA_API_KEY",
        hide_env_values = true,
        global = true
    )]
    api_key: Option<String>,
    /// PEM file of a CA to trust for an https --server besides the public web roots,
    /// e.g. the server's own root: DIR/ca/root.pem.
    #[arg(long, value_name = "PEM", global = true)]
    ca_file: Option<PathBuf>,
    /// The server's data directory (without --server).
    #[arg(
        long,
        value_name = "DIR",
        env = "TOKTRA_DATA",
        default_value = "/var/lib/toktra",
        global = true
    )]
    data: PathBuf,
    /// PostgreSQL instead of the SQLite database under --data (without --server).
    #[arg(long, value_name = "URL", env = "TOKTRA_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCmd),
    /// Enrollment tokens (what devices enroll with).
    #[command(subcommand)]
    Token(TokenCmd),
    /// API keys for the admin API.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCmd),
    /// Enrolled devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Monthly token budgets.
    #[command(subcommand)]
    Budget(BudgetCmd),
    /// Departments.
    #[command(subcommand)]
    Department(DepartmentCmd),
    /// Users (local accounts) and their departments.
    #[command(subcommand)]
    User(UserCmd),
    /// Usage per user, product and period (as GET /v1/usage).
    Usage(UsageArgs),
    /// Administrators who sign in to the web dashboard.
    #[command(subcommand, name = "dashboard-user")]
    DashboardUser(DashboardUserCmd),
}

#[derive(Subcommand)]
enum DashboardUserCmd {
    /// Create a dashboard administrator of one organization; prints the new id. The
    /// password (12 characters at least) is read from standard input, so it never
    /// shows in the process list or shell history; it is stored as an argon2id hash.
    /// Needs --data or --database-url: the admin API has no endpoint for it.
    Create {
        /// The organization whose dashboard the administrator sees.
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        /// The sign-in name (unique on this server).
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Create an organization; prints its id.
    Create {
        name: String,
        /// CN devices must put in their CSR (CertSubject).
        #[arg(long, default_value = "Toktra Device")]
        cert_subject: String,
    },
    /// List organizations.
    List,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an enrollment token; prints the token (shown only once).
    Create {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        /// The token stops working after this many hours.
        #[arg(long, value_name = "HOURS")]
        expires_in: Option<i64>,
        /// How many devices may enroll with it.
        #[arg(long, value_name = "N")]
        max_uses: Option<i64>,
    },
    /// List an organization's tokens (never the secrets).
    List {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
    },
    /// Revoke a token by id.
    Revoke {
        id: String,
        /// The token's organization (with --server, saves searching every
        /// organization's tokens for the id).
        #[arg(long, value_name = "ORG_ID")]
        org: Option<String>,
    },
}

#[derive(Subcommand)]
enum ApiKeyCmd {
    /// Create an API key; prints the key (shown only once).
    Create {
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// List API keys (never the secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// List devices.
    List {
        #[arg(long, value_name = "ORG_ID")]
        org: Option<String>,
    },
    /// Lock a device: its certificate is refused until unlocked.
    Lock {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        device: String,
    },
    /// Unlock a device.
    Unlock {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        device: String,
    },
}

#[derive(Subcommand)]
enum BudgetCmd {
    /// Set the organization budget, or a department's with --department.
    Set {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        #[arg(long)]
        department: Option<String>,
        /// Tokens per calendar month (UTC).
        #[arg(long, value_name = "N")]
        monthly_tokens: i64,
        /// Hard cap: at 100 % the browser extension may block LLM requests.
        #[arg(long)]
        hard_cap: bool,
        /// Add last month's unused tokens to this month's limit.
        #[arg(long)]
        rollover: bool,
    },
    /// List budgets.
    List {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
    },
    /// This month's status of every budget.
    Status {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
    },
    /// Delete the organization budget, or a department's with --department.
    Delete {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        #[arg(long)]
        department: Option<String>,
    },
}

#[derive(Subcommand)]
enum DepartmentCmd {
    /// Create a department.
    Create {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        name: String,
    },
    /// List departments.
    List {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create or update a user.
    Set {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        /// The local account as agents report it (ACME\jsmith, jsmith).
        user_id: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        department: Option<String>,
    },
    /// List users.
    List {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
    },
    /// Import `user_id,email,department` lines from a CSV file (header optional).
    Import {
        #[arg(long, value_name = "ORG_ID")]
        org: String,
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct UsageArgs {
    #[arg(long, value_name = "ORG_ID")]
    org: Option<String>,
    /// hourly, daily, weekly or monthly.
    #[arg(long, default_value = "daily")]
    period: String,
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    start_date: Option<String>,
    /// Last day, YYYY-MM-DD (UTC, inclusive).
    #[arg(long)]
    end_date: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    department: Option<String>,
    /// 1 to 100.
    #[arg(long, default_value = "25")]
    limit: u32,
    #[arg(long)]
    cursor: Option<String>,
}

fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        let t = text(value);
        if !t.is_empty() {
            println!("{t}");
        }
    }
    Ok(())
}

/// A list: JSON as is, or one text line per item.
fn print_lines<T: Serialize>(
    json: bool,
    items: &[T],
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    print(json, &items, |v| {
        v.iter().map(&line).collect::<Vec<_>>().join("\n")
    })
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

const AFTER_HELP: &str = "\
Creating commands print the new id, token or key alone on stdout (scriptable); --json prints \
structured output everywhere.

Two ways to reach the server: its store directly - the SQLite database under --data (the same \
DIR as `toktra server --data`; safe while the server runs) or PostgreSQL with --database-url - \
or, with --server URL --api-key KEY, a running server's admin API over HTTP(S). The first API \
key has to be created with --data on the server's machine; dashboard-user create works only \
with --data/--database-url. Errors the server returns are shown with their HTTP status and \
message, and the exit status is non-zero.

Examples:
  toktra admin --data /var/lib/toktra api-key create
  toktra admin --server http://127.0.0.1:8080 --api-key KEY org create Acme
  TOKTRA_SERVER=https://admin.example:8080 TOKTRA_API_KEY=KEY \\
    toktra admin --ca-file /var/lib/toktra/ca/root.pem token create --org ORG_ID";

/// Where the operations go: one code path per operation, two transports.
enum Backend {
    /// The store itself (SQLite under --data, or PostgreSQL).
    Local(Admin),
    /// A running server's admin API.
    Remote(Remote),
}

/// A client of the admin API (`toktra_server::admin_api`).
struct Remote {
    http: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
}

impl Remote {
    fn new(server: &str, api_key: String, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(server)
            .with_context(|| format!("--server {server:?}: expected http(s)://HOST:PORT"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            bail!("--server {server:?}: expected http(s)://HOST:PORT");
        }
        if api_key.trim().is_empty() {
            bail!("--api-key is empty");
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --ca-file {}", path.display()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.with_context(|| format!("--ca-file {}: bad PEM", path.display()))?;
                roots.add(cert).with_context(|| {
                    format!("--ca-file {}: not a CA certificate", path.display())
                })?;
                n += 1;
            }
            if n == 0 {
                bail!("--ca-file {}: no CERTIFICATE in it", path.display());
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("toktra-admin/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            api_key,
        })
    }

    /// `base` + path segments, each percent-encoded (ids and department names may hold
    /// anything).
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut u = self.base.clone();
        u.set_query(None);
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    fn request(&self, method: reqwest::Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(segments))
            .bearer_auth(&self.api_key)
    }

    /// Sends, and turns a non-2xx answer into "HTTP <status>: <message>".
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("connecting to the server at {}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = resp.url().path().to_string();
        let text = resp.text().await.unwrap_or_default();
        let detail = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(ErrorBody { message, error }) if message.is_empty() => error,
            Ok(ErrorBody { message, .. }) => message,
            _ if text.trim().is_empty() => "(no message)".to_string(),
            _ => text.trim().chars().take(500).collect(),
        };
        bail!("the server answered HTTP {status} to {url}: {detail}")
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = self.send(req).await?;
        let url = resp.url().path().to_string();
        resp.json()
            .await
            .with_context(|| format!("reading the server's answer to {url}"))
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> anyhow::Result<T> {
        self.json(self.request(reqwest::Method::GET, segments))
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.json(self.request(reqwest::Method::POST, segments).json(body))
            .await
    }

    async fn post_empty(&self, segments: &[&str]) -> anyhow::Result<()> {
        self.send(self.request(reqwest::Method::POST, segments))
            .await
            .map(drop)
    }
}

impl Backend {
    async fn create_org(&self, name: &str, cert_subject: &str) -> anyhow::Result<Org> {
        match self {
            Backend::Local(a) => Ok(a.create_org(name, Some(cert_subject)).await?),
            Backend::Remote(r) => {
                let body = NewOrg {
                    name: name.to_owned(),
                    cert_subject: Some(cert_subject.to_owned()),
                };
                r.post(&["v1", "orgs"], &body).await
            }
        }
    }

    async fn list_orgs(&self) -> anyhow::Result<Vec<Org>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_orgs().await?),
            Backend::Remote(r) => r.get(&["v1", "orgs"]).await,
        }
    }

    async fn create_token(
        &self,
        org: &str,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<i64>,
    ) -> anyhow::Result<CreatedToken> {
        match self {
            Backend::Local(a) => Ok(a.create_enrollment_token(org, expires_at, max_uses).await?),
            Backend::Remote(r) => {
                let body = NewToken {
                    expires_at,
                    max_uses,
                };
                r.post(&["v1", "orgs", org, "enrollment-tokens"], &body)
                    .await
            }
        }
    }

    async fn list_tokens(&self, org: &str) -> anyhow::Result<Vec<EnrollmentToken>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_enrollment_tokens(org).await?),
            Backend::Remote(r) => r.get(&["v1", "orgs", org, "enrollment-tokens"]).await,
        }
    }

    async fn revoke_token(&self, id: &str, org: Option<&str>) -> anyhow::Result<()> {
        match self {
            Backend::Local(a) => Ok(a.store().revoke_enrollment_token(id).await?),
            Backend::Remote(r) => {
                // The API revokes under an organization; without --org, find the owner.
                let org = match org {
                    Some(o) => o.to_string(),
                    None => {
                        let mut owner = None;
                        for o in self.list_orgs().await? {
                            if self.list_tokens(&o.id).await?.iter().any(|t| t.id == id) {
                                owner = Some(o.id);
                                break;
                            }
                        }
                        owner.with_context(|| {
                            format!("enrollment token {id} not found in any organization")
                        })?
                    }
                };
                r.post_empty(&["v1", "orgs", &org, "enrollment-tokens", id, "revoke"])
                    .await
            }
        }
    }

    async fn create_api_key(&self, name: &str) -> anyhow::Result<CreatedApiKey> {
        match self {
            Backend::Local(a) => Ok(a.create_api_key(name).await?),
            Backend::Remote(r) => {
                let body = NewApiKey {
                    name: name.to_owned(),
                };
                r.post(&["v1", "api-keys"], &body).await
            }
        }
    }

    async fn list_api_keys(&self) -> anyhow::Result<Vec<ApiKeyInfo>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_api_keys().await?),
            Backend::Remote(r) => r.get(&["v1", "api-keys"]).await,
        }
    }

    async fn revoke_api_key(&self, id: &str) -> anyhow::Result<()> {
        match self {
            Backend::Local(a) => Ok(a.store().revoke_api_key(id).await?),
            Backend::Remote(r) => r.post_empty(&["v1", "api-keys", id, "revoke"]).await,
        }
    }

    async fn list_devices(&self, org: Option<&str>) -> anyhow::Result<Vec<Device>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_devices(org).await?),
            Backend::Remote(r) => {
                // The API lists per organization; "all" is every organization's list.
                let orgs = match org {
                    Some(o) => vec![o.to_string()],
                    None => self.list_orgs().await?.into_iter().map(|o| o.id).collect(),
                };
                let mut all = Vec::new();
                for o in orgs {
                    let v: Vec<Device> = r.get(&["v1", "orgs", &o, "devices"]).await?;
                    all.extend(v);
                }
                Ok(all)
            }
        }
    }

    async fn set_device_locked(
        &self,
        org: &str,
        device: &str,
        locked: bool,
    ) -> anyhow::Result<Device> {
        match self {
            Backend::Local(a) => Ok(a.set_device_locked(org, device, locked).await?),
            Backend::Remote(r) => {
                let action = if locked { "lock" } else { "unlock" };
                r.post(
                    &["v1", "orgs", org, "devices", device, action],
                    &serde_json::json!({}),
                )
                .await
            }
        }
    }

    async fn set_budget(&self, org: &str, b: SetBudget) -> anyhow::Result<Budget> {
        match self {
            Backend::Local(a) => {
                let b = b.into_budget(org.to_owned());
                a.set_budget(&b).await?;
                Ok(b)
            }
            Backend::Remote(r) => {
                r.json(
                    r.request(reqwest::Method::PUT, &["v1", "orgs", org, "budgets"])
                        .json(&b),
                )
                .await
            }
        }
    }

    async fn list_budgets(&self, org: &str) -> anyhow::Result<Vec<Budget>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_budgets(org).await?),
            Backend::Remote(r) => r.get(&["v1", "orgs", org, "budgets"]).await,
        }
    }

    async fn budget_status(&self, org: &str) -> anyhow::Result<Vec<BudgetStatusItem>> {
        match self {
            Backend::Local(a) => {
                Ok(budget_status_items(a.store().as_ref(), org, Utc::now()).await?)
            }
            Backend::Remote(r) => r.get(&["v1", "orgs", org, "budgets", "status"]).await,
        }
    }

    async fn delete_budget(&self, org: &str, department: Option<&str>) -> anyhow::Result<()> {
        match self {
            Backend::Local(a) => Ok(a.store().delete_budget(org, department).await?),
            Backend::Remote(r) => {
                let path: Vec<&str> = match department {
                    None => vec!["v1", "orgs", org, "budgets", "organization"],
                    Some(d) => vec!["v1", "orgs", org, "budgets", "departments", d],
                };
                r.send(r.request(reqwest::Method::DELETE, &path))
                    .await
                    .map(drop)
            }
        }
    }

    async fn create_department(&self, org: &str, name: &str) -> anyhow::Result<()> {
        match self {
            Backend::Local(a) => {
                a.store()
                    .get_org(org)
                    .await?
                    .with_context(|| format!("organization {org} not found"))?;
                Ok(a.store().create_department(org, name).await?)
            }
            Backend::Remote(r) => r
                .post::<Department>(
                    &["v1", "orgs", org, "departments"],
                    &Department {
                        name: name.to_owned(),
                    },
                )
                .await
                .map(drop),
        }
    }

    async fn list_departments(&self, org: &str) -> anyhow::Result<Vec<String>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_departments(org).await?),
            Backend::Remote(r) => {
                let v: Vec<Department> = r.get(&["v1", "orgs", org, "departments"]).await?;
                Ok(v.into_iter().map(|d| d.name).collect())
            }
        }
    }

    async fn set_user(&self, org: &str, u: SetUser) -> anyhow::Result<User> {
        match self {
            Backend::Local(a) => {
                let u = u.into_user(org.to_owned());
                a.set_user(&u).await?;
                Ok(u)
            }
            Backend::Remote(r) => r.post(&["v1", "orgs", org, "users"], &u).await,
        }
    }

    async fn list_users(&self, org: &str) -> anyhow::Result<Vec<User>> {
        match self {
            Backend::Local(a) => Ok(a.store().list_users(org).await?),
            Backend::Remote(r) => r.get(&["v1", "orgs", org, "users"]).await,
        }
    }

    async fn import_users(&self, org: &str, csv: String) -> anyhow::Result<usize> {
        match self {
            Backend::Local(a) => Ok(a.import_users_csv(org, &csv).await?),
            Backend::Remote(r) => {
                let v: ImportResult = r
                    .json(
                        r.request(
                            reqwest::Method::POST,
                            &["v1", "orgs", org, "users", "import"],
                        )
                        .header(reqwest::header::CONTENT_TYPE, "text/csv")
                        .body(csv),
                    )
                    .await?;
                Ok(v.imported)
            }
        }
    }

    async fn usage(&self, p: UsageParams) -> anyhow::Result<UsagePage> {
        match self {
            Backend::Local(a) => query_usage(a.store().as_ref(), p)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message)),
            Backend::Remote(r) => {
                r.json(r.request(reqwest::Method::GET, &["v1", "usage"]).query(&p))
                    .await
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let backend = match &args.server {
        Some(server) => {
            let key = args.api_key.clone().with_context(|| {
                "--server needs --api-key KEY (or TOKTRA_API_KEY); create the first key \
                 on the server's machine with `toktra admin --data DIR api-key create`"
            })?;
            Backend::Remote(Remote::new(server, key, args.ca_file.as_deref())?)
        }
        None => Backend::Local(
            Admin::open(&args.data, args.database_url.as_deref())
                .await
                .with_context(|| match &args.database_url {
                    Some(_) => "opening the PostgreSQL store".to_string(),
                    None => format!("opening the store under {}", args.data.display()),
                })?,
        ),
    };
    let json = args.json;
    match args.command {
        Cmd::Org(OrgCmd::Create { name, cert_subject }) => {
            let org = backend.create_org(&name, &cert_subject).await?;
            print(json, &org, |o| o.id.clone())?;
        }
        Cmd::Org(OrgCmd::List) => {
            let orgs = backend.list_orgs().await?;
            print_lines(json, &orgs, |o| {
                format!("{}\t{}\t{}", o.id, o.name, o.cert_subject)
            })?;
        }
        Cmd::Token(TokenCmd::Create {
            org,
            expires_in,
            max_uses,
        }) => {
            let expires_at: Option<DateTime<Utc>> =
                expires_in.map(|h| Utc::now() + chrono::Duration::hours(h));
            let t = backend.create_token(&org, expires_at, max_uses).await?;
            print(json, &t, |t| t.token.clone())?;
        }
        Cmd::Token(TokenCmd::List { org }) => {
            let v = backend.list_tokens(&org).await?;
            print_lines(json, &v, |t| {
                format!(
                    "{}\tuses={}/{}\texpires={}\t{}",
                    t.id,
                    t.uses,
                    t.max_uses
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "∞".into()),
                    t.expires_at
                        .map(|e| e.to_rfc3339())
                        .unwrap_or_else(|| "never".into()),
                    if t.revoked { "revoked" } else { "active" }
                )
            })?;
        }
        Cmd::Token(TokenCmd::Revoke { id, org }) => {
            backend.revoke_token(&id, org.as_deref()).await?;
            print(json, &serde_json::json!({"revoked": id}), |_| String::new())?;
        }
        Cmd::ApiKey(ApiKeyCmd::Create { name }) => {
            let k = backend.create_api_key(&name).await?;
            print(json, &k, |k| k.key.clone())?;
        }
        Cmd::ApiKey(ApiKeyCmd::List) => {
            let v = backend.list_api_keys().await?;
            print_lines(json, &v, |k| {
                format!(
                    "{}\t{}\t{}",
                    k.id,
                    k.name,
                    if k.revoked { "revoked" } else { "active" }
                )
            })?;
        }
        Cmd::ApiKey(ApiKeyCmd::Revoke { id }) => {
            backend.revoke_api_key(&id).await?;
            print(json, &serde_json::json!({"revoked": id}), |_| String::new())?;
        }
        Cmd::Device(DeviceCmd::List { org }) => {
            let v = backend.list_devices(org.as_deref()).await?;
            print_lines(json, &v, |d| {
                format!(
                    "{}\t{}\t{}\t{}\t{}\tlast_seen={}",
                    d.org_id,
                    d.id,
                    d.status.as_str(),
                    opt(&d.hostname),
                    opt(&d.platform),
                    d.last_seen
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "never".into())
                )
            })?;
        }
        Cmd::Device(DeviceCmd::Lock { org, device }) => {
            let d = backend.set_device_locked(&org, &device, true).await?;
            print(json, &d, |d| format!("{} {}", d.id, d.status.as_str()))?;
        }
        Cmd::Device(DeviceCmd::Unlock { org, device }) => {
            let d = backend.set_device_locked(&org, &device, false).await?;
            print(json, &d, |d| format!("{} {}", d.id, d.status.as_str()))?;
        }
        Cmd::Budget(BudgetCmd::Set {
            org,
            department,
            monthly_tokens,
            hard_cap,
            rollover,
        }) => {
            let b = SetBudget {
                department,
                monthly_tokens,
                hard_cap,
                rollover,
            };
            let b = backend.set_budget(&org, b).await?;
            print(json, &b, |_| String::new())?;
        }
        Cmd::Budget(BudgetCmd::List { org }) => {
            let v = backend.list_budgets(&org).await?;
            print_lines(json, &v, |b| {
                format!(
                    "{}\t{}\t{}\t{}",
                    b.department.as_deref().unwrap_or("(organization)"),
                    b.monthly_tokens,
                    if b.hard_cap { "hard" } else { "soft" },
                    if b.rollover {
                        "rollover"
                    } else {
                        "no-rollover"
                    }
                )
            })?;
        }
        Cmd::Budget(BudgetCmd::Status { org }) => {
            let v = backend.budget_status(&org).await?;
            print_lines(json, &v, |e| {
                format!(
                    "{}\t{}\tused={}\tlimit={}\t{}",
                    e.department.as_deref().unwrap_or("(organization)"),
                    e.period,
                    e.used,
                    e.limit,
                    e.state
                )
            })?;
        }
        Cmd::Budget(BudgetCmd::Delete { org, department }) => {
            backend.delete_budget(&org, department.as_deref()).await?;
            print(json, &serde_json::json!({"deleted": true}), |_| {
                String::new()
            })?;
        }
        Cmd::Department(DepartmentCmd::Create { org, name }) => {
            backend.create_department(&org, &name).await?;
            print(json, &Department { name }, |_| String::new())?;
        }
        Cmd::Department(DepartmentCmd::List { org }) => {
            let v = backend.list_departments(&org).await?;
            print(json, &v, |v| v.join("\n"))?;
        }
        Cmd::User(UserCmd::Set {
            org,
            user_id,
            email,
            department,
        }) => {
            let u = SetUser {
                user_id,
                email,
                department,
            };
            let u = backend.set_user(&org, u).await?;
            print(json, &u, |_| String::new())?;
        }
        Cmd::User(UserCmd::List { org }) => {
            let v = backend.list_users(&org).await?;
            print_lines(json, &v, |u| {
                format!("{}\t{}\t{}", u.user_id, opt(&u.email), opt(&u.department))
            })?;
        }
        Cmd::User(UserCmd::Import { org, file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let n = backend.import_users(&org, text).await?;
            print(json, &ImportResult { imported: n }, |_| n.to_string())?;
        }
        Cmd::DashboardUser(DashboardUserCmd::Create {
            org,
            email,
            password_stdin: _,
        }) => {
            let Backend::Local(admin) = &backend else {
                bail!(
                    "dashboard-user create needs --data DIR (or --database-url): the admin \
                     API has no endpoint for it, so run it on the server's machine"
                );
            };
            let store = admin.store().clone();
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let data = toktra_server::dashboard::store_data::StoreData::new(store.clone());
            let a = toktra_server::dashboard::create_admin(&data, &org, &email, password).await?;
            print(
                json,
                &serde_json::json!({"id": a.id, "org_id": a.org_id, "email": a.email}),
                |_| a.id.clone(),
            )?;
        }
        Cmd::Usage(u) => {
            let params = UsageParams {
                period: Some(u.period),
                start_date: u.start_date,
                end_date: u.end_date,
                user_id: u.user,
                provider: u.provider,
                model: u.model,
                department: u.department,
                org_id: u.org,
                cursor: u.cursor,
                limit: Some(u.limit.to_string()),
            };
            let page = backend.usage(params).await?;
            print(json, &page, |p| {
                let mut lines: Vec<String> = p
                    .items
                    .iter()
                    .map(|i| {
                        format!(
                            "{}\t{}\t{}\t{}\trequests={}\tin={}\tout={}\tusd={:.4}",
                            i.period,
                            i.user_id,
                            i.provider,
                            i.model,
                            i.total_requests,
                            i.total_input_tokens,
                            i.total_output_tokens,
                            i.estimated_cost_usd
                        )
                    })
                    .collect();
                if let Some(c) = &p.next_cursor {
                    lines.push(format!("# more: --cursor {c}"));
                }
                lines.join("\n")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
