//! `toktra up`: the whole product on one machine — the server on SQLite, an
//! organization with an enrollment token and an admin API key, and a local agent
//! enrolled to it. `--demo` adds LLM-like TLS traffic from a network namespace so
//! usage shows up within seconds without internet.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use toktra_agent::config::ConfigLayer;

#[derive(clap::Args)]
#[command(
    after_help = "Prints the dashboard and API addresses and the admin API key, and writes \
them to <data>/up.json (dashboard_url, api_url, agent_url, api_key, org_id) for scripts. \
Running it again reuses the organization and key in that directory. Without root (no \
CAP_NET_RAW) the server and agent still start and the output says why capture is \
unavailable. Ctrl-C (or SIGTERM) stops everything cleanly."
)]
pub struct Args {
    /// Data directory for the server's database and CA, the agent's state and
    /// up.json [default: ~/.local/share/toktra/up, or ./toktra-data without HOME].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Also generate LLM-like TLS traffic on this machine (local servers with
    /// certificates for provider host names from a throw-away CA, inside a network
    /// namespace). Needs root.
    #[arg(long)]
    demo: bool,
    /// Port of the agent face (mTLS ingest, enrollment) on 127.0.0.1; 0 picks one.
    #[arg(long, default_value_t = 8443)]
    agent_port: u16,
    /// Port of the dashboard and admin API on 127.0.0.1; 0 picks one.
    #[arg(long, default_value_t = 8080)]
    admin_port: u16,
    /// Ports the local agent observes, comma-separated.
    #[arg(long, value_name = "PORTS", default_value = "443")]
    capture_ports: String,
}

/// What scripts read from `<data>/up.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpInfo {
    pub dashboard_url: String,
    pub api_url: String,
    pub agent_url: String,
    pub api_key: String,
    pub org_id: String,
    /// Dashboard sign-in created at the first start (the password is printed then and
    /// kept only here, next to the API key).
    #[serde(default)]
    pub dashboard_email: Option<String>,
    #[serde(default)]
    pub dashboard_password: Option<String>,
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/toktra/up"),
        None => PathBuf::from("toktra-data"),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::agent::init_logging(toktra_proto::config::LogLevel::Warn);
    let data = args.data.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data)
        .with_context(|| format!("cannot create the data directory {}", data.display()))?;
    let ports = toktra_agent::config::parse_ports(&args.capture_ports)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(up(args, data, ports));
    // Whatever still runs (a request in flight) must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

async fn up(args: Args, data: PathBuf, ports: Vec<u16>) -> anyhow::Result<()> {
    let mut cfg = toktra_server::ServerConfig::new(data.join("server"));
    cfg.agent_listen = ([127, 0, 0, 1], args.agent_port).into();
    cfg.admin_listen = ([127, 0, 0, 1], args.admin_port).into();
    cfg.agent_hostnames = vec!["localhost".into(), "127.0.0.1".into()];
    let server = toktra_server::Server::start(cfg)
        .await
        .context("starting the server (is another `toktra up` running? --agent-port/--admin-port choose other ports)")?;
    let admin = server.admin();
    let up_json = data.join("up.json");
    let previous: Option<UpInfo> = std::fs::read(&up_json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (org_id, api_key, dashboard_login) = match previous {
        Some(p)
            if admin
                .store()
                .get_org(&p.org_id)
                .await
                .ok()
                .flatten()
                .is_some() =>
        {
            let login = p.dashboard_email.zip(p.dashboard_password);
            (p.org_id, p.api_key, login)
        }
        _ => {
            let org = admin.create_org("Local organization", None).await?;
            let key = admin.create_api_key("toktra up").await?;
            let data = toktra_server::dashboard::store_data::StoreData::new(admin.store().clone());
            // One administrator per organization `up` made; the e-mail is unique per
            // server, so a later organization gets a numbered one.
            let email = match admin
                .store()
                .admin_user_by_email(toktra_server::dashboard::FIRST_ADMIN_EMAIL)
                .await?
            {
                None => toktra_server::dashboard::FIRST_ADMIN_EMAIL.to_owned(),
                Some(_) => format!("admin+{}@toktra.local", &org.id[..8]),
            };
            let password = toktra_server::dashboard::create_first_admin(&data, &org.id, &email)
                .await
                .context("creating the dashboard administrator")?;
            (org.id, key.key, Some((email, password)))
        }
    };
    let token = admin.create_enrollment_token(&org_id, None, None).await?;
    let ca_path = data.join("server-ca.pem");
    std::fs::write(&ca_path, &server.root_ca_pem)
        .with_context(|| format!("writing {}", ca_path.display()))?;
    let info = UpInfo {
        dashboard_url: format!("http://{}/", server.admin_addr),
        api_url: format!("http://{}/v1", server.admin_addr),
        agent_url: format!("https://localhost:{}", server.agent_addr.port()),
        api_key,
        org_id: org_id.clone(),
        dashboard_email: dashboard_login.as_ref().map(|l| l.0.clone()),
        dashboard_password: dashboard_login.as_ref().map(|l| l.1.clone()),
    };
    write_up_json(&up_json, &info)?;

    let agent_cfg = ConfigLayer {
        ingest_url: Some(info.agent_url.clone()),
        org_id: Some(org_id.clone()),
        enroll_token: Some(token.token),
        server_ca: Some(ca_path),
        state_dir: Some(data.join("agent")),
        capture_ports: Some(ports.clone()),
        ..Default::default()
    }
    .resolve()?;

    println!("toktra is up.");
    println!("  dashboard   {}", info.dashboard_url);
    if let Some((email, password)) = &dashboard_login {
        println!("  sign in as  {email} / {password}");
    }
    println!(
        "  API         {}   (Authorization: Bearer {})",
        info.api_url, info.api_key
    );
    println!("  agent face  {}", info.agent_url);
    println!("  org id      {}", info.org_id);
    println!("  written to  {}", up_json.display());
    println!("Press Ctrl-C to stop.");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agent = {
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::agent::run_configured(
            agent_cfg,
            true,
            false,
            Duration::from_secs(15),
            async move {
                let _ = rx.wait_for(|v| *v).await;
            },
        ))
    };
    let demo = if args.demo {
        match demo::start(stop_rx.clone()).await {
            Ok(d) => {
                println!(
                    "demo: LLM-like TLS traffic to {} from network namespace {}",
                    toktra_agent::demo::DEMO_HOSTS.join(", "),
                    d.netns
                );
                Some(d)
            }
            Err(e) => {
                eprintln!("toktra up: demo traffic unavailable: {e:#}");
                None
            }
        }
    } else {
        None
    };

    tokio::select! {
        _ = crate::agent::shutdown_signal() => {}
        r = &mut agent => {
            // The agent ended on its own: report why, then stop the rest.
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("toktra up: the agent stopped: {e:#}"),
                Err(e) => eprintln!("toktra up: the agent stopped: {e}"),
            }
        }
    }
    println!("stopping...");
    let _ = stop_tx.send(true);
    // The agent writes its final status and closes its tap.
    if !agent.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut agent).await;
    }
    if let Some(d) = demo {
        d.stop().await;
    }
    server.shutdown().await;
    println!("stopped.");
    Ok(())
}

fn write_up_json(path: &Path, info: &UpInfo) -> anyhow::Result<()> {
    // It holds the admin API key: owner-only.
    toktra_agent::identity::write_private_file(path, &serde_json::to_vec_pretty(info)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(target_os = "linux")]
mod demo {
    //! A veth pair from this namespace to a new one; in it, the demo TLS server on
    //! port 443; here, a client that sends a request every second.

    use anyhow::Context as _;
    use std::os::fd::AsRawFd as _;
    use std::process::Command;
    use std::time::Duration;
    use toktra_agent::demo::{DEMO_HOSTS, DemoPki};

    /// Benchmark-range addresses (RFC 2544), on the veth pair we create.
    const HOST_ADDR: &str = "198.18.77.1/30";
    const NS_ADDR: &str = "198.18.77.2/30";
    const NS_IP: [u8; 4] = [198, 18, 77, 2];

    pub struct Demo {
        pub netns: String,
        veth: String,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    fn ip(args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .context("running `ip` (install iproute2)")?;
        if !out.status.success() {
            anyhow::bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub async fn start(stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<Demo> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            anyhow::bail!(
                "--demo creates a network namespace and needs root: run `sudo toktra up --demo`"
            );
        }
        let pid = std::process::id();
        let netns = format!("toktra-demo-{pid}");
        let veth = format!("tkd{}", pid % 100_000);
        let peer = format!("{veth}p");
        ip(&["netns", "add", &netns])?;
        let demo = Demo {
            netns: netns.clone(),
            veth: veth.clone(),
            tasks: Vec::new(),
        };
        let setup = || -> anyhow::Result<()> {
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &netns,
            ])?;
            ip(&["addr", "add", HOST_ADDR, "dev", &veth])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&["-n", &netns, "addr", "add", NS_ADDR, "dev", &peer])?;
            ip(&["-n", &netns, "link", "set", &peer, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            Ok(())
        };
        if let Err(e) = setup() {
            demo.cleanup();
            return Err(e);
        }
        let mut demo = demo;
        let pki = DemoPki::new(&DEMO_HOSTS)?;
        let listener = match listen_in(&netns) {
            Ok(l) => l,
            Err(e) => {
                demo.cleanup();
                return Err(e);
            }
        };
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        demo.tasks.push(tokio::spawn(toktra_agent::demo::serve(
            listener,
            pki.server.clone(),
        )));
        let client = pki.client.clone();
        let mut stop = stop;
        demo.tasks.push(tokio::spawn(async move {
            let addr = std::net::SocketAddr::from((NS_IP, 443));
            let mut i = 0usize;
            loop {
                let host = DEMO_HOSTS[i % DEMO_HOSTS.len()];
                let _ =
                    toktra_agent::demo::request(client.clone(), addr, host, i.is_multiple_of(2))
                        .await;
                i += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(700)) => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
            }
        }));
        Ok(demo)
    }

    /// Binds port 443 inside the namespace: a thread enters it, binds, and the
    /// socket stays in that namespace after the thread is gone.
    fn listen_in(netns: &str) -> anyhow::Result<std::net::TcpListener> {
        let path = format!("/run/netns/{netns}");
        let f = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::spawn(move || -> anyhow::Result<std::net::TcpListener> {
            // SAFETY: f is an open namespace file; only this thread changes namespace.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                anyhow::bail!("setns: {}", std::io::Error::last_os_error());
            }
            Ok(std::net::TcpListener::bind(std::net::SocketAddr::from((
                NS_IP, 443,
            )))?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    impl Demo {
        fn cleanup(&self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .output();
        }

        pub async fn stop(self) {
            for t in &self.tasks {
                t.abort();
            }
            self.cleanup();
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod demo {
    pub struct Demo {
        pub netns: String,
    }
    pub async fn start(_stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<Demo> {
        anyhow::bail!("--demo needs Linux network namespaces")
    }
    impl Demo {
        pub async fn stop(self) {}
    }
}
