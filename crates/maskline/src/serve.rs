//! `maskline serve`: open the store, load the index, bind, serve, drain.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use maskline_api::AppState;
use maskline_engine::{Engine, Sweeper};
use maskline_store::seal::{Column, MasterKey};
use maskline_store::{PgStore, SqliteStore};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::sync::watch;

use crate::config::{Config, LogFormat};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MASKLINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Histogram buckets for figures judged against a millisecond.
const FINE_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_2, 0.000_3, 0.000_4, 0.000_5,
    0.000_75, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.1, 0.25, 0.5, 1.0,
];

/// PostgreSQL when `database_url` is set, else the embedded store.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn maskline_store::Store>> {
    private_dir(&config.data_dir)?;
    let master = MasterKey::load_or_create(&config.master_key_file)
        .context("cannot use the master key (MASKLINE_MASTER_KEY_FILE)")?;
    if let Some(mut options) = config.postgres() {
        options.master = master;
        options.node = node_name(&config.data_dir)?;
        let store = PgStore::open(options)
            .await
            .context("cannot open the PostgreSQL store (MASKLINE_DATABASE_URL)")?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open_sealed(&config.data_dir, master)
        .await
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// Recordings sealed with the store's keys.
struct RecordingSealer(Arc<maskline_store::seal::Keyring>);

impl maskline_media::sealed::Sealer for RecordingSealer {
    fn seal(&self, aad: &[u8], clear: &[u8]) -> Vec<u8> {
        self.0.seal_bytes(Column::Recording, aad, clear)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        self.0.open_bytes(Column::Recording, aad, sealed).ok()
    }

    fn overhead(&self) -> usize {
        maskline_store::seal::BYTES_OVERHEAD
    }

    fn sealing_key(&self) -> u32 {
        self.0.current_key()
    }

    fn is_current(&self, head: &[u8]) -> bool {
        // `seal_bytes` starts each value with its key's id.
        head.first_chunk::<4>()
            .is_some_and(|id| u32::from_be_bytes(*id) == self.0.current_key())
    }
}

/// This node's name in a shared database's open-call journal: made once
/// and kept in the data directory, so that it survives restarts and no
/// other node has it.
fn node_name(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = uuid::Uuid::now_v7().simple().to_string();
            std::fs::write(&path, format!("{name}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(name)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Creates the data directory owner-only, or takes group and other access
/// away from one that exists (it holds the database, recordings, and by
/// default the master key).
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make data directory {} private", dir.display()))
}

/// `maskline keys rotate`: a new data key and blind key in the database
/// the configuration names, under the existing master key.
pub async fn rotate_keys(config: Config) -> anyhow::Result<()> {
    let master = MasterKey::load(&config.master_key_file)
        .context("cannot read the master key (MASKLINE_MASTER_KEY_FILE)")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (id, from) = match config.postgres() {
        Some(mut options) => {
            options.master = master;
            PgStore::rotate_keys(&options, now).await
        }
        None => SqliteStore::rotate_keys(&config.data_dir, &master, now).await,
    }
    .context("cannot rotate the data keys")?;
    println!(
        "data key {id} and its blind key seal new values from {} s on; running servers \
         reseal older values and their tokens in the background (every key keeps reading)",
        from - now
    );
    Ok(())
}

/// `maskline migrate`: applies the PostgreSQL schema's migrations and exits
/// (`serve` applies them too; this is for deployments that migrate first).
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format);
    let options = config
        .postgres()
        .context("migrate needs MASKLINE_DATABASE_URL (the embedded store migrates itself)")?;
    maskline_store::migrate_postgres(&options)
        .await
        .context("migration failed")?;
    println!("migrations applied");
    Ok(())
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(config.log_format);
    raise_open_files();
    if let Some(priority) = config.rtp_priority {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if config.media_threads >= cores {
            // Real-time threads run before everything else: under a flood
            // of RTP they would leave signalling and the API only what the
            // kernel's real-time throttling keeps back (5 % by default).
            tracing::warn!(
                priority,
                media_threads = config.media_threads,
                cores,
                "MASKLINE_RTP_PRIORITY with as many RTP threads as cores: a flood of RTP \
                 could starve SIP and HTTP; use fewer MASKLINE_MEDIA_THREADS"
            );
        }
    }
    tracing::info!(?config, "starting");

    let store = open_store(&config).await?;
    // Taken before the index loads: changes committed meanwhile queue up and
    // are applied (again, harmlessly) once it has.
    let changes = store.changes();
    let engine = Arc::new(
        Engine::open(store.clone(), config.engine())
            .await
            .context("cannot load the route index")?,
    );
    let recordings_dir = config.data_dir.join("recordings");
    let recordings = maskline_media::recordings::DirRecordings::new(&recordings_dir)
        .with_context(|| format!("cannot use {} for recordings", recordings_dir.display()))?
        .sealed(Arc::new(RecordingSealer(store.keys())));
    engine.set_recordings(Arc::new(recordings));
    // Calls a crash cut (the open-call journal) get their CDRs before any
    // new call is taken.
    engine
        .close_open_calls()
        .await
        .context("cannot close the calls the last run left open")?;
    if let Some(changes) = changes {
        tokio::spawn(engine.clone().follow(changes));
        // Other nodes count this node's calls against tenants' caps.
        tokio::spawn(
            engine
                .clone()
                .share_call_load(std::time::Duration::from_millis(250)),
        );
    }
    if let Some(key) = engine
        .ensure_admin_key(config.admin_key.as_deref())
        .await
        .context("cannot set up the admin key")?
    {
        show_admin_key(&key, &config.data_dir)?;
    }

    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
    let intercepts = crate::intercept::HttpIntercepts::new(config.callbacks())
        .context("cannot build the intercept callback client")?;
    let sip = maskline_sip::SipServer::bind(
        sip_config(&config).await?,
        engine.clone(),
        std::sync::Arc::new(intercepts),
    )
    .context("cannot start SIP")?;
    let prometheus = PrometheusBuilder::new()
        .set_buckets(&[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ])
        .context("bad histogram buckets")?
        // Setup delay is judged against 1 ms: buckets fine enough for a p99.
        .set_buckets_for_metric(
            Matcher::Full("maskline_sip_setup_delay_seconds".to_owned()),
            FINE_BUCKETS,
        )
        .context("bad histogram buckets")?
        // An intercept adds its round trip to setup: the same resolution.
        .set_buckets_for_metric(
            Matcher::Full("maskline_intercept_seconds".to_owned()),
            FINE_BUCKETS,
        )
        .context("bad histogram buckets")?
        // Writes per group commit: a count, not seconds.
        .set_buckets_for_metric(
            Matcher::Full("maskline_store_commit_writes".to_owned()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
        )
        .context("bad histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let state = AppState::new(
        engine.clone(),
        config.default_region,
        config.switch_key.as_deref(),
        Some(prometheus),
        config.callbacks(),
    )
    .with_edge(config.edge(), config.metrics_key.as_deref());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let sweeper = tokio::spawn(
        Sweeper::new(engine.clone(), Duration::from_secs(1)).run(stopped(stop_rx.clone())),
    );
    let dispatcher = maskline_callbacks::Dispatcher::new(
        store.clone(),
        engine.webhooks().clone(),
        config.delivery(),
        config.callbacks(),
    )
    .context("cannot start the webhook sender")?;
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let deliveries = tokio::spawn(dispatcher.run(stopped(stop_rx.clone()), grace));
    let pages = if config.console {
        maskline_console::router(maskline_console::ConsoleState {
            engine: engine.clone(),
            region: config.default_region,
            default_rate_limit: config.rate_limit,
            callbacks: config.callbacks(),
            sign_in_limits: Default::default(),
            always_secure: config.console_secure_cookie,
            tenant_rate: {
                let (limits, engine) = (state.rate_limits.clone(), engine.clone());
                Arc::new(move |tenant| {
                    limits
                        .check(tenant, engine.rate_limit(tenant))
                        .map_err(|refused| refused.retry_after.unwrap_or(1))
                })
            },
        })
    } else {
        axum::Router::new()
    };
    let server = tokio::spawn(maskline_api::serve(
        listener,
        state,
        pages,
        stopped(stop_rx.clone()),
    ));

    let sms = maskline_sms::Sms::start(engine.clone(), config.sms(), stop_rx.clone());

    let sip_addr = sip.local_addr();
    let (sip, mut sip_done) = sip
        .spawn(stopped(stop_rx.clone()), grace)
        .context("cannot start the SIP thread")?;

    tracing::info!(
        http = %config.http_listen,
        sip = %sip_addr,
        store = %if config.database_url.is_some() {
            "postgresql".to_owned()
        } else {
            config.data_dir.display().to_string()
        },
        "maskline ready"
    );

    tokio::select! {
        () = shutdown_signal() => {}
        _ = &mut sip_done => {
            // Serving HTTP without voice would hide the outage: stop.
            anyhow::bail!("the SIP server stopped unexpectedly");
        }
    }
    tracing::info!(
        grace_secs = config.shutdown_grace_secs,
        "shutting down: no new requests, draining"
    );
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(config.shutdown_grace_secs), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("grace period over; closing remaining connections"),
    }
    // SIP drains its calls within the same grace period, then ends the rest.
    if tokio::task::spawn_blocking(move || sip.join())
        .await
        .map_or(true, |joined| joined.is_err())
    {
        tracing::warn!("SIP thread failed");
    }
    // Links unbind once the texts they are keeping are safe.
    if tokio::time::timeout(grace, sms.stopped()).await.is_err() {
        tracing::warn!("SMPP links did not stop within the grace period");
    }
    let _ = sweeper.await;
    // Requests in flight finish within the grace period; what is left is
    // sent again after a restart.
    let _ = deliveries.await;
    tracing::info!("stopped");
    Ok(())
}

/// The SIP layer's settings; the gateway's name is resolved once, here.
async fn sip_config(config: &Config) -> anyhow::Result<maskline_sip::Config> {
    let outbound = match &config.sip_outbound {
        None => None,
        Some(target) => {
            let addr = tokio::net::lookup_host(target.as_str())
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .with_context(|| format!("MASKLINE_SIP_OUTBOUND: cannot resolve {target:?}"))?;
            Some(maskline_sip::Outbound {
                addr,
                transport: config.sip_outbound_transport,
            })
        }
    };
    Ok(maskline_sip::Config {
        listen: config.sip_listen,
        advertise: config.sip_advertise.clone(),
        outbound,
        trusted: config.sip_trusted.clone(),
        timers: maskline_sip::Timers {
            t1: Duration::from_millis(config.sip_t1_ms),
            t2: Duration::from_millis(config.sip_t2_ms),
            ..maskline_sip::Timers::default()
        },
        ring_timeout: Duration::from_secs(config.sip_ring_timeout_secs),
        region: config.default_region,
        media: maskline_media::relay::RelayConfig {
            addr: config.media_addr,
            ports: config.rtp_ports.clone(),
            rtp_timeout: Duration::from_secs(config.rtp_timeout_secs),
            workers: config.media_threads,
            realtime_priority: config.rtp_priority,
        },
        // Mandarin where the numbers are Chinese, English elsewhere.
        language: if config.default_region.as_str() == "CN" {
            maskline_media::prompts::Language::Zh
        } else {
            maskline_media::prompts::Language::En
        },
        limits: maskline_sip::Limits {
            max_transactions: config.sip_max_transactions,
            max_dialogs: config.sip_max_dialogs,
        },
    })
}

/// A generated admin key reaches its operator once and never a log: on a
/// terminal it is printed; otherwise (systemd, whose standard output is the
/// journal) it is written to `<data dir>/admin.key`, readable by the
/// service's user only, and the log says where. Only its hash is kept in
/// the store.
fn show_admin_key(key: &str, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if std::io::stdout().is_terminal() {
        println!("Admin API key (shown once; only its hash is stored): {key}");
        return Ok(());
    }
    let path = data_dir.join("admin.key");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "admin API key generated and written to this file (mode 0600): store it elsewhere, then delete the file"
    );
    Ok(())
}

/// Every anchored call holds two sockets: the soft limit on open files
/// (often 1,024) is raised to the hard one, and the log says what a node
/// can carry.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    tracing::info!(
        open_files = limit,
        "open-file limit (two a call in progress, for its media)"
    );
}
