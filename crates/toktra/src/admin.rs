//! `toktra admin`: organizations, enrollment tokens, API keys, devices, budgets,
//! departments, users and usage, against a server's data directory or PostgreSQL.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use toktra_server::Admin;
use toktra_server::admin_api::{UsageParams, query_usage};
use toktra_server::store::{Budget, User};

/// Administer a Toktra server's store. Creating commands print the new id, token or
/// key alone on stdout (scriptable); --json prints structured output everywhere.
///
/// The store is the SQLite database under --data (the same DIR as `toktra server
/// --data`; safe while the server runs) or PostgreSQL with --database-url.
#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory.
    #[arg(
        long,
        value_name = "DIR",
        env = "TOKTRA_DATA",
        default_value = "/var/lib/toktra",
        global = true
    )]
    data: PathBuf,
    /// PostgreSQL instead of the SQLite database under --data.
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
    Revoke { id: String },
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

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let admin = Admin::open(&args.data, args.database_url.as_deref())
        .await
        .with_context(|| match &args.database_url {
            Some(_) => "opening the PostgreSQL store".to_string(),
            None => format!("opening the store under {}", args.data.display()),
        })?;
    let store = admin.store().clone();
    let json = args.json;
    match args.command {
        Cmd::Org(OrgCmd::Create { name, cert_subject }) => {
            let org = admin.create_org(&name, Some(&cert_subject)).await?;
            print(json, &org, |o| o.id.clone())?;
        }
        Cmd::Org(OrgCmd::List) => {
            let orgs = store.list_orgs().await?;
            print(json, &orgs, |v| {
                v.iter()
                    .map(|o| format!("{}\t{}\t{}", o.id, o.name, o.cert_subject))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::Token(TokenCmd::Create {
            org,
            expires_in,
            max_uses,
        }) => {
            let expires_at: Option<DateTime<Utc>> =
                expires_in.map(|h| Utc::now() + chrono::Duration::hours(h));
            let t = admin
                .create_enrollment_token(&org, expires_at, max_uses)
                .await?;
            print(json, &t, |t| t.token.clone())?;
        }
        Cmd::Token(TokenCmd::List { org }) => {
            let v = store.list_enrollment_tokens(&org).await?;
            print(json, &v, |v| {
                v.iter()
                    .map(|t| {
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
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::Token(TokenCmd::Revoke { id }) => {
            store.revoke_enrollment_token(&id).await?;
            print(json, &serde_json::json!({"revoked": id}), |_| String::new())?;
        }
        Cmd::ApiKey(ApiKeyCmd::Create { name }) => {
            let k = admin.create_api_key(&name).await?;
            print(json, &k, |k| k.key.clone())?;
        }
        Cmd::ApiKey(ApiKeyCmd::List) => {
            let v = store.list_api_keys().await?;
            print(json, &v, |v| {
                v.iter()
                    .map(|k| {
                        format!(
                            "{}\t{}\t{}",
                            k.id,
                            k.name,
                            if k.revoked { "revoked" } else { "active" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::ApiKey(ApiKeyCmd::Revoke { id }) => {
            store.revoke_api_key(&id).await?;
            print(json, &serde_json::json!({"revoked": id}), |_| String::new())?;
        }
        Cmd::Device(DeviceCmd::List { org }) => {
            let v = store.list_devices(org.as_deref()).await?;
            print(json, &v, |v| {
                v.iter()
                    .map(|d| {
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
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::Device(DeviceCmd::Lock { org, device }) => {
            let d = admin.set_device_locked(&org, &device, true).await?;
            print(json, &d, |d| format!("{} {}", d.id, d.status.as_str()))?;
        }
        Cmd::Device(DeviceCmd::Unlock { org, device }) => {
            let d = admin.set_device_locked(&org, &device, false).await?;
            print(json, &d, |d| format!("{} {}", d.id, d.status.as_str()))?;
        }
        Cmd::Budget(BudgetCmd::Set {
            org,
            department,
            monthly_tokens,
            hard_cap,
            rollover,
        }) => {
            let b = Budget {
                org_id: org,
                department,
                monthly_tokens,
                hard_cap,
                rollover,
            };
            admin.set_budget(&b).await?;
            print(json, &b, |_| String::new())?;
        }
        Cmd::Budget(BudgetCmd::List { org }) => {
            let v = store.list_budgets(&org).await?;
            print(json, &v, |v| {
                v.iter()
                    .map(|b| {
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
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::Budget(BudgetCmd::Status { org }) => {
            let v = toktra_server::budget::org_status(store.as_ref(), &org, Utc::now()).await?;
            print(json, &v, |v| {
                v.iter()
                    .map(|e| {
                        format!(
                            "{}\t{}\tused={}\tlimit={}\t{:?}",
                            e.department.as_deref().unwrap_or("(organization)"),
                            e.period,
                            e.used,
                            e.limit,
                            e.state
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::Budget(BudgetCmd::Delete { org, department }) => {
            store.delete_budget(&org, department.as_deref()).await?;
            print(json, &serde_json::json!({"deleted": true}), |_| {
                String::new()
            })?;
        }
        Cmd::Department(DepartmentCmd::Create { org, name }) => {
            store
                .get_org(&org)
                .await?
                .with_context(|| format!("organization {org} not found"))?;
            store.create_department(&org, &name).await?;
            print(json, &serde_json::json!({"name": name}), |_| String::new())?;
        }
        Cmd::Department(DepartmentCmd::List { org }) => {
            let v = store.list_departments(&org).await?;
            print(json, &v, |v| v.join("\n"))?;
        }
        Cmd::User(UserCmd::Set {
            org,
            user_id,
            email,
            department,
        }) => {
            let u = User {
                org_id: org,
                user_id,
                email,
                department,
            };
            admin.set_user(&u).await?;
            print(json, &u, |_| String::new())?;
        }
        Cmd::User(UserCmd::List { org }) => {
            let v = store.list_users(&org).await?;
            print(json, &v, |v| {
                v.iter()
                    .map(|u| format!("{}\t{}\t{}", u.user_id, opt(&u.email), opt(&u.department)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Cmd::User(UserCmd::Import { org, file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let n = admin.import_users_csv(&org, &text).await?;
            print(json, &serde_json::json!({"imported": n}), |_| n.to_string())?;
        }
        Cmd::DashboardUser(DashboardUserCmd::Create {
            org,
            email,
            password_stdin: _,
        }) => {
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
            let page = query_usage(store.as_ref(), params)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
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
